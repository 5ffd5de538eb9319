package loadtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Scenario is one row of the bench table.
type Scenario struct {
	Name string
	Config
	// Multiline, when set, is the forward.multiline.parser sluice runs with.
	Multiline string
	// Sink is where the records go: "" the file sink, SinkES the
	// Elasticsearch sink into VictoriaLogs.
	Sink string
	// Cluster runs the scenario on three replicas behind a balancer
	// (benchCluster).
	Cluster bool
	// NATS is where sluice's JetStream runs: "" embedded, NATS3Node a
	// cluster of three nats-servers (in loadgen's process, so that sluice's
	// own CPU is what is measured) with the stream in three replicas.
	NATS string
}

// NATS3Node is a scenario's NATS for a 3-node JetStream cluster.
const NATS3Node = "3-node"

// SinkES is a scenario's Sink for the Elasticsearch bulk API of a
// VictoriaLogs server.
const SinkES = "es"

// BenchScenarios are `make bench`'s fixed scenarios: nginx access lines of
// 180 bytes, about 250 bytes a record on the wire in PackedForward (no stack
// traces), as the targets in docs/PERFORMANCE.md.
func BenchScenarios() []Scenario {
	nginx := Workload{Nginx: 1, Pods: 20, NginxBytes: 180}
	return []Scenario{
		{Name: "forward packed, ack, 1 conn", Config: Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: 1, Records: 1000000, Workload: nginx}},
		{Name: "forward packed, ack, 4 conn", Config: Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: 4, Records: 2000000, Workload: nginx}},
		{Name: "forward message, ack, 1 conn", Config: Config{Protocol: "forward", Mode: "message", Ack: true, Connections: 1, Records: 20000, Workload: nginx}},
		{Name: "forward message, ack, 4 conn", Config: Config{Protocol: "forward", Mode: "message", Ack: true, Connections: 4, Records: 40000, Workload: nginx}},
		{Name: "forward gzip, ack, 1 conn", Config: Config{Protocol: "forward", Mode: "gzip", Ack: true, Connections: 1, Records: 500000, Workload: nginx}},
		{Name: "forward gzip, ack, 4 conn", Config: Config{Protocol: "forward", Mode: "gzip", Ack: true, Connections: 4, Records: 1000000, Workload: nginx}},
		{Name: "http json, 1 conn", Config: Config{Protocol: "http", Mode: "json", Connections: 1, Records: 300000, Workload: nginx}},
		{Name: "http json, 4 conn", Config: Config{Protocol: "http", Mode: "json", Connections: 4, Records: 600000, Workload: nginx}},
		// OTLP in, the same records in requests of 1000 (PrintBench compares
		// them with "forward packed, ack" on as many connections).
		{Name: "otlp http protobuf, 1 conn", Config: Config{Protocol: "otlp", Mode: OTLPProtobuf, Connections: 1, Records: 1000000, Workload: nginx}},
		{Name: "otlp http protobuf, 4 conn", Config: Config{Protocol: "otlp", Mode: OTLPProtobuf, Connections: 4, Records: 2000000, Workload: nginx}},
		{Name: "otlp grpc, 4 conn", Config: Config{Protocol: "otlp", Mode: OTLPGRPC, Connections: 4, Records: 2000000, Workload: nginx}},
		// A fleet: many forwarders, each sending one 20-record chunk a second.
		{Name: "fleet, 100 conn x 20 rec/s", Config: fleet(100)},
		{Name: "fleet, 1000 conn x 20 rec/s", Config: fleet(1000)},
		{Name: "fleet, 2000 conn x 20 rec/s", Config: fleet(2000)},
		// The same fleet with tags of their own, as node forwarders send
		// them (a tag for each container's log file): 2,000 tags, each
		// forwarder sending 8 of them, each tag sent by 8 forwarders. The
		// rows above share 20 tags among every forwarder.
		{Name: "fleet, 2000 conn x 20 rec/s, 2000 tags", Config: fleetTags(2000, 2000)},
		// The cost of multiline joining on lines that start no group.
		{Name: "forward packed, ack, 4 conn, java multiline", Config: Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: 4, Records: 2000000, Workload: nginx}, Multiline: "java"},
		// Forward in, the Elasticsearch sink out, into VictoriaLogs.
		{Name: "forward packed, ack, 4 conn, elasticsearch", Config: Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: 4, Records: 1000000, Workload: nginx}, Sink: SinkES},
		// JetStream as production runs it: three servers, three replicas.
		{Name: "forward packed, ack, 4 conn, 3-node JetStream", Config: Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: 4, Records: 1000000, Workload: nginx}, NATS: NATS3Node},
		{Name: "fleet, 2000 conn x 20 rec/s, 3-node JetStream", Config: fleet(2000), NATS: NATS3Node},
		// Balancing: 12 forwarders, one replica, then three, then two.
		{Name: "cluster, 12 forwarders, 1 -> 3 -> 2 replicas", Config: Config{Protocol: "forward", Mode: "packed", Ack: true, Resend: true,
			Connections: clusterForwarders, Rate: 2000, ChunkRecords: 100, Duration: 30 * time.Second, Workload: nginx}, Cluster: true},
	}
}

