package loadtest

import (
	"cmp"
	"context"
	"fmt"
	"io"
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
}

// BenchScenarios are `make bench`'s fixed scenarios: nginx access lines of
// 180 bytes, about 250 bytes a record on the wire in PackedForward (no stack
// traces), as the targets in docs/PERFORMANCE.md.
func BenchScenarios() []Scenario {
	nginx := Workload{Nginx: 1, Pods: 20, NginxBytes: 180}
	return []Scenario{
		{"forward packed, ack, 1 conn", Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: 1, Records: 1000000, Workload: nginx}, ""},
		{"forward packed, ack, 4 conn", Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: 4, Records: 2000000, Workload: nginx}, ""},
		{"forward message, ack, 1 conn", Config{Protocol: "forward", Mode: "message", Ack: true, Connections: 1, Records: 20000, Workload: nginx}, ""},
		{"forward message, ack, 4 conn", Config{Protocol: "forward", Mode: "message", Ack: true, Connections: 4, Records: 40000, Workload: nginx}, ""},
		{"forward gzip, ack, 1 conn", Config{Protocol: "forward", Mode: "gzip", Ack: true, Connections: 1, Records: 500000, Workload: nginx}, ""},
		{"forward gzip, ack, 4 conn", Config{Protocol: "forward", Mode: "gzip", Ack: true, Connections: 4, Records: 1000000, Workload: nginx}, ""},
		{"http json, 1 conn", Config{Protocol: "http", Mode: "json", Connections: 1, Records: 300000, Workload: nginx}, ""},
		{"http json, 4 conn", Config{Protocol: "http", Mode: "json", Connections: 4, Records: 600000, Workload: nginx}, ""},
		// A fleet: many forwarders, each sending one 20-record chunk a second.
		{"fleet, 100 conn x 20 rec/s", fleet(100), ""},
		{"fleet, 1000 conn x 20 rec/s", fleet(1000), ""},
		{"fleet, 2000 conn x 20 rec/s", fleet(2000), ""},
		// The cost of multiline joining on lines that start no group.
		{"forward packed, ack, 4 conn, java multiline", Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: 4, Records: 2000000, Workload: nginx}, "java"},
	}
}

// fleet is a scenario of n forwarders, each sending one chunk of 20
// records a second with acks, for 20 seconds.
func fleet(n int) Config {
	return Config{Protocol: "forward", Mode: "packed", Ack: true, Connections: n, Rate: 20, ChunkRecords: 20,
		Duration: 20 * time.Second, Workload: Workload{Nginx: 1, Pods: 20, NginxBytes: 180}}
}

// BenchRow is one measured scenario.
type BenchRow struct {
	Name         string
	Records      int
	RecordBytes  float64 // wire bytes per record
	AckedPerSec  float64 // acknowledged records per second
	EndToEnd     float64 // records per second until the last one is in the sink
	CPUPerRecord time.Duration
	PeakRSS      int64 // bytes
	Lost, Dups   int
	// Runs of the scenario, and their slowest and fastest acked rates.
	Runs               int
	AckedMin, AckedMax float64
}

// Bench starts the sluice binary afresh for each scenario, on its embedded
// defaults with the file sink in a temporary directory, runs the scenario,
// waits until the sink holds every record, and measures the process. Each
// scenario runs count times (a shared machine's speed varies from run to
// run); its row is the run with the median acked rate, with the slowest and
// fastest acked rates beside it, and the losses of all runs.
func Bench(ctx context.Context, sluice string, scenarios []Scenario, count int, progress io.Writer) ([]BenchRow, error) {
	sluice, err := filepath.Abs(sluice) // it runs in its own directory
	if err != nil {
		return nil, err
	}
	var rows []BenchRow
	for _, sc := range scenarios {
		runs := make([]BenchRow, 0, max(count, 1))
		for range max(count, 1) {
			row, err := benchOne(ctx, sluice, sc, progress)
			if err != nil {
				return rows, fmt.Errorf("%s: %w", sc.Name, err)
			}
			runs = append(runs, row)
		}
		rows = append(rows, medianRow(runs))
	}
	return rows, nil
}

