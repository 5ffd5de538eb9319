// Command sluice is the log aggregator: Forward protocol in, NATS JetStream
// in between, sinks out. Run it with no flags to start on embedded defaults.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // index and object names in any time zone, also in images without zoneinfo

	"github.com/sluicelog/sluice/internal/app"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/config"
)

func main() {
	os.Exit(run())
}

func run() int {
	path := flag.String("config", "", "YAML configuration file (default: built-in defaults)")
	check := flag.Bool("check", false, "validate the configuration and exit")
	flag.Parse()

	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		return 2
	}
	if *check {
		fmt.Println("configuration ok:", cfg.Summary())
		return 0
	}
	log := app.NewLogger(cfg.Log, os.Stderr)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a := app.New(cfg, component.Settings{Logger: log})
	if err := a.Start(ctx); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	<-ctx.Done()
	stop()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		log.Error("shutdown incomplete", "err", err)
		return 1
	}
	return 0
}