// Scaled returns sc with its load scaled by f, for a quicker (or longer)
// bench: the record count, or the duration of a timed scenario (at least a
// second). The cluster scenario keeps its duration: its phases (replicas
// joining, balancing, one leaving) take about 20 s whatever the load, and
// figures taken after the load stopped would say balancing failed.
func (sc Scenario) Scaled(f float64) Scenario {
	switch {
	case sc.Cluster:
	case sc.Duration > 0:
		sc.Duration = max(time.Second, time.Duration(float64(sc.Duration)*f))
	default:
		sc.Records = max(1, int(float64(sc.Records)*f))
	}
	return sc
}

// fleet is a scenario of n forwarders, each sending one chunk of 20
// records a second with acks, for 20 seconds, with 20 tags among them.
func fleet(n int) Config { return fleetTags(n, 20) }

// fleetTags is fleet with the records spread over this many tags (pods).
func fleetTags(n, tags int) Config {
	return Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: n, Rate: 20, ChunkRecords: 20,
		Duration: 20 * time.Second, Workload: Workload{Nginx: 1, Pods: tags, NginxBytes: 180}}
}

// BenchRow is one measured scenario.
type BenchRow struct {
	Name string
	// Aggregator is what was measured: "sluice", or a peer such as
	// "fluent-bit, out_file".
	Aggregator   string
	Records      int
	RecordBytes  float64 // wire bytes per record
	AckedPerSec  float64 // acknowledged records per second
	EndToEnd     float64 // records per second until the last one is in the sink
	CPUPerRecord time.Duration
	PeakRSS      int64 // bytes
	// Verified is false where the records go nowhere to be counted (a
	// peer's null output): Lost, Dups and EndToEnd then mean nothing.
	Verified   bool
	Lost, Dups int
	// Runs of the scenario, and the lowest and highest of each figure
	// over them.
	Runs               int
	AckedMin, AckedMax float64
	CPUMin, CPUMax     time.Duration
	RSSMin, RSSMax     int64
	// CPURuns is the CPU per record of each run, in the order they ran:
	// the n-th run of every aggregator of a scenario met the machine at
	// about the same time, so their ratio is paired.
	CPURuns []time.Duration
	// Cluster holds the cluster scenario's own figures.
	Cluster *ClusterFigures
	// PublishErrors are sluice's failed publishes to JetStream over the
	// runs (sluice_queue_publish_errors_total), by reason; nil for a peer.
	// PublishErrorsUnread: a run's sluice did not show them (a baseline
	// binary from before they were shown at 0).
	PublishErrors       map[string]int
	PublishErrorsUnread bool
}

// BenchOptions are what Bench runs beside sluice, and how often.
type BenchOptions struct {
	// Count is the runs of each scenario (at least one).
	Count int
	// FluentBit is a fluent-bit binary to run on the same Forward
	// scenarios in the same run (see fluentBitConfig); "" runs sluice
	// alone. Fluent Bit is the peer the performance targets name; it is
	// built by whoever runs the bench, never by this repository.
	FluentBit string
	// VictoriaLogs is the victoria-logs binary (.ci/victoria-logs builds
	// it) that the Elasticsearch scenarios write into; without it they are
	// skipped.
	VictoriaLogs string
	// Baseline is another sluice binary (an earlier commit's, say) to run
	// right after sluice in each run of every scenario but the cluster
	// one, as "sluice baseline": the ratio table then compares the two
	// run by run, which this noisy a machine needs to tell a change of a
	// few per cent.
	Baseline string
	// Progress, if set, gets a line per run and loadgen's progress.
	Progress io.Writer
}

