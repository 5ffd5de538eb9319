package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/cmd/sluice/app"
	"github.com/sluicelog/sluice/cmd/sluice/app/apptest"
	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/msgp"
	"github.com/sluicelog/sluice/internal/testcerts"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks/elasticsearch"
	"github.com/sluicelog/sluice/sinks/elasticsearch/esfake"
	"github.com/sluicelog/sluice/sinks/file"
)

// sluice runs an in-process sluice on loopback with a file sink, the
// destination that counts and checks every record (Verify reads it).
func sluice(t *testing.T, edit func(*config.Config)) (*app.App, string) {
	t.Helper()
	return apptest.Start(t, edit)
}

func runAndVerify(t *testing.T, cfg Config, dir string) (*Report, Verification) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, rep, Target{FileDir: dir}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return rep, v
}

// Every protocol and mode: each record is acknowledged, counted once in
// the report, and found exactly once at the destination.
func TestEveryMode(t *testing.T) {
	a, dir := sluice(t, nil)
	cases := []Config{
		{Protocol: "forward", Mode: "packed", Ack: true},
		{Protocol: "forward", Mode: "forward", Ack: true},
		{Protocol: "forward", Mode: "gzip", Ack: true},
		{Protocol: "forward", Mode: "message", Ack: true, Records: 300},
		{Protocol: "http", Mode: "json"},
		{Protocol: "http", Mode: "ndjson", Gzip: true},
		{Protocol: "http", Mode: "msgpack"},
		{Protocol: "otlp", Mode: OTLPProtobuf},
		{Protocol: "otlp", Mode: OTLPJSON, Gzip: true},
		{Protocol: "otlp", Mode: OTLPGRPC},
	}
	otlpHTTP, otlpGRPC := a.OTLPAddrs()
	for _, c := range cases {
		t.Run(c.Protocol+"/"+c.Mode, func(t *testing.T) {
			switch {
			case c.Protocol == "http":
				c.Addr = "http://" + a.HTTPAddr().String()
			case c.Protocol == "otlp" && c.Mode == OTLPGRPC:
				c.Addr = otlpGRPC.String()
			case c.Protocol == "otlp":
				c.Addr = "http://" + otlpHTTP.String()
			default:
				c.Addr = a.ForwardAddr().String()
			}
			if c.Records == 0 {
				c.Records = 2500
			}
			c.Connections, c.ChunkRecords = 3, 400
			c.Workload = Workload{Stack: 1, Nginx: 1, JSON: 1, StackBytes: 2000}
			rep, v := runAndVerify(t, c, dir)
			wantReqs := (c.Records + 399) / 400
			if c.Mode == "message" {
				wantReqs = c.Records
			}
			if rep.Records != c.Records || rep.Requests != wantReqs {
				t.Errorf("report: %d records in %d requests, want %d in %d (status %v)", rep.Records, rep.Requests, c.Records, wantReqs, rep.Status)
			}
			if v.Acked != c.Records || v.Found != c.Records || v.Lost != 0 || v.Duplicates != 0 || v.Extra != 0 {
				t.Errorf("%v", v)
			}
		})
	}
}

// Without acks the generator only writes, and asks for none: its values
// carry no chunk id. Every record still arrives, also when it closes its
// connections right after the last of many chunks (a chunk id would have
// the server write acks that no one reads, and the close would reset the
// connection before the server read the rest).
func TestForwardWithoutAck(t *testing.T) {
	a, dir := sluice(t, nil)
	for _, mode := range []string{"packed", "forward", "gzip"} {
		cfg := Config{Addr: a.ForwardAddr().String(), Mode: mode, Records: 10000, ChunkRecords: 250, Connections: 2}
		rep, v := runAndVerify(t, cfg, dir)
		if rep.Status["sent"] != 40 || v.Lost != 0 || v.Extra != 0 {
			t.Errorf("%s: status %v, %v", mode, rep.Status, v)
		}
	}
}

