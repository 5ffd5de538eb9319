// Command sluice is the log aggregator: Forward protocol in, NATS JetStream
// in between, sinks out. Run it with no flags to start on embedded defaults.
//
//	sluice -config sluice.yaml     # or SLUICE_CONFIG=sluice.yaml sluice
//	sluice check -config sluice.yaml   # validate, and run the tests: in the file
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

	"github.com/sluicelog/sluice/cmd/sluice/app"
	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/hugepages"
	"github.com/sluicelog/sluice/internal/memlimit"
	"github.com/sluicelog/sluice/internal/procs"
)

func main() {
	os.Exit(run())
}

func run() int {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		switch os.Args[1] {
		case "help":
			fmt.Print(commandsUsage)
			return 0
		case "check":
			fs := flag.NewFlagSet("sluice check", flag.ContinueOnError)
			path := fs.String("config", os.Getenv("SLUICE_CONFIG"), "YAML configuration file")
			if err := fs.Parse(os.Args[2:]); err != nil {
				return 2
			}
			return check(*path, os.Stdout, os.Stderr)
		}
		return runCommand(os.Args[1], os.Args[2:], os.Stdout, os.Stderr)
	}
	path := flag.String("config", os.Getenv("SLUICE_CONFIG"), "YAML configuration file (default: $SLUICE_CONFIG, else built-in defaults)")
	checkOnly := flag.Bool("check", false, "validate the configuration, run its tests, and exit (as `sluice check`)")
	probe := flag.String("probe", "", "GET this URL and exit 0 on a 2xx answer, 1 otherwise (container health checks)")
	flag.Parse()
	if *probe != "" {
		return probeURL(*probe, os.Stderr)
	}

	if *checkOnly {
		return check(*path, os.Stdout, os.Stderr)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		return 2
	}
	log := app.NewLogger(cfg.Log, os.Stderr)
	limit, src, err := memlimit.Apply(int64(cfg.MemoryLimit))
	switch {
	case err != nil:
		log.Warn("memory limit not set", "err", err)
	case src != memlimit.FromNothing:
		log.Info("memory limit", "go_soft_limit_bytes", limit, "from", string(src))
	}
	if *cfg.HugePages {
		switch _, n, why, err := hugepages.Reserve(limit); {
		case err != nil:
			log.Warn("heap not advised for huge pages", "err", err)
		case n > 0:
			log.Info("heap advised for huge pages", "bytes", n)
		default:
			log.Debug("heap not advised for huge pages", "why", why)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *cfg.AdaptiveProcs {
		go procs.Adapt(ctx, func(n int) { log.Debug("scheduler procs", "gomaxprocs", n) })
	}
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

// check validates the configuration at path and runs its tests: 0 when it
// is valid and every test passes, 1 when a test fails, 2 when the
// configuration is not valid.
func check(path string, out, errOut io.Writer) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(errOut, "sluice:", err)
		return 2
	}
	fmt.Fprintln(out, "configuration ok:", cfg.Summary())
	if len(cfg.Tests) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failed, err := app.RunTests(ctx, cfg, out)
	if err != nil {
		fmt.Fprintln(errOut, "sluice:", err)
		return 2
	}
	if failed > 0 {
		fmt.Fprintf(out, "%d of %d tests failed\n", failed, len(cfg.Tests))
		return 1
	}
	fmt.Fprintf(out, "%d tests passed\n", len(cfg.Tests))
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