// Bench starts the sluice binary afresh for each scenario, on its embedded
// defaults with the file sink in a temporary directory (or the
// Elasticsearch sink into a fresh VictoriaLogs), runs the scenario, waits
// until the sink holds every record, and measures the process. With a peer
// (o.FluentBit), each run of a Forward scenario runs the peer right after
// sluice on the same records, so that the two meet the same machine. Each
// scenario runs o.Count times (a shared machine's speed varies from run to
// run); its row gives each figure its own median over the runs (see
// medianRow), the ranges of the acked rate, the CPU and the peak RSS, and
// the losses of all runs.
func Bench(ctx context.Context, sluice string, scenarios []Scenario, o BenchOptions) ([]BenchRow, error) {
	sluice, err := filepath.Abs(sluice) // it runs in its own directory
	if err != nil {
		return nil, err
	}
	var rows []BenchRow
	for _, sc := range scenarios {
		if sc.Sink == SinkES && o.VictoriaLogs == "" {
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "%s: skipped (no VictoriaLogs binary: run .ci/victoria-logs)\n", sc.Name)
			}
			continue
		}
		if sc.Cluster {
			runs := make([]BenchRow, 0, max(o.Count, 1))
			for range max(o.Count, 1) {
				row, err := benchCluster(ctx, sluice, sc, o)
				if err != nil {
					return rows, fmt.Errorf("%s: %w", sc.Name, err)
				}
				runs = append(runs, row)
			}
			rows = append(rows, medianRow(runs))
			continue
		}
		aggs, err := aggregators(sluice, sc, o)
		if err != nil {
			return rows, err
		}
		runs := make([][]BenchRow, len(aggs))
		for range max(o.Count, 1) {
			for i, agg := range aggs {
				row, err := benchOne(ctx, agg, sc, o)
				if err != nil {
					return rows, fmt.Errorf("%s, %s: %w", sc.Name, agg.name, err)
				}
				runs[i] = append(runs[i], row)
			}
		}
		for i := range aggs {
			rows = append(rows, medianRow(runs[i]))
		}
	}
	return rows, nil
}

// aggregators are what a run of sc measures, in the order they run:
// sluice, the baseline sluice if any, and Fluent Bit where it takes the
// scenario (Forward in, no multiline, the embedded JetStream).
func aggregators(sluice string, sc Scenario, o BenchOptions) ([]aggregator, error) {
	aggs := []aggregator{{name: "sluice", start: startSluice(sluice)}}
	if o.Baseline != "" {
		base, err := filepath.Abs(o.Baseline)
		if err != nil {
			return nil, err
		}
		aggs = append(aggs, aggregator{name: "sluice baseline", start: startSluice(base)})
	}
	if o.FluentBit != "" && sc.Protocol == "forward" && sc.Multiline == "" && sc.NATS == "" {
		fb, err := filepath.Abs(o.FluentBit)
		if err != nil {
			return nil, err
		}
		if sc.Sink == SinkES {
			aggs = append(aggs, aggregator{name: "fluent-bit, out es", start: startFluentBit(fb, fluentBitES)})
		} else {
			aggs = append(aggs,
				aggregator{name: "fluent-bit, out_file", start: startFluentBit(fb, fluentBitFile)},
				aggregator{name: "fluent-bit, out null", start: startFluentBit(fb, fluentBitNull)})
		}
	}
	return aggs, nil
}

