// Command loadgen pushes log load at sluice (or any Forward or Fluentd HTTP
// endpoint) and reports like hey:
//
//	loadgen -n 1000000 -c 4 -ack 127.0.0.1:24224
//	loadgen -protocol http -mode ndjson -z 30s -c 8 http://127.0.0.1:9880
//	loadgen -protocol otlp -n 500000 -c 4 http://127.0.0.1:4318
//	loadgen -protocol otlp -mode grpc -n 500000 -c 4 127.0.0.1:4317
//	loadgen -n 200000 -ack -verify ./data/out 127.0.0.1:24224
//	loadgen -n 200000 -ack -verify http://127.0.0.1:8080/metrics 127.0.0.1:24224
//	loadgen -scenario mixed.yaml
//
// It exits 1 when -verify finds an acknowledged record missing, or one
// written twice (unless -allow-duplicates).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicelog/sluice/loadtest"
)

// Scenario is a YAML file of runs done one after the other.
type Scenario struct {
	Runs []Run `yaml:"runs"`
}

// Run is one run of a scenario.
type Run struct {
	Name            string `yaml:"name"`
	loadtest.Config `yaml:",inline"`
	Verify          VerifyConfig `yaml:"verify"`
}

// VerifyConfig names where to verify a run.
type VerifyConfig struct {
	Dir     string        `yaml:"dir"`
	ESURL   string        `yaml:"es_url"`
	ESIndex string        `yaml:"es_index"`
	Metrics string        `yaml:"metrics_url"`
	Sink    string        `yaml:"sink"`
	Wait    time.Duration `yaml:"wait"`
	// AllowDuplicates: see loadtest.Target.
	AllowDuplicates bool `yaml:"allow_duplicates"`
}

// setTarget reads -verify: a URL ending in /metrics is sluice's metrics,
// another URL an Elasticsearch, anything else a file sink directory.
func (v *VerifyConfig) setTarget(target string) {
	switch {
	case !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://"):
		v.Dir = target
	case strings.HasSuffix(strings.TrimRight(target, "/"), "/metrics"):
		v.Metrics = target
	default:
		v.ESURL = target
	}
}

func (v VerifyConfig) set() bool { return v.Dir != "" || v.ESURL != "" || v.Metrics != "" }

func main() {
	os.Exit(run())
}