// A value's options: a chunk id with acks, its size without.
func TestForwardOptions(t *testing.T) {
	for _, mode := range []string{"packed", "forward", "gzip", "message"} {
		for _, ack := range []bool{false, true} {
			cfg := Config{Addr: "127.0.0.1:1", Mode: mode, Ack: ack, ChunkRecords: 10}
			cfg.SetDefaults()
			r := newEncoder(&cfg, 0).build(cfg.ChunkRecords, 0)
			body, chunk := r.payload(&cfg, 7, &bytes.Buffer{}, gzip.NewWriter(io.Discard))
			// [tag, entries, options] or [tag, time, record, options]: the
			// options are the last element.
			n, off, err := msgp.ReadArrayHeader(body, 0)
			for i := 0; i < n-1 && err == nil; i++ {
				off, err = msgp.Skip(body, off)
			}
			var opts map[string]any
			if err == nil {
				err = msgpack.Unmarshal(body[off:], &opts)
			}
			if err != nil {
				t.Fatalf("%s, ack %v: %v", mode, ack, err)
			}
			id, hasID := opts["chunk"]
			size, hasSize := opts["size"]
			switch {
			case ack && (!hasID || id != chunk || chunk == "" || hasSize):
				t.Errorf("%s with acks: options %v, chunk %q; want the chunk id alone", mode, opts, chunk)
			case !ack && (hasID || chunk != "" || fmt.Sprint(size) != strconv.Itoa(r.records)):
				t.Errorf("%s without acks: options %v, chunk %q; want the size (%d) and no chunk id", mode, opts, chunk, r.records)
			}
			if _, gz := opts["compressed"]; gz != (mode == "gzip") {
				t.Errorf("%s: options %v", mode, opts)
			}
		}
	}
}

// The shared-key handshake and TLS, and an HTTP bearer token: with the
// right secrets everything arrives; with wrong ones nothing is acked, and
// the status distribution says why.
func TestSecrets(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	tlsFiles := testcerts.Files(t, ca, nil)
	a, dir := sluice(t, func(c *config.Config) {
		c.Forward.Security.SharedKey = "s3cret"
		c.Forward.TLS.CertFile, c.Forward.TLS.KeyFile = tlsFiles.CertFile, tlsFiles.KeyFile
		c.HTTP.Auth.Tokens = []string{"tok"}
	})
	fwd := Config{Addr: a.ForwardAddr().String(), Ack: true, Records: 1000, Connections: 2,
		SharedKey: "s3cret", TLS: true, TLSInsecure: true, Timeout: 5 * time.Second}
	if _, v := runAndVerify(t, fwd, dir); v.Found != 1000 || v.Lost != 0 {
		t.Errorf("forward with key and TLS: %v", v)
	}
	bad := fwd
	bad.SharedKey = "wrong"
	rep, err := Run(context.Background(), bad, nil)
	if err != nil || rep.Records != 0 || rep.Status["dial error"] == 0 {
		t.Errorf("wrong key: %v, %d records, status %v", err, rep.Records, rep.Status)
	}
	h := Config{Protocol: "http", Addr: "http://" + a.HTTPAddr().String(), Records: 1000, Token: "tok"}
	if _, v := runAndVerify(t, h, dir); v.Found != 1000 {
		t.Errorf("http with token: %v", v)
	}
	h.Token = ""
	rep, _ = Run(context.Background(), h, nil)
	if rep.Records != 0 || rep.Status["HTTP 401"] == 0 {
		t.Errorf("http without token: %d records, status %v", rep.Records, rep.Status)
	}
}