// medianRow gives each figure of the runs its own median (the middle run
// for that figure, not the run in the middle by acked rate), with the range
// of the acked rate, the CPU and the peak RSS, and the losses of all runs.
func medianRow(runs []BenchRow) BenchRow {
	// The row starts as the run in the middle by acked rate: its acked
	// rate is the median, and the rest (the cluster scenario's figures)
	// come from it.
	byAcked := slices.Clone(runs)
	slices.SortFunc(byAcked, func(a, b BenchRow) int { return cmp.Compare(a.AckedPerSec, b.AckedPerSec) })
	row := byAcked[len(byAcked)/2]
	row.Runs = len(runs)
	row.AckedMin, row.AckedMax = byAcked[0].AckedPerSec, byAcked[len(byAcked)-1].AckedPerSec
	row.EndToEnd, _, _ = median(runs, func(r BenchRow) float64 { return r.EndToEnd })
	row.CPUPerRecord, row.CPUMin, row.CPUMax = median(runs, func(r BenchRow) time.Duration { return r.CPUPerRecord })
	row.PeakRSS, row.RSSMin, row.RSSMax = median(runs, func(r BenchRow) int64 { return r.PeakRSS })
	row.Lost, row.Dups, row.PublishErrors = 0, 0, nil
	row.CPURuns = make([]time.Duration, len(runs))
	for i, r := range runs {
		row.Lost += r.Lost
		row.Dups += r.Dups
		row.CPURuns[i] = r.CPUPerRecord
		row.addPublishErrors(r.PublishErrors)
		row.PublishErrorsUnread = row.PublishErrorsUnread || r.PublishErrorsUnread
	}
	return row
}

// median returns the middle of the runs' values of f (the upper middle of
// an even count), the lowest and the highest.
func median[T cmp.Ordered](runs []BenchRow, f func(BenchRow) T) (mid, lo, hi T) {
	v := make([]T, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	return spread(v)
}

// spread sorts v (not empty) and returns its middle value and its range.
func spread[T cmp.Ordered](v []T) (mid, lo, hi T) {
	slices.Sort(v)
	return v[len(v)/2], v[0], v[len(v)-1]
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// aggregator is a process under measurement and how to start it.
type aggregator struct {
	name  string
	start func(ctx context.Context, dir string, sc Scenario, vl string) (*server, error)
}

// server is a started aggregator: where to send and where the records
// land.
type server struct {
	cmd           *exec.Cmd
	forward, http string // host:port, and http's base URL
	// otlpHTTP (a base URL) and otlpGRPC (host:port); "" when off.
	otlpHTTP, otlpGRPC string
	target             *Target // nil: the records go nowhere to be counted
	metrics            string  // sluice's /metrics URL; "" for a peer
	after              func()  // if set, stop calls it once the process ended
}

// stop asks the process to end and waits up to 30 s before killing it.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	if s.after != nil {
		s.after()
	}
}

// startSluice runs the sluice binary on its embedded defaults, with the
// scenario's sink.
func startSluice(bin string) func(ctx context.Context, dir string, sc Scenario, vl string) (*server, error) {
	return func(ctx context.Context, dir string, sc Scenario, vl string) (*server, error) {
		ports, err := freePorts(5)
		if err != nil {
			return nil, err
		}
		multiline := ""
		if sc.Multiline != "" {
			multiline = fmt.Sprintf(", multiline: {parser: %s}", sc.Multiline)
		}
		cfg := fmt.Sprintf("forward: {listen: \"127.0.0.1:%d\", udp_heartbeat: false%s}\nhttp: {listen: \"127.0.0.1:%d\"}\napi: {listen: \"127.0.0.1:%d\"}\n"+
			"otlp: {http: {listen: \"127.0.0.1:%d\"}, grpc: {listen: \"127.0.0.1:%d\"}}\nenrich: {enabled: false}\nlog: {level: warn}\n",
			ports[0], multiline, ports[1], ports[2], ports[3], ports[4])
		var stopNATS func()
		if sc.NATS == NATS3Node {
			urls, stop, err := startJetStream3(ctx, dir)
			if err != nil {
				return nil, fmt.Errorf("3-node JetStream: %w", err)
			}
			stopNATS = stop
			cfg += fmt.Sprintf("nats: {url: %q, stream: {replicas: 3, max_bytes: 2GiB}, dead_letter: {max_bytes: 256MiB}}\n", strings.Join(urls, ","))
		}
		target := &Target{FileDir: filepath.Join(dir, "data", "out")}
		if sc.Sink == SinkES {
			cfg += fmt.Sprintf("sinks: [{name: es, elasticsearch: {urls: [%q]}}]\n", vl+"/insert/elasticsearch")
			target = &Target{VictoriaLogsURL: vl}
		}
		s, err := runSluice(ctx, bin, dir, cfg, ports)
		if err != nil {
			if stopNATS != nil {
				stopNATS()
			}
			return nil, err
		}
		s.target, s.after = target, stopNATS
		s.otlpHTTP, s.otlpGRPC = fmt.Sprintf("http://127.0.0.1:%d", ports[3]), fmt.Sprintf("127.0.0.1:%d", ports[4])
		return s, nil
	}
}

