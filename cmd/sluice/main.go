// Command sluice is the log aggregator: Forward protocol in, NATS JetStream
// in between, sinks out. Run it with no flags to start on embedded defaults.
//
//	sluice -config sluice.yaml     # or SLUICE_CONFIG=sluice.yaml sluice
//	sluice -check -config sluice.yaml
//	sluice -probe http://127.0.0.1:8080/readyz   # a health check for images without curl
//	sluice status [--api URL] [--token T] [-o json]
//	sluice rewind SINK --seq N | --time 2026-12-05T07:00:00Z
//	sluice dlq ls SINK | dlq show SEQ | dlq replay SINK
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // index and object names in any time zone, also in images without zoneinfo

	"github.com/sluicelog/sluice/internal/app"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/config"
	"github.com/sluicelog/sluice/internal/memlimit"
)

func main() {
	os.Exit(run())
}

func run() int {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		if os.Args[1] == "help" {
			fmt.Print(commandsUsage)
			return 0
		}
		return runCommand(os.Args[1], os.Args[2:], os.Stdout, os.Stderr)
	}
	path := flag.String("config", os.Getenv("SLUICE_CONFIG"), "YAML configuration file (default: $SLUICE_CONFIG, else built-in defaults)")
	check := flag.Bool("check", false, "validate the configuration and exit")
	probe := flag.String("probe", "", "GET this URL and exit 0 on a 2xx answer, 1 otherwise (container health checks)")
	flag.Parse()
	if *probe != "" {
		return probeURL(*probe, os.Stderr)
	}

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
	switch limit, src, err := memlimit.Apply(int64(cfg.MemoryLimit)); {
	case err != nil:
		log.Warn("memory limit not set", "err", err)
	case src != memlimit.FromNothing:
		log.Info("memory limit", "go_soft_limit_bytes", limit, "from", string(src))
	}

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

// probeURL is a health check for images without a shell or curl.
func probeURL(url string, errOut io.Writer) int {
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(errOut, "sluice: probe:", err)
		return 1
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		fmt.Fprintf(errOut, "sluice: probe: %s: %s\n", res.Status, body)
		return 1
	}
	return 0
}