// -q holds each connection to its rate: 2,000 records at 4,000/s with a
// burst of 400 cannot take less than 0.4 s.
func TestRateLimit(t *testing.T) {
	a, _ := sluice(t, nil)
	rep, err := Run(context.Background(), Config{Addr: a.ForwardAddr().String(), Ack: true, Records: 2000,
		ChunkRecords: 100, Rate: 4000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 2000 || rep.Total < 400*time.Millisecond || rep.RecordsPerSec > 5000 {
		t.Errorf("%d records in %v: %.0f records/s over the limit", rep.Records, rep.Total, rep.RecordsPerSec)
	}
}

// -z stops by itself.
func TestDuration(t *testing.T) {
	a, dir := sluice(t, nil)
	rep, v := runAndVerify(t, Config{Addr: a.ForwardAddr().String(), Ack: true, Duration: 300 * time.Millisecond, Rate: 20000, ChunkRecords: 200}, dir)
	if rep.Records == 0 || v.Lost != 0 || v.Found != rep.Records {
		t.Errorf("%d records, %v", rep.Records, v)
	}
}

// Verification catches a lost and a duplicated record.
func TestVerifyFindsLossAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for _, n := range []int{0, 1, 2, 4, 5, 5, 6, 7, 8, 9, 11} { // 3 lost, 5 twice, 11 never acked
		fmt.Fprintf(&b, `{"@timestamp":"x","lg_run":"abcd","lg_seq":"%010d","log":"l"}`+"\n", n)
	}
	fmt.Fprintf(&b, `{"lg_run":"other","lg_seq":"0000000003"}`+"\n")
	if err := os.WriteFile(filepath.Join(dir, "sluice-file-1.ndjson"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := &Report{RunID: "abcd", Acked: []Span{{0, 6}, {6, 4}}}
	v, err := Verify(context.Background(), rep, Target{FileDir: dir}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.Acked != 10 || v.Found != 9 || v.Lost != 1 || v.Duplicates != 1 || v.Extra != 1 || v.OK() {
		t.Errorf("%v", v)
	}
	// A duplicate alone fails, unless duplicates are allowed.
	rep = &Report{RunID: "abcd", Acked: []Span{{4, 3}}}
	for _, allow := range []bool{false, true} {
		v, err = Verify(context.Background(), rep, Target{FileDir: dir, AllowDuplicates: allow}, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if v.Lost != 0 || v.Duplicates != 1 || v.OK() != allow || (v.Problem() == "") != allow {
			t.Errorf("allow duplicates %v: %v, ok %v, problem %q", allow, v, v.OK(), v.Problem())
		}
	}
}

// Percentiles and the histogram against a known distribution: 1..1000 ms.
func TestPercentiles(t *testing.T) {
	var lat []time.Duration
	for i := 1000; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	r := &Report{}
	r.summarize(lat)
	want := map[string]time.Duration{"p10": 100, "p25": 250, "p50": 500, "p75": 750, "p90": 900, "p95": 950, "p99": 990, "p99.9": 999}
	for k, ms := range want {
		if r.Percentiles[k] != ms*time.Millisecond {
			t.Errorf("%s = %v, want %dms", k, r.Percentiles[k], ms)
		}
	}
	if r.Fastest != time.Millisecond || r.Slowest != time.Second || r.Average != 500500*time.Microsecond {
		t.Errorf("fastest %v slowest %v average %v", r.Fastest, r.Slowest, r.Average)
	}
	total := 0
	for i, b := range r.Histogram {
		total += b.Count
		// Equal bars: about 100 each after the first mark.
		if i > 0 && (b.Count < 99 || b.Count > 101) {
			t.Errorf("bar %d up to %v: %d", i, b.Mark, b.Count)
		}
	}
	if total != 1000 || len(r.Histogram) != 11 {
		t.Errorf("histogram of %d bars, %d requests", len(r.Histogram), total)
	}
	var out strings.Builder
	r.Print(&out)
	if !strings.Contains(out.String(), "99.9% in 0.9990 secs") || !strings.Contains(out.String(), "50% in 0.5000 secs") {
		t.Errorf("printed:\n%s", out.String())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Protocol: "udp"}, {Protocol: "http", Mode: "packed"}, {Protocol: "http", Ack: true}} {
		if _, err := Run(context.Background(), c, nil); err == nil {
			t.Errorf("%+v ran", c)
		}
	}
}

// Verification by sluice's own metrics: the delivered counter of each sink
// grows by the acknowledged records; a sink whose route takes none of them
// shows them all lost.
func TestVerifyByMetrics(t *testing.T) {
	a, _ := sluice(t, func(c *config.Config) {
		c.Sinks = append(c.Sinks, config.SinkConfig{Name: "elsewhere", Match: []string{"nothing.**"}, File: &file.Config{Path: t.TempDir()}})
	})
	metrics := "http://" + a.APIAddr().String() + "/metrics"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base, err := ReadSinkCounts(ctx, metrics)
	if err != nil {
		t.Fatal(err)
	}
	if len(base) != 2 {
		t.Fatalf("sinks before the run: %v", base)
	}
	rep, err := Run(ctx, Config{Addr: a.ForwardAddr().String(), Ack: true, Records: 4000, ChunkRecords: 500}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, rep, Target{MetricsURL: metrics, Sink: "file", Baseline: base}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v.Acked != 4000 || v.Found != 4000 || v.Lost != 0 || v.Extra != 0 || !v.OK() {
		t.Errorf("file sink: %v", v)
	}
	v, err = Verify(ctx, rep, Target{MetricsURL: metrics, Baseline: base}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.Found != 0 || v.Lost != 4000 || v.OK() {
		t.Errorf("every sink, one of which takes nothing: %v", v)
	}
	if _, err := Verify(ctx, rep, Target{MetricsURL: metrics, Sink: "nosuch"}, time.Second); err == nil || !strings.Contains(err.Error(), `no sink "nosuch"`) {
		t.Errorf("unknown sink: %v", err)
	}
}

// ReadPublishErrors reads sluice's failed publishes by reason: none while
// the stream takes every record, store_failed once a stream whose sink
// cannot write is full.
func TestReadPublishErrors(t *testing.T) {
	a, _ := sluice(t, func(c *config.Config) {
		c.NATS.Stream.MaxBytes = 1 << 20
		c.NATS.Stream.Compression = queue.CompressionNone
		c.Sinks = []config.SinkConfig{{Name: "down", Elasticsearch: &elasticsearch.Config{URLs: []string{"http://127.0.0.1:1"}}}}
	})
	t.Cleanup(a.Kill) // the sink that cannot write would hold a shutdown to its deadline
	metrics := "http://" + a.APIAddr().String() + "/metrics"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs, err := ReadPublishErrors(ctx, metrics)
	if err != nil || errs == nil || len(errs) != 0 {
		t.Fatalf("before any record: %v, %v", errs, err)
	}
	// 1.6 MB into a 1 MiB stream, over HTTP: a refused request is answered
	// 429 (a Forward connection would retry its chunk until shutdown).
	rep, err := Run(ctx, Config{Addr: "http://" + a.HTTPAddr().String(), Protocol: "http", Mode: "ndjson", Records: 4000, ChunkRecords: 250}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status["HTTP 429"] == 0 {
		t.Fatalf("the stream took everything: %v", rep.Status)
	}
	// The refusal is counted before the 429 is written.
	if errs, err = ReadPublishErrors(ctx, metrics); err != nil || errs["store_failed"] == 0 {
		t.Fatalf("after %d requests refused: %v, %v; want store_failed counted", rep.Status["HTTP 429"], errs, err)
	}
	if _, err := ReadPublishErrors(ctx, "http://"+a.APIAddr().String()+"/nosuch"); err == nil || errors.Is(err, ErrNoPublishErrors) {
		t.Errorf("a page that is not there: %v", err)
	}
	// A metrics page without them (a sluice from before they were shown).
	other := httptest.NewServer(promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{}))
	defer other.Close()
	if _, err := ReadPublishErrors(ctx, other.URL); !errors.Is(err, ErrNoPublishErrors) {
		t.Errorf("a page without the metric: %v, want ErrNoPublishErrors", err)
	}
}

// The workload's kinds follow their weights and sizes.
func TestWorkloadShapes(t *testing.T) {
	w := Workload{Nginx: 1, NginxBytes: 180}
	w.setDefaults()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 100 {
		if l := w.line(r, i); len(l) != 180 || !strings.Contains(l, `"GET /api/items/`) || !strings.HasSuffix(l, `"`) {
			t.Fatalf("nginx line of %d bytes: %q", len(l), l)
		}
	}
	w = Workload{JSON: 1, Stack: 1, StackBytes: 3000}
	w.setDefaults()
	kinds := map[string]int{}
	for i := range 2000 {
		switch l := w.line(r, i); {
		case strings.HasPrefix(l, `{"level":`):
			kinds["json"]++
		case strings.HasPrefix(l, "panic:") && len(l) == 3000:
			kinds["stack"]++
		default:
			t.Fatalf("unexpected line %q", l)
		}
	}
	if kinds["json"] < 850 || kinds["stack"] < 850 {
		t.Errorf("1:1 weights gave %v", kinds)
	}
}

// A bench row gives each figure its own median over the runs, not the
// figures of the run with the median acked rate, with the ranges, every
// run's losses and each run's CPU in the order they ran.
func TestMedianRow(t *testing.T) {
	row := medianRow([]BenchRow{
		{AckedPerSec: 900, EndToEnd: 6, CPUPerRecord: 1200, PeakRSS: 140, Lost: 1, PublishErrors: map[string]int{"stalled": 2}},
		{AckedPerSec: 700, EndToEnd: 9, CPUPerRecord: 1500, PeakRSS: 120, PublishErrors: map[string]int{}},
		{AckedPerSec: 800, EndToEnd: 7, CPUPerRecord: 1100, PeakRSS: 150, Dups: 2, PublishErrors: map[string]int{"stalled": 1, "timeout": 4}},
	})
	want := BenchRow{
		AckedPerSec: 800, AckedMin: 700, AckedMax: 900,
		EndToEnd:     7,
		CPUPerRecord: 1200, CPUMin: 1100, CPUMax: 1500,
		PeakRSS: 140, RSSMin: 120, RSSMax: 150,
		Runs: 3, Lost: 1, Dups: 2,
		CPURuns:       []time.Duration{1200, 1500, 1100},
		PublishErrors: map[string]int{"stalled": 3, "timeout": 4},
	}
	if !reflect.DeepEqual(row, want) {
		t.Errorf("got  %+v\nwant %+v", row, want)
	}
	// A peer's runs have no publish errors to read: nil, not none.
	if row := medianRow([]BenchRow{{AckedPerSec: 1}, {AckedPerSec: 2}}); row.PublishErrors != nil || row.PublishErrorsUnread {
		t.Errorf("a peer's publish errors: %v", row.PublishErrors)
	}
	// A baseline binary that did not show them: unread.
	if row := medianRow([]BenchRow{{AckedPerSec: 1, PublishErrorsUnread: true}, {AckedPerSec: 2}}); !row.PublishErrorsUnread {
		t.Error("a run's unread publish errors lost in the median row")
	}
}

// BENCH_SCALE scales each scenario's records or duration, but leaves the
// cluster scenario the time its phases need.
func TestScaledScenarios(t *testing.T) {
	for _, sc := range BenchScenarios() {
		got := sc.Scaled(0.1)
		switch {
		case sc.Cluster:
			if got.Duration != sc.Duration {
				t.Errorf("%s: duration %v scaled to %v; its phases need it whole", sc.Name, sc.Duration, got.Duration)
			}
		case sc.Duration > 0:
			if want := sc.Duration / 10; got.Duration != want || got.Records != sc.Records {
				t.Errorf("%s: duration %v, records %d; want %v, %d", sc.Name, got.Duration, got.Records, want, sc.Records)
			}
		default:
			if want := sc.Records / 10; got.Records != want || got.Duration != 0 {
				t.Errorf("%s: records %d, duration %v; want %d, 0", sc.Name, got.Records, got.Duration, want)
			}
		}
	}
	if got := (Scenario{Config: Config{Duration: 2 * time.Second}}).Scaled(0.01); got.Duration != time.Second {
		t.Errorf("2s scaled by 0.01: %v, want the 1s floor", got.Duration)
	}
	if got := (Scenario{Config: Config{Records: 5}}).Scaled(0.01); got.Records != 1 {
		t.Errorf("5 records scaled by 0.01: %d, want 1", got.Records)
	}
}

// Verification by an Elasticsearch count: sluice's Elasticsearch sink
// writes into the in-process Elasticsearch, and Verify counts the run's
// documents; a report claiming more than arrived shows them lost.
func TestVerifyByElasticsearch(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	a, _ := sluice(t, func(c *config.Config) {
		c.Sinks = []config.SinkConfig{{Name: "es", Elasticsearch: &elasticsearch.Config{URLs: []string{es.URL()}, Index: "loadtest"}}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, Config{Addr: a.ForwardAddr().String(), Ack: true, Records: 3000, ChunkRecords: 500}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, rep, Target{ESURL: es.URL(), ESIndex: "load*"}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v.Acked != 3000 || v.Found != 3000 || v.Lost != 0 || !v.OK() {
		t.Errorf("%v", v)
	}
	// OTLP records carry the run id among their attributes.
	otlpHTTP, _ := a.OTLPAddrs()
	orep, err := Run(ctx, Config{Protocol: "otlp", Addr: "http://" + otlpHTTP.String(), Records: 2000, ChunkRecords: 500}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Verify(ctx, orep, Target{ESURL: es.URL(), ESIndex: "load*"}, 30*time.Second); err != nil || v.Found != 2000 || v.Lost != 0 {
		t.Errorf("OTLP run: %v, %v", v, err)
	}
	more := *rep
	more.Acked = append(slices.Clone(rep.Acked), Span{From: 1 << 30, N: 7})
	if v, err = Verify(ctx, &more, Target{ESURL: es.URL()}, 300*time.Millisecond); err != nil || v.Lost != 7 || v.OK() {
		t.Errorf("7 acknowledged records missing: %v, %v", v, err)
	}
}

// With a peer in the table, PrintBench gives sluice's figures over the
// peer's, scenario by scenario; a peer whose records go nowhere has no
// end-to-end ratio.
func TestPrintBenchRatios(t *testing.T) {
	rows := []BenchRow{
		{Name: "a", Aggregator: "sluice", AckedPerSec: 900, EndToEnd: 600, CPUPerRecord: 1500, PeakRSS: 150 << 20, Verified: true, Runs: 3,
			CPURuns: []time.Duration{1500, 1000, 2000}},
		{Name: "a", Aggregator: "sluice baseline", AckedPerSec: 900, EndToEnd: 600, CPUPerRecord: 1500, PeakRSS: 150 << 20, Verified: true, Runs: 3,
			CPURuns: []time.Duration{1600, 1250, 1500}},
		{Name: "a", Aggregator: "fluent-bit, out_file", AckedPerSec: 600, EndToEnd: 200, CPUPerRecord: 3000, PeakRSS: 100 << 20, Verified: true, Runs: 1},
		{Name: "a", Aggregator: "fluent-bit, out null", AckedPerSec: 450, CPUPerRecord: 1000, CPUMin: 900, CPUMax: 1250, PeakRSS: 300 << 20, RSSMin: 250 << 20, RSSMax: 310 << 20, Runs: 3},
		{Name: "b", Aggregator: "sluice", AckedPerSec: 100, EndToEnd: 100, CPUPerRecord: 1000, PeakRSS: 1 << 20, Verified: true, Runs: 1},
	}
	var out strings.Builder
	PrintBench(&out, rows)
	for _, want := range []string{
		// The medians are equal; run by run the change took 0.80, 0.94
		// and 1.33 of the baseline's CPU.
		"| a | sluice baseline | 1.00 | 1.00 | 1.00 | 0.94 (0.80–1.33) | 1.00 |",
		"| a | fluent-bit, out_file | 1.50 | 3.00 | 0.50 | – | 1.50 |",
		"| a | fluent-bit, out null | 2.00 | – | 1.50 | – | 0.50 |",
		"| a | fluent-bit, out null | 0 | 0 | 450 | 0–0 (3) | – | 1.00 (0.90–1.25) | 300 (250–310) | – | – |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no line %q in\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "| b | fluent-bit") {
		t.Errorf("a ratio for a scenario without a peer:\n%s", out.String())
	}
	if strings.Contains(out.String(), "publishes to JetStream") {
		t.Errorf("publish errors printed where none were read:\n%s", out.String())
	}

	// sluice's failed publishes: none, or each scenario's by reason.
	rows[0].PublishErrors, rows[1].PublishErrors, rows[4].PublishErrors = map[string]int{}, map[string]int{}, map[string]int{}
	out.Reset()
	PrintBench(&out, rows)
	if !strings.Contains(out.String(), "sluice's publishes to JetStream: none failed in any run") {
		t.Errorf("no line saying none failed in\n%s", out.String())
	}
	rows[4].PublishErrors = map[string]int{"timeout": 1, "stalled": 3}
	rows[1].PublishErrors, rows[1].PublishErrorsUnread = nil, true
	out.Reset()
	PrintBench(&out, rows)
	if !strings.Contains(out.String(), "\n- a (sluice baseline): not read") {
		t.Errorf("no line for the baseline's unread publish errors in\n%s", out.String())
	}
	if !strings.Contains(out.String(), "\n- b (sluice): stalled 3, timeout 1\n") || strings.Contains(out.String(), "- a (sluice):") ||
		strings.Contains(out.String(), "none failed") {
		t.Errorf("want b's failed publishes alone in\n%s", out.String())
	}
}

// A run measures sluice, then the baseline sluice if one is given, then
// Fluent Bit where it takes the scenario: Forward in, on the embedded
// JetStream, without multiline.
func TestAggregators(t *testing.T) {
	names := func(sc Scenario, o BenchOptions) []string {
		t.Helper()
		aggs, err := aggregators("bin/sluice", sc, o)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, a := range aggs {
			n = append(n, a.name)
		}
		return n
	}
	all := BenchOptions{Baseline: "old/sluice", FluentBit: "fb/fluent-bit"}
	fwd := Scenario{Config: Config{Protocol: "forward"}}
	es := Scenario{Config: Config{Protocol: "forward"}, Sink: SinkES}
	otlp := Scenario{Config: Config{Protocol: "otlp"}}
	three := Scenario{Config: Config{Protocol: "forward"}, NATS: NATS3Node}
	for _, c := range []struct {
		sc   Scenario
		o    BenchOptions
		want []string
	}{
		{fwd, BenchOptions{}, []string{"sluice"}},
		{fwd, all, []string{"sluice", "sluice baseline", "fluent-bit, out_file", "fluent-bit, out null"}},
		{es, all, []string{"sluice", "sluice baseline", "fluent-bit, out es"}},
		{otlp, all, []string{"sluice", "sluice baseline"}},
		{three, all, []string{"sluice", "sluice baseline"}},
		{fwd, BenchOptions{FluentBit: "fb/fluent-bit"}, []string{"sluice", "fluent-bit, out_file", "fluent-bit, out null"}},
	} {
		if got := names(c.sc, c.o); !slices.Equal(got, c.want) {
			t.Errorf("%+v with %+v: %q, want %q", c.sc.Config.Protocol, c.o, got, c.want)
		}
	}
}

// PrintBench sets each OTLP scenario beside Forward's on as many
// connections.
func TestPrintOTLPRatios(t *testing.T) {
	rows := []BenchRow{
		{Name: "forward packed, ack, 4 conn", Aggregator: "sluice", AckedPerSec: 1000, EndToEnd: 800, CPUPerRecord: 1000, Verified: true, Runs: 1},
		{Name: "otlp http protobuf, 4 conn", Aggregator: "sluice", AckedPerSec: 850, EndToEnd: 600, CPUPerRecord: 1500, Verified: true, Runs: 1},
		{Name: "otlp http protobuf, 1 conn", Aggregator: "sluice", AckedPerSec: 500, CPUPerRecord: 1500, Runs: 1},
	}
	var out strings.Builder
	PrintBench(&out, rows)
	if want := "| otlp http protobuf, 4 conn | forward packed, ack, 4 conn | 0.85 | 0.75 | 1.50 |"; !strings.Contains(out.String(), want) {
		t.Errorf("no line %q in\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "| otlp http protobuf, 1 conn | forward") {
		t.Errorf("a ratio without the Forward scenario:\n%s", out.String())
	}
}

// With -resend, a forwarder whose connection sluice closes before the ack
// (here: every connection closes after about a second) reconnects and sends
// the same chunk again, as Fluent Bit does: every acknowledged record is in
// the sink once, and no record was stored without its chunk being
// acknowledged in the end.
func TestResendAfterClose(t *testing.T) {
	a, out := sluice(t, func(c *config.Config) { c.Forward.MaxConnectionAge = time.Second })
	cfg := Config{Protocol: "forward", Addr: a.ForwardAddr().String(), Mode: "packed", Ack: true, Resend: true,
		Connections: 4, Duration: 3 * time.Second, Rate: 2000, ChunkRecords: 50, Workload: Workload{Nginx: 1}}
	cfg.SetDefaults()
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	resent := 0
	for status, n := range rep.Status {
		if strings.HasPrefix(status, "resent after ") {
			resent += n
		}
	}
	if resent == 0 {
		t.Fatalf("no chunk was sent again, with connections closing every second: %v", rep.Status)
	}
	v, err := Verify(context.Background(), rep, Target{FileDir: out}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Extra != 0 || v.Acked == 0 {
		t.Fatalf("%d chunks resent; %s", resent, v)
	}
	t.Logf("%d chunks resent after a close; %s", resent, v)
}

// The progress line is one line, rewritten every second and ended once; a
// run shorter than a second prints none, and no empty line either.
func TestProgressLine(t *testing.T) {
	a, _ := sluice(t, nil)
	var short, long strings.Builder
	cfg := Config{Protocol: "forward", Addr: a.ForwardAddr().String(), Mode: "packed", Ack: true, Records: 100, Connections: 1}
	cfg.SetDefaults()
	if _, err := Run(context.Background(), cfg, &short); err != nil {
		t.Fatal(err)
	}
	if short.Len() != 0 {
		t.Errorf("a short run printed progress %q", short.String())
	}
	cfg.Records, cfg.Duration, cfg.Rate = 0, 1500*time.Millisecond, 1000
	if _, err := Run(context.Background(), cfg, &long); err != nil {
		t.Fatal(err)
	}
	if p := long.String(); !strings.HasPrefix(p, "\r") || !strings.Contains(p, "records/s") || strings.Count(p, "\n") != 1 || !strings.HasSuffix(p, "\n") {
		t.Errorf("progress %q: want one line rewritten with \\r and ended once", p)
	}
}

// The 3-node scenarios' JetStream takes a stream of three replicas, and
// stop ends all three servers.
func TestJetStream3(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	urls, stop, err := startJetStream3(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop) // a second stop does nothing
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatalf("a stream of 3 replicas: %v", err)
	}
	// Just created, the stream may still be electing its leader.
	for {
		_, err := js.Publish(ctx, "r3.x", []byte("x"))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("publish: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := len(s.CachedInfo().Cluster.Replicas); got != 2 {
		t.Errorf("the stream's leader has %d other replicas, want 2", got)
	}
	nc.Close()
	stop()
	for _, u := range urls {
		if c, err := nats.Connect(u, nats.Timeout(time.Second)); err == nil {
			c.Close()
			t.Errorf("%s still takes connections after stop", u)
		}
	}
}

// The fleet with tags of its own sends each tag from a few forwarders and
// a few tags from each, as node forwarders do; the other fleets share 20
// tags among all of them. Counted from the requests the workers prepare.
func TestFleetTags(t *testing.T) {
	for _, c := range []struct {
		name                  string
		tags, perConn, byConn int // distinct tags; tags a connection sends; connections a tag comes from
	}{
		{"fleet, 2000 conn x 20 rec/s, 2000 tags", 2000, 8, 8},
		{"fleet, 2000 conn x 20 rec/s", 20, 8, 800},
	} {
		i := slices.IndexFunc(BenchScenarios(), func(sc Scenario) bool { return sc.Name == c.name })
		if i < 0 {
			t.Fatalf("no scenario %q", c.name)
		}
		cfg := BenchScenarios()[i].Config
		cfg.Workload.setDefaults()
		conns := map[string]map[int]bool{}
		for id := range cfg.Connections {
			enc := newEncoder(&cfg, id)
			tags := map[string]bool{}
			for _, r := range (&worker{}).prepare(&cfg, enc, id) {
				tags[r.tag] = true
				if conns[r.tag] == nil {
					conns[r.tag] = map[int]bool{}
				}
				conns[r.tag][id] = true
			}
			if len(tags) != c.perConn {
				t.Fatalf("%s: connection %d sends %d tags, want %d", c.name, id, len(tags), c.perConn)
			}
		}
		if len(conns) != c.tags {
			t.Errorf("%s: %d tags, want %d", c.name, len(conns), c.tags)
		}
		for tag, ids := range conns {
			if len(ids) != c.byConn {
				t.Errorf("%s: %s comes from %d connections, want %d", c.name, tag, len(ids), c.byConn)
				break
			}
		}
	}
}