// runSluice writes cfg to dir/sluice.yaml, runs bin on it in dir and waits
// until its API (on ports[2]) is ready; ports[0] and ports[1] are its
// Forward and HTTP ports.
func runSluice(ctx context.Context, bin, dir, cfg string, ports []int) (*server, error) {
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-config", "sluice.yaml")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, forward: fmt.Sprintf("127.0.0.1:%d", ports[0]), http: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2])}
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2])); err != nil {
		s.stop()
		return nil, fmt.Errorf("sluice: %w", err)
	}
	return s, nil
}

func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		var err error
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	return ports, nil
}

// benchOne runs a scenario once against a fresh process of agg.
func benchOne(ctx context.Context, agg aggregator, sc Scenario, o BenchOptions) (BenchRow, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return BenchRow{}, err
	}
	defer os.RemoveAll(dir)
	vl := ""
	if sc.Sink == SinkES {
		stop, url, err := StartVictoriaLogs(ctx, o.VictoriaLogs, filepath.Join(dir, "vl"))
		if err != nil {
			return BenchRow{}, err
		}
		defer stop()
		vl = url
	}
	srv, err := agg.start(ctx, dir, sc, vl)
	if err != nil {
		return BenchRow{}, err
	}
	defer srv.stop()
	c := sc.Config
	switch {
	case c.Protocol == "http":
		c.Addr = srv.http
	case c.Protocol == "otlp" && c.Mode == OTLPGRPC:
		c.Addr = srv.otlpGRPC
	case c.Protocol == "otlp":
		c.Addr = srv.otlpHTTP
	default:
		c.Addr = srv.forward
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s (%s)\n", sc.Name, agg.name)
	}
	pid := srv.cmd.Process.Pid
	cpu0, err := processCPU(pid)
	if err != nil {
		return BenchRow{}, err
	}
	start := time.Now()
	rep, err := Run(ctx, c, o.Progress)
	if err != nil {
		return BenchRow{}, err
	}
	var v Verification
	if srv.target != nil {
		if v, err = Verify(ctx, rep, *srv.target, 5*time.Minute); err != nil {
			return BenchRow{}, err
		}
	}
	cpu1, err := processCPU(pid)
	if err != nil {
		return BenchRow{}, err
	}
	rss, err := peakRSS(pid)
	if err != nil {
		return BenchRow{}, err
	}
	row := BenchRow{Name: sc.Name, Aggregator: agg.name, Records: rep.Records, AckedPerSec: rep.RecordsPerSec, PeakRSS: rss,
		Verified: srv.target != nil, Lost: v.Lost, Dups: v.Duplicates}
	if srv.metrics != "" {
		if err := row.readPublishErrors(ctx, srv.metrics); err != nil {
			return BenchRow{}, err
		}
	}
	// The sink finished Waited after the sender: the end-to-end time. Files
	// tell when their last record was written, which reading them back
	// (slower than writing, on a machine shared with the aggregator) must
	// not stretch.
	e2e := rep.Total + v.Waited
	if !v.LastWrite.IsZero() {
		e2e = max(rep.Total, v.LastWrite.Sub(start))
	}
	if row.Verified && e2e > 0 {
		row.EndToEnd = float64(rep.Records) / e2e.Seconds()
	}
	if rep.Records > 0 {
		row.RecordBytes = float64(rep.Bytes) / float64(rep.Records)
		row.CPUPerRecord = (cpu1 - cpu0) / time.Duration(rep.Records)
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s (%s): %.0f records/s acked, %.2f µs of CPU a record, peak %d MiB\n",
			sc.Name, agg.name, row.AckedPerSec, float64(row.CPUPerRecord.Nanoseconds())/1000, row.PeakRSS>>20)
	}
	return row, nil
}

