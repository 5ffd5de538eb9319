package app

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/file"
)

// testConfig is the default configuration on loopback ports chosen by the
// kernel, with the JetStream store and the file sink in dirs of the test.
func testConfig(t testing.TB, store, out string) *config.Config {
	t.Helper()
	c := &config.Config{}
	c.NATS.Embedded.StoreDir = store
	c.Forward.Listen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	c.OTLP.HTTP.Listen, c.OTLP.GRPC.Listen = "127.0.0.1:0", "127.0.0.1:0"
	off := false
	c.Enrich.Enabled = &off // never a developer's cluster; enrichment tests turn it on
	c.API.Listen = "127.0.0.1:0"
	c.Sinks = []config.SinkConfig{{Name: "file", File: &file.Config{Path: out}}}
	c.ShutdownTimeout = 20 * time.Second
	validate(t, c)
	return c
}

// validate fills the defaults and validates, as config.Load does; tests
// call it again after changing a configuration.
func validate(t testing.TB, c *config.Config) {
	t.Helper()
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// dialForward connects a Forward client to the app.
func dialForward(t testing.TB, a *App) *forwardtest.Conn {
	t.Helper()
	c, err := forwardtest.Dial(a.ForwardAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startApp(t testing.TB, cfg *config.Config, opts ...Option) *App {
	t.Helper()
	return startAppWith(t, cfg, component.Settings{}, opts...)
}

// startAppLogging is startApp with the app's logs, from level up, kept in
// the returned buffer (as JSON lines).
func startAppLogging(t testing.TB, cfg *config.Config, level slog.Level) (*App, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	return startAppWith(t, cfg, component.Settings{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))}), logs
}

func startAppWith(t testing.TB, cfg *config.Config, set component.Settings, opts ...Option) *App {
	t.Helper()
	a := New(cfg, set, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

func shutdown(t testing.TB, a *App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// waitLines polls until dir holds at least n lines and returns them.
func waitLines(t testing.TB, dir string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		lines := filetest.Written(t, dir)
		if len(lines) >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDrained waits until the sink's consumer has acknowledged everything
// stored (queue.Settled).
func waitDrained(t testing.TB, a *App, sink string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := queue.WaitSettled(ctx, a.Queue().JetStream(), a.Queue().StreamName(), queue.ConsumerName(sink)); err != nil {
		t.Fatal(err)
	}
}

func assertExactly(t testing.TB, got map[int]int, n int) {
	t.Helper()
	var missing, dup []int
	for i := 0; i < n; i++ {
		switch got[i] {
		case 0:
			missing = append(missing, i)
		case 1:
		default:
			dup = append(dup, i)
		}
	}
	if len(got) != n || len(missing) > 0 || len(dup) > 0 {
		t.Fatalf("want records 0..%d once each: %d distinct, missing %v, duplicated %v", n-1, len(got), filetest.Head(missing), filetest.Head(dup))
	}
}

func assertAll(t testing.TB, got map[int]int, n int) {
	t.Helper()
	var missing []int
	for i := 0; i < n; i++ {
		if got[i] == 0 {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("acknowledged records missing: %d of %d, e.g. %v", len(missing), n, filetest.Head(missing))
	}
}

func fluentLogger(t testing.TB, addr net.Addr) *fluent.Fluent {
	t.Helper()
	tcp := addr.(*net.TCPAddr)
	f, err := fluent.New(fluent.Config{
		FluentHost:         "127.0.0.1",
		FluentPort:         tcp.Port,
		RequestAck:         true,
		SubSecondPrecision: true,
		Timeout:            5 * time.Second,
		WriteTimeout:       5 * time.Second,
		ReadTimeout:        30 * time.Second,
		MaxRetry:           3,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestEndToEndFluentLogger sends records with a Forward client nobody here
// wrote, with acks, and expects exactly those records in the file sink.
func TestEndToEndFluentLogger(t *testing.T) {
	out := t.TempDir()
	a := startApp(t, testConfig(t, t.TempDir(), out))
	defer shutdown(t, a)

	const n = 1000
	f := fluentLogger(t, a.ForwardAddr())
	base := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		rec := map[string]any{"seq": i, "log": fmt.Sprintf("line %d", i), "stream": "stdout"}
		if err := f.PostWithTime("kube.var.log.containers.app", base.Add(time.Duration(i)*time.Millisecond+123), rec); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	f.Close()

	lines := waitLines(t, out, n)
	waitDrained(t, a, "file")
	lines = filetest.Lines(t, out)
	assertExactly(t, filetest.Seqs(t, lines), n)
	for _, l := range lines {
		i := int(l["seq"].(float64))
		if l["tag"] != "kube.var.log.containers.app" || l["log"] != fmt.Sprintf("line %d", i) || l["stream"] != "stdout" {
			t.Fatalf("record %d: %v", i, l)
		}
		want := base.Add(time.Duration(i)*time.Millisecond + 123).Format("2006-01-02T15:04:05.000000000Z07:00")
		if l["@timestamp"] != want {
			t.Fatalf("record %d: @timestamp %v, want %s", i, l["@timestamp"], want)
		}
	}
	if got := counter(t, a.Registry(), "sluice_ingest_records_total", nil); got != n {
		t.Errorf("sluice_ingest_records_total = %v, want %d", got, n)
	}
}

// counter returns the sum of a metric's series whose labels include want.
func counter(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func packedChunk(tag string, from, n int, id string) []byte {
	var payload []byte
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for i := from; i < from+n; i++ {
		payload = append(payload, forwardtest.Entry(t0.Add(time.Duration(i)), map[string]any{"seq": i, "log": strings.Repeat("x", 200)})...)
	}
	return forwardtest.Packed(tag, payload, forwardtest.Options{Chunk: id, Size: n})
}

// TestResentChunkIsStoredOnce resends a chunk with the same id, as a
// forwarder does when an ack was lost, and reuses an id for other data.
func TestResentChunkIsStoredOnce(t *testing.T) {
	out := t.TempDir()
	a := startApp(t, testConfig(t, t.TempDir(), out))
	defer shutdown(t, a)
	c := dialForward(t, a)
	defer c.Close()
	first := packedChunk("app", 0, 10, "Y2h1bmsx")
	for i := 0; i < 3; i++ {
		if err := c.SendAck(first, "Y2h1bmsx", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Same id, other records: a client bug must not lose data.
	if err := c.SendAck(packedChunk("app", 10, 5, "Y2h1bmsx"), "Y2h1bmsx", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	assertStoredOnce(t, a, out, 15, 2)
}

// assertStoredOnce waits until the file sink in out holds records 0..n-1 and
// JetStream has none left for it, and checks that each record was written
// once, from msgs stored messages.
func assertStoredOnce(t *testing.T, a *App, out string, n int, msgs uint64) {
	t.Helper()
	waitLines(t, out, n)
	waitDrained(t, a, "file")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out)), n)
	if last := lastSeq(t, a); last != msgs {
		t.Errorf("stream last sequence %d, want %d messages stored", last, msgs)
	}
}

// TestResentChunkInAnotherBatchIsWrittenOnce resends a chunk while another
// forwarder sends a new one, so that the resend is stored beside it in a
// batch message that JetStream cannot recognise as a duplicate: the sink
// still writes the chunk once (the key index) and the new chunk whole.
func TestResentChunkInAnotherBatchIsWrittenOnce(t *testing.T) {
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	cfg.NATS.Batch.Linger = 300 * time.Millisecond // both sends land in one batch
	validate(t, cfg)
	a := startApp(t, cfg)
	defer shutdown(t, a)
	c1, c2 := dialForward(t, a), dialForward(t, a)
	defer c1.Close()
	defer c2.Close()
	resent := packedChunk("app", 0, 10, "cmVzZW50")
	if err := c1.SendAck(resent, "cmVzZW50", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { errs <- c1.SendAck(resent, "cmVzZW50", 10*time.Second) }()
	go func() { errs <- c2.SendAck(packedChunk("other", 10, 5, "bmV3"), "bmV3", 10*time.Second) }()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The resend was stored: in the second message, beside the new chunk.
	assertStoredOnce(t, a, out, 15, 2)
	if n := counter(t, a.Registry(), "sluice_sink_records_filtered_total", map[string]string{"reason": "resent"}); n != 10 {
		t.Errorf("records skipped as resent: %v, want 10", n)
	}
}

// blockingSink holds every write until released; it lets a test keep records
// in the queue.
type blockingSink struct {
	sinks.Sink
	release chan struct{}
	calls   chan struct{}
}

func (b *blockingSink) Write(ctx context.Context, batch []sinks.Record) error {
	select {
	case b.calls <- struct{}{}:
	default:
	}
	select {
	case <-b.release:
		return b.Sink.Write(ctx, batch)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestAckedRecordsSurviveAbruptStop acknowledges records that the sink never
// wrote, stops everything without draining, and expects them all in the file
// sink of a new instance on the same store.
func TestAckedRecordsSurviveAbruptStop(t *testing.T) {
	store, out := t.TempDir(), t.TempDir()
	bs := &blockingSink{release: make(chan struct{}), calls: make(chan struct{}, 1)}
	first := testConfig(t, store, out)
	first.Sinks[0].AckWait = 2 * time.Second
	a := startApp(t, first, WithSinkWrapper(func(_ string, s sinks.Sink) sinks.Sink {
		bs.Sink = s
		return bs
	}))
	const n = 500
	f := fluentLogger(t, a.ForwardAddr())
	for i := 0; i < n; i++ {
		if err := f.Post("app", map[string]any{"seq": i}); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	f.Close()
	<-bs.calls // the sink holds records it was given
	a.Kill()
	if lines := filetest.Lines(t, out); len(lines) != 0 {
		t.Fatalf("the blocked sink wrote %d lines", len(lines))
	}

	// The killed instance's deliveries come back after AckWait.
	cfg := testConfig(t, store, out)
	cfg.Sinks[0].AckWait = 2 * time.Second
	b := startApp(t, cfg)
	defer shutdown(t, b)
	waitLines(t, out, n)
	waitDrained(t, b, "file")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out)), n)
}

// TestGracefulShutdownThenRestart sends records, shuts down in order and
// starts again: every record arrives once (what was written was acked).
func TestGracefulShutdownThenRestart(t *testing.T) {
	store, out := t.TempDir(), t.TempDir()
	a := startApp(t, testConfig(t, store, out))
	c := dialForward(t, a)
	const chunks, per = 20, 100
	for i := 0; i < chunks; i++ {
		id := fmt.Sprintf("c%d", i)
		if err := c.SendAck(packedChunk("app", i*per, per, id), id, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	shutdown(t, a)

	b := startApp(t, testConfig(t, store, out))
	defer shutdown(t, b)
	waitLines(t, out, chunks*per)
	waitDrained(t, b, "file")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out)), chunks*per)
}

// TestShutdownWhenTheReplicasBucketIsGone shuts down while the replicas
// bucket cannot take the replica's leave (as while a clustered JetStream
// elects a leader for it): the key would expire after the TTL, so the
// shutdown succeeds, says so in a warning, and what was acknowledged is in
// the sink.
func TestShutdownWhenTheReplicasBucketIsGone(t *testing.T) {
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	a, logs := startAppLogging(t, cfg, slog.LevelInfo)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialForward(t, a)
	if err := c.SendAck(packedChunk("app", 0, 10, "c0"), "c0", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := a.Queue().JetStream().DeleteKeyValue(ctx, cfg.Cluster.Bucket); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown failed because the replica could not leave: %v", err)
	}
	if !strings.Contains(logs.String(), "could not leave the replicas") {
		t.Errorf("no warning that the replica could not leave; logs:\n%s", logs.String())
	}
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out)), 10)
}

// TestFullStreamStopsAcking fills a small stream while the sink is held: the
// chunk that does not fit is not acknowledged (and the connection is not
// read) until the sink frees space; then everything arrives.
func TestFullStreamStopsAcking(t *testing.T) {
	store, out := t.TempDir(), t.TempDir()
	cfg := testConfig(t, store, out)
	cfg.NATS.Stream.MaxBytes = 1 << 20
	cfg.NATS.Stream.Compression = queue.CompressionNone // fill it with the bytes sent
	bs := &blockingSink{release: make(chan struct{}), calls: make(chan struct{}, 1)}
	a := startApp(t, cfg, WithSinkWrapper(func(_ string, s sinks.Sink) sinks.Sink {
		bs.Sink = s
		return bs
	}))
	defer shutdown(t, a)

	const chunks, per = 30, 400 // ~100 KB a chunk: 3 MB in all, 1 MB fits
	errc, stalled := fillStream(t, a, chunks, per)
	if stalled >= chunks {
		t.Fatalf("all %d chunks acked although the stream was full", chunks)
	}
	if lines := filetest.Lines(t, out); len(lines) != 0 {
		t.Fatalf("sink wrote %d lines while held", len(lines))
	}
	close(bs.release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitLines(t, out, chunks*per)
	waitDrained(t, a, "file")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out)), chunks*per)
	t.Logf("acks stalled after %d of %d chunks while the stream was full", stalled, chunks)
}

// TestHeartbeatAndHealth answers the UDP heartbeat and serves /healthz,
// /readyz and /metrics.
func TestHeartbeatAndHealth(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir(), t.TempDir()))
	defer shutdown(t, a)
	port := a.ForwardAddr().(*net.TCPAddr).Port
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	_ = u.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 8)
	n, err := u.Read(b)
	if err != nil || n != 1 || b[0] != 0 {
		t.Fatalf("heartbeat reply %x, %v; want 00", b[:n], err)
	}
	for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ready"`, "/metrics": "sluice_ingest_connections"} {
		body := httpGet(t, "http://"+a.APIAddr().String()+path)
		if !strings.Contains(body, want) {
			t.Errorf("%s: %q does not contain %s", path, body, want)
		}
	}
	// Once shutdown begins, readiness fails so that traffic moves away.
	a.stopping.Store(true)
	if code, body := apiCall(t, "GET", "http://"+a.APIAddr().String()+"/readyz", "", ""); code != 503 || !strings.Contains(string(body), "listeners") {
		t.Errorf("/readyz while stopping: %d %s", code, body)
	}
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&sb)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, sb.String())
	}
	return sb.String()
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// fillStream sends chunks of per records with acks, one at a time, in the
// background, into a stream too small for them while its sink is held. It
// returns once JetStream refused a chunk for lack of space, with how many
// chunks were acknowledged by then; errc reports the end of sending.
func fillStream(t *testing.T, a *App, chunks, per int) (errc chan error, stalled int) {
	t.Helper()
	var acked atomic.Int64
	errc = make(chan error, 1)
	go func() {
		c, err := forwardtest.Dial(a.ForwardAddr().String())
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		for i := 0; i < chunks; i++ {
			id := fmt.Sprintf("c%d", i)
			if err := c.SendAck(packedChunk("app", i*per, per, id), id, 60*time.Second); err != nil {
				errc <- err
				return
			}
			acked.Add(1)
		}
		errc <- nil
	}()
	deadline := time.Now().Add(30 * time.Second)
	for counter(t, a.Registry(), "sluice_ingest_publish_retries_total", nil) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stream never filled up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errc, int(acked.Load())
}