// medianRow is the run with the median acked rate, with the range and
// the losses of all runs.
func medianRow(runs []BenchRow) BenchRow {
	slices.SortFunc(runs, func(a, b BenchRow) int { return cmp.Compare(a.AckedPerSec, b.AckedPerSec) })
	row := runs[len(runs)/2]
	row.Runs = len(runs)
	row.AckedMin, row.AckedMax = runs[0].AckedPerSec, runs[len(runs)-1].AckedPerSec
	row.Lost, row.Dups = 0, 0
	for _, r := range runs {
		row.Lost += r.Lost
		row.Dups += r.Dups
	}
	return row
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func benchOne(ctx context.Context, sluice string, sc Scenario, progress io.Writer) (BenchRow, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return BenchRow{}, err
	}
	defer os.RemoveAll(dir)
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return BenchRow{}, err
		}
	}
	multiline := ""
	if sc.Multiline != "" {
		multiline = fmt.Sprintf(", multiline: {parser: %s}", sc.Multiline)
	}
	cfg := fmt.Sprintf("forward: {listen: \"127.0.0.1:%d\", udp_heartbeat: false%s}\nhttp: {listen: \"127.0.0.1:%d\"}\napi: {listen: \"127.0.0.1:%d\"}\nenrich: {enabled: false}\nlog: {level: warn}\n",
		ports[0], multiline, ports[1], ports[2])
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(cfg), 0o600); err != nil {
		return BenchRow{}, err
	}
	cmd := exec.Command(sluice, "-config", "sluice.yaml")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return BenchRow{}, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2])); err != nil {
		return BenchRow{}, err
	}
	c := sc.Config
	c.Addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	if c.Protocol == "http" {
		c.Addr = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	}
	if progress != nil {
		fmt.Fprintf(progress, "%s\n", sc.Name)
	}
	cpu0, err := processCPU(cmd.Process.Pid)
	if err != nil {
		return BenchRow{}, err
	}
	rep, err := Run(ctx, c, progress)
	if err != nil {
		return BenchRow{}, err
	}
	v, err := Verify(ctx, rep, Target{FileDir: filepath.Join(dir, "data", "out")}, 5*time.Minute)
	if err != nil {
		return BenchRow{}, err
	}
	cpu1, err := processCPU(cmd.Process.Pid)
	if err != nil {
		return BenchRow{}, err
	}
	rss, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		return BenchRow{}, err
	}
	row := BenchRow{Name: sc.Name, Records: rep.Records, AckedPerSec: rep.RecordsPerSec, PeakRSS: rss, Lost: v.Lost, Dups: v.Duplicates}
	// The sink finished Waited after the sender: the end-to-end time.
	if e2e := rep.Total + v.Waited; e2e > 0 {
		row.EndToEnd = float64(rep.Records) / e2e.Seconds()
	}
	if rep.Records > 0 {
		row.RecordBytes = float64(rep.Bytes) / float64(rep.Records)
		row.CPUPerRecord = (cpu1 - cpu0) / time.Duration(rep.Records)
	}
	return row, nil
}

func waitReady(ctx context.Context, url string) error {
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
	return fmt.Errorf("sluice not ready at %s", url)
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

// PrintBench writes the table in Markdown, with the machine described.
func PrintBench(w io.Writer, rows []BenchRow) {
	fmt.Fprintf(w, "\nmachine: %s/%s, %d CPUs, %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	fmt.Fprintln(w, "| scenario | records | bytes/record | acked records/s | acked range (runs) | end-to-end records/s | CPU µs/record | peak RSS MiB | lost | dup |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.0f–%.0f (%d) | %.0f | %.2f | %.0f | %d | %d |\n", r.Name, r.Records, r.RecordBytes, r.AckedPerSec,
			r.AckedMin, r.AckedMax, r.Runs, r.EndToEnd,
			float64(r.CPUPerRecord.Nanoseconds())/1000, float64(r.PeakRSS)/(1<<20), r.Lost, r.Dups)
	}
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