// waitHTTP waits up to 30 s for url to answer 200.
func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready at %s after 30 s", url)
}

// clockTicks is the kernel's USER_HZ, 100 on Linux everywhere.
const clockTicks = 100

// processCPU reads the user and system CPU time of a process from /proc.
func processCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time (Linux only): %w", err)
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// peakRSS reads VmHWM, the process's peak resident set.
func peakRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// PrintBench writes the table in Markdown, with the machine described,
// and, where a peer ran, the ratios of sluice to it.
func PrintBench(w io.Writer, rows []BenchRow) {
	fmt.Fprintf(w, "\nmachine: %s/%s, %d CPUs, %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	fmt.Fprintln(w, "| scenario | aggregator | records | bytes/record | acked records/s | acked range (runs) | end-to-end records/s | CPU µs/record (range) | peak RSS MiB (range) | lost | dup |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	for _, r := range rows {
		e2e, lost, dup := "–", "–", "–"
		if r.Verified {
			e2e, lost, dup = fmt.Sprintf("%.0f", r.EndToEnd), strconv.Itoa(r.Lost), strconv.Itoa(r.Dups)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.0f | %.0f–%.0f (%d) | %s | %.2f (%.2f–%.2f) | %.0f (%.0f–%.0f) | %s | %s |\n", r.Name, r.Aggregator, r.Records, r.RecordBytes, r.AckedPerSec,
			r.AckedMin, r.AckedMax, r.Runs, e2e,
			us(r.CPUPerRecord), us(r.CPUMin), us(r.CPUMax), mib(r.PeakRSS), mib(r.RSSMin), mib(r.RSSMax), lost, dup)
	}
	var cmp []string
	for i, r := range rows {
		if r.Aggregator == "sluice" {
			continue
		}
		// The sluice row of the scenario comes before its peers.
		var s *BenchRow
		for j := i - 1; j >= 0 && rows[j].Name == r.Name; j-- {
			if rows[j].Aggregator == "sluice" {
				s = &rows[j]
			}
		}
		if s == nil || r.AckedPerSec == 0 || r.CPUPerRecord == 0 || r.PeakRSS == 0 {
			continue
		}
		e2e := "–"
		if r.Verified && r.EndToEnd > 0 {
			e2e = fmt.Sprintf("%.2f", s.EndToEnd/r.EndToEnd)
		}
		cmp = append(cmp, fmt.Sprintf("| %s | %s | %.2f | %s | %.2f | %s | %.2f |", r.Name, r.Aggregator, s.AckedPerSec/r.AckedPerSec, e2e,
			float64(s.CPUPerRecord)/float64(r.CPUPerRecord), pairedCPU(*s, r), float64(s.PeakRSS)/float64(r.PeakRSS)))
	}
	for _, r := range rows {
		if f := r.Cluster; f != nil {
			fmt.Fprintf(w, "\n%s: 4/4/4 %s after two replicas joined; shares of the records over the next 5 s %.0f%% / %.0f%% / %.0f%%; %d connections shed to balance; the stopped replica's forwarders moved in %s; %d lost, %d duplicated\n",
				r.Name, durationOr(f.Balanced, "not reached"), 100*f.Shares[0], 100*f.Shares[1], 100*f.Shares[2], f.Shed, durationOr(f.Moved, "(not within 30 s)"), r.Lost, r.Dups)
		}
	}
	printPublishErrors(w, rows)
	printOTLPRatios(w, rows)
	if len(cmp) > 0 {
		fmt.Fprintln(w, "\nsluice ÷ peer, same runs (above 1 is more: want it for rates, not for CPU and RSS; run by run: the median and range of each run's ratio to the peer's run of the same round):")
		fmt.Fprintln(w, "\n| scenario | peer | acked | end to end | CPU per record | CPU per record, run by run | peak RSS |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		for _, l := range cmp {
			fmt.Fprintln(w, l)
		}
	}
}

// readPublishErrors adds a sluice process's failed publishes to the row's;
// a page without them (ErrNoPublishErrors) marks them unread.
func (r *BenchRow) readPublishErrors(ctx context.Context, metricsURL string) error {
	errs, err := ReadPublishErrors(ctx, metricsURL)
	switch {
	case errors.Is(err, ErrNoPublishErrors):
		r.PublishErrorsUnread = true
		return nil
	case err != nil:
		return err
	}
	r.addPublishErrors(errs)
	return nil
}

// addPublishErrors adds errs (nil: none read) to the row's.
func (r *BenchRow) addPublishErrors(errs map[string]int) {
	if errs == nil {
		return
	}
	if r.PublishErrors == nil {
		r.PublishErrors = map[string]int{}
	}
	for reason, n := range errs {
		r.PublishErrors[reason] += n
	}
}

// printPublishErrors says which of sluice's runs had publishes to
// JetStream fail (a stall, a timeout, a full stream), which retry or refuse
// chunks: none is the target.
func printPublishErrors(w io.Writer, rows []BenchRow) {
	var lines []string
	measured := false
	for _, r := range rows {
		if r.PublishErrors == nil && !r.PublishErrorsUnread {
			continue // a peer
		}
		measured = true
		if r.PublishErrorsUnread {
			lines = append(lines, fmt.Sprintf("- %s (%s): not read, not on its /metrics (a binary from before they were shown at 0)", r.Name, r.Aggregator))
		}
		if len(r.PublishErrors) == 0 {
			continue
		}
		reasons := slices.Sorted(maps.Keys(r.PublishErrors))
		for i, reason := range reasons {
			reasons[i] = fmt.Sprintf("%s %d", reason, r.PublishErrors[reason])
		}
		lines = append(lines, fmt.Sprintf("- %s (%s): %s", r.Name, r.Aggregator, strings.Join(reasons, ", ")))
	}
	switch {
	case !measured:
	case len(lines) == 0:
		fmt.Fprintln(w, "\nsluice's publishes to JetStream: none failed in any run (sluice_queue_publish_errors_total)")
	default:
		fmt.Fprintln(w, "\nsluice's publishes to JetStream that failed, over the runs (sluice_queue_publish_errors_total, by reason), or why they were not read:")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
}

// pairedCPU is the median and range of s's CPU per record over the peer's,
// each run against the peer's run of the same round (see CPURuns); "–" unless both have the same runs, more than one.
func pairedCPU(s, peer BenchRow) string {
	n := len(s.CPURuns)
	if n < 2 || len(peer.CPURuns) != n {
		return "–"
	}
	r := make([]float64, 0, n)
	for i, c := range s.CPURuns {
		if peer.CPURuns[i] == 0 {
			return "–"
		}
		r = append(r, float64(c)/float64(peer.CPURuns[i]))
	}
	mid, lo, hi := spread(r)
	return fmt.Sprintf("%.2f (%.2f–%.2f)", mid, lo, hi)
}

// printOTLPRatios compares each OTLP scenario with Forward's on as many
// connections ("… 4 conn"), the same records: OTLP ÷ Forward.
func printOTLPRatios(w io.Writer, rows []BenchRow) {
	byName := map[string]BenchRow{}
	for _, r := range rows {
		if r.Aggregator == "sluice" {
			byName[r.Name] = r
		}
	}
	var lines []string
	for _, r := range rows {
		if r.Aggregator != "sluice" || !strings.HasPrefix(r.Name, "otlp ") {
			continue
		}
		conns := r.Name[strings.LastIndex(r.Name, ", ")+2:]
		f, ok := byName["forward packed, ack, "+conns]
		if !ok || f.AckedPerSec == 0 || f.CPUPerRecord == 0 {
			continue
		}
		e2e := "–"
		if r.Verified && f.Verified && f.EndToEnd > 0 {
			e2e = fmt.Sprintf("%.2f", r.EndToEnd/f.EndToEnd)
		}
		lines = append(lines, fmt.Sprintf("| %s | %s | %.2f | %s | %.2f |", r.Name, f.Name, r.AckedPerSec/f.AckedPerSec, e2e,
			float64(r.CPUPerRecord)/float64(f.CPUPerRecord)))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\nOTLP ÷ Forward, the same records (the target: acked at least 0.80):")
	fmt.Fprintln(w, "\n| scenario | against | acked | end to end | CPU per record |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

func durationOr(d time.Duration, none string) string {
	if d == 0 {
		return none
	}
	return d.Round(100 * time.Millisecond).String()
}

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
		}
	}
	return "unknown CPU"
}