func run() int {
	var (
		c        loadtest.Config
		v        VerifyConfig
		scenario = flag.String("scenario", "", "a YAML file of runs (see loadtest/scenarios/)")
		output   = flag.String("o", "", "output: empty for hey's text, json for machines")
		bench    = flag.String("bench", "", "run make bench's scenarios against this sluice binary and print the table")
		scale    = flag.Float64("bench-scale", 1, "scale the bench scenarios' record counts or durations (the cluster scenario keeps its 30 s)")
		count    = flag.Int("bench-count", 3, "runs of each bench scenario; the table shows the median")
		only     = flag.String("bench-run", "", "run only the bench scenario of this name, or else those whose name this regular expression matches (\"forward packed, ack, 4 conn$|otlp\")")
		peerFB   = flag.String("bench-fluent-bit", "", "also run the bench's Forward scenarios against this fluent-bit binary, in the same runs, and print the ratios")
		baseline = flag.String("bench-baseline", "", "also run every bench scenario but the cluster one against this other sluice binary (an earlier commit's), right after sluice in each run, and print the ratios run by run")
		vlBin    = flag.String("bench-victorialogs", "", "the victoria-logs binary the bench's Elasticsearch scenario writes into (default: victoria-logs beside the sluice binary, if there)")
	)
	flag.StringVar(&c.Protocol, "protocol", "forward", "forward, http or otlp")
	flag.StringVar(&c.Mode, "mode", "", "forward: packed, forward, message, gzip; http: json, ndjson, msgpack; otlp: protobuf, json (OTLP/HTTP), grpc")
	flag.IntVar(&c.Records, "n", 0, "records to send in all (default 100000 unless -z)")
	flag.DurationVar(&c.Duration, "z", 0, "send for this long instead of -n records")
	flag.IntVar(&c.Connections, "c", 1, "concurrent connections")
	flag.Float64Var(&c.Rate, "q", 0, "records per second per connection (0: no limit)")
	flag.DurationVar(&c.Timeout, "t", 20*time.Second, "timeout of each ack or response")
	flag.BoolVar(&c.Ack, "ack", false, "forward: send each chunk with a chunk id and wait for its ack (require_ack_response); without, no chunk id is sent")
	flag.BoolVar(&c.Resend, "resend", false, "forward with -ack: on a closed or failed connection, reconnect and send the unacknowledged chunk again (as Fluent Bit does)")
	flag.IntVar(&c.ChunkRecords, "chunk", 1000, "records per chunk or request")
	flag.BoolVar(&c.Gzip, "gzip", false, "http, otlp over HTTP: gzip the bodies")
	flag.StringVar(&c.SharedKey, "shared-key", "", "forward: the shared key of the handshake")
	flag.BoolVar(&c.TLS, "tls", false, "forward: dial with TLS")
	flag.BoolVar(&c.TLSInsecure, "tls-insecure", false, "do not verify the server certificate")
	flag.StringVar(&c.Token, "token", "", "http, otlp: bearer token")
	flag.IntVar(&c.Workload.Pods, "pods", 10, "pods (tags) the records come from")
	flag.Float64Var(&c.Workload.Nginx, "nginx", 70, "weight of nginx access lines")
	flag.Float64Var(&c.Workload.JSON, "json", 25, "weight of JSON application logs")
	flag.Float64Var(&c.Workload.Stack, "stack", 5, "weight of stack traces")
	flag.IntVar(&c.Workload.StackBytes, "stack-bytes", 4096, "size of a stack trace")
	flag.IntVar(&c.Workload.NginxBytes, "nginx-bytes", 0, "lengthen nginx lines to this many bytes (0: about 95)")
	verify := flag.String("verify", "", "after sending, wait until this shows every acked record: a file sink directory, sluice's http://host:port/metrics, or an Elasticsearch http://host:port")
	flag.StringVar(&v.Dir, "verify-dir", "", "after sending, wait until this file sink directory holds every acked record")
	flag.StringVar(&v.ESURL, "verify-es", "", "after sending, count the run's documents in this Elasticsearch")
	flag.StringVar(&v.ESIndex, "verify-index", "_all", "the index (pattern) for -verify-es")
	flag.StringVar(&v.Metrics, "verify-metrics", "", "after sending, wait until sluice's /metrics (this URL) shows every acked record delivered")
	flag.StringVar(&v.Sink, "verify-sink", "", "the sink -verify-metrics looks at (default: every sink)")
	flag.DurationVar(&v.Wait, "verify-wait", time.Minute, "how long verification waits")
	flag.BoolVar(&v.AllowDuplicates, "allow-duplicates", false, "do not fail -verify on records written more than once (sinks that write at least once, several sluice replicas after a crash)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: loadgen [flags] [address]\n\nflags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *verify != "" {
		v.setTarget(*verify)
	}
	if flag.NArg() > 0 {
		c.Addr = flag.Arg(0)
	}
	if *bench != "" {
		var scs []loadtest.Scenario
		all := loadtest.BenchScenarios()
		exact := slices.ContainsFunc(all, func(sc loadtest.Scenario) bool { return sc.Name == *only })
		re, err := regexp.Compile(*only)
		if err != nil && !exact {
			fmt.Fprintf(os.Stderr, "loadgen: -bench-run: %v\n", err)
			os.Exit(2)
		}
		for _, sc := range all {
			if exact && sc.Name == *only || !exact && re.MatchString(sc.Name) {
				scs = append(scs, sc.Scaled(*scale))
			}
		}
		if len(scs) == 0 {
			fmt.Fprintf(os.Stderr, "loadgen: no bench scenario's name matches %q\n", *only)
			return 2
		}
		if *vlBin == "" {
			if p := filepath.Join(filepath.Dir(*bench), "victoria-logs"); fileExists(p) {
				*vlBin = p
			}
		}
		rows, err := loadtest.Bench(context.Background(), *bench, scs, loadtest.BenchOptions{
			Count: *count, FluentBit: *peerFB, Baseline: *baseline, VictoriaLogs: *vlBin, Progress: os.Stderr})
		loadtest.PrintBench(os.Stdout, rows)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			return 1
		}
		for _, r := range rows {
			if r.Lost > 0 {
				return 1
			}
		}
		return 0
	}
	runs := []Run{{Config: c, Verify: v}}
	if *scenario != "" {
		raw, err := os.ReadFile(*scenario)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		var s Scenario
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&s); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", *scenario, err)
			return 2
		}
		runs = s.Runs
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	code := 0
	for _, r := range runs {
		if r.Name != "" && *output == "" {
			fmt.Printf("== %s\n", r.Name)
		}
		var base loadtest.SinkCounts
		if r.Verify.Metrics != "" {
			var err error
			if base, err = loadtest.ReadSinkCounts(ctx, r.Verify.Metrics); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen:", err)
				return 2
			}
		}
		rep, err := loadtest.Run(ctx, r.Config, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			return 2
		}
		if *output == "json" {
			_ = rep.JSON(os.Stdout)
		} else {
			rep.Print(os.Stdout)
		}
		if !r.Verify.set() {
			continue
		}
		wait := r.Verify.Wait
		if wait == 0 {
			wait = time.Minute
		}
		res, err := loadtest.Verify(ctx, rep, loadtest.Target{FileDir: r.Verify.Dir, ESURL: r.Verify.ESURL, ESIndex: r.Verify.ESIndex,
			MetricsURL: r.Verify.Metrics, Sink: r.Verify.Sink, Baseline: base, AllowDuplicates: r.Verify.AllowDuplicates}, wait)
		fmt.Fprintln(os.Stdout, res)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			code = 1
		}
		if p := res.Problem(); p != "" {
			fmt.Fprintln(os.Stderr, "loadgen:", p)
			code = 1
		}
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
		code = 1
	}
	return code
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
