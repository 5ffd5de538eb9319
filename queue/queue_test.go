package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/internal/units"
)

func openQueue(t testing.TB, edit func(*Config)) (*Queue, *prometheus.Registry) {
	t.Helper()
	cfg := Config{}
	cfg.Embedded.StoreDir = t.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := Open(ctx, cfg, component.Settings{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q, reg
}

func payload(n, size int) []byte {
	var p []byte
	for i := 0; i < n; i++ {
		p = append(p, forwardtest.Entry(time.Unix(int64(1700000000+i), 0), map[string]any{"i": i, "pad": strings.Repeat("p", size)})...)
	}
	return p
}

func publishWait(t *testing.T, q *Queue, c *chunk.Chunk) error {
	t.Helper()
	p, err := q.Publish(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.Wait(ctx)
}

// fetchAll reads every message of the stream through a fresh consumer.
func fetchAll(t *testing.T, q *Queue, sink string) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	cons, err := q.Consumer(ctx, sink, ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// Through a Puller, not FetchNoWait: a no-wait fetch could end before
	// messages the server counted as delivered to it arrived, and those
	// came back only after the consumer's AckWait (seen once in CI).
	p, err := q.NewPuller(cons)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Expires = 100 * time.Millisecond
	var out []jetstream.Msg
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		n, err := p.Pull(ctx, 100, 0, func(m jetstream.Msg) {
			out = append(out, m)
			if err := m.DoubleAck(ctx); err != nil {
				t.Errorf("ack: %v", err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			continue
		}
		// Nothing delivered: done, unless the consumer has yet to see a
		// message the stream just stored.
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return out
		}
	}
	t.Fatalf("consumer %s: messages still pending after 10 s", sink)
	return nil
}

func TestSubjectEscaping(t *testing.T) {
	cases := map[string]string{
		"kube.var.log.containers.web-1_shop_nginx-0123abcd.log": "logs.kube.var.log.containers.web-1_shop_nginx-0123abcd.log",
		"app":           "logs.app",
		"a b":           "logs.a%20b",
		"a.*.>":         "logs.a.%2A.%3E",
		".lead":         "logs.%.lead",
		"trail.":        "logs.trail.%",
		"a..b":          "logs.a.%.b",
		"100%":          "logs.100%25",
		"ünï":           "logs.%C3%BCn%C3%AF",
		"path/to:x@y=z": "logs.path%2Fto%3Ax%40y%3Dz",
	}
	q, _ := openQueue(t, nil)
	var chunks []*chunk.Chunk
	for tag, want := range cases {
		got := Subject("logs", tag)
		if got != want {
			t.Errorf("Subject(%q) = %q, want %q", tag, got, want)
		}
		if back := UnescapeTag(strings.TrimPrefix(got, "logs.")); back != tag {
			t.Errorf("UnescapeTag(%q) = %q, want %q", got, back, tag)
		}
		chunks = append(chunks, &chunk.Chunk{Tag: tag, Count: 1, Entries: payload(1, 10)})
	}
	// The consumer exists first: with interest retention nothing is kept
	// for nobody. Every subject must be accepted by a real server.
	if _, err := q.Consumer(context.Background(), "check", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if err := publishWait(t, q, c); err != nil {
			t.Fatalf("tag %q: %v", c.Tag, err)
		}
	}
	msgs := fetchAll(t, q, "check")
	if len(msgs) != len(cases) {
		t.Fatalf("%d messages, want %d", len(msgs), len(cases))
	}
	for _, m := range msgs {
		c, _, err := ChunkFromMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject() != cases[c.Tag] {
			t.Errorf("tag %q stored on %q", c.Tag, m.Subject())
		}
	}
}

func TestChunkAboveMessageLimitIsSplit(t *testing.T) {
	q, _ := openQueue(t, func(c *Config) { c.Embedded.MaxPayload = 64 << 10 })
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	const n = 600
	p := payload(n, 300) // ~200 KB
	if err := publishWait(t, q, &chunk.Chunk{Tag: "big", ID: "id1", Count: n, Entries: p}); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, q, "s")
	if len(msgs) < 4 {
		t.Fatalf("%d messages for a %d-byte chunk with a 64KiB limit", len(msgs), len(p))
	}
	total, next := 0, 0
	for _, m := range msgs {
		if len(m.Data()) > q.MaxMessageBytes() {
			t.Fatalf("message of %d bytes above %d", len(m.Data()), q.MaxMessageBytes())
		}
		c, _, err := ChunkFromMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		if c.ID != "id1" || c.Tag != "big" {
			t.Fatalf("part has id %q tag %q", c.ID, c.Tag)
		}
		got := 0
		for off := 0; off < len(c.Entries); got++ {
			e, o, err := chunk.ReadEntry(c.Entries, off)
			if err != nil {
				t.Fatal(err)
			}
			if e.Sec != int64(1700000000+next) {
				t.Fatalf("entry %d out of order (time %d)", next, e.Sec)
			}
			next++
			off = o
		}
		if got != c.Count {
			t.Fatalf("part says %d entries, holds %d", c.Count, got)
		}
		total += got
	}
	if total != n {
		t.Fatalf("%d entries in all parts, want %d", total, n)
	}

	huge := payload(1, 70<<10)
	if _, err := q.Publish(&chunk.Chunk{Tag: "huge", Count: 1, Entries: huge}); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("one entry above the limit: %v, want ErrEntryTooLarge", err)
	}
}

func TestFullStreamRefuses(t *testing.T) {
	// Uncompressed, so that the stream fills with the bytes published.
	q, reg := openQueue(t, func(c *Config) { c.Stream.MaxBytes = 1 << 20; c.Stream.Compression = CompressionNone })
	if _, err := q.Consumer(context.Background(), "slow", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	// Every reason is on the page at 0 before anything failed (loadgen
	// -bench tells a clean run from a binary without the metric by it).
	if n, err := testutil.GatherAndCount(reg, "sluice_queue_publish_errors_total"); err != nil || n < 8 {
		t.Fatalf("%d publish error series before any publish (%v), want every reason at 0", n, err)
	}
	p := payload(100, 1000) // ~100 KB
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		err = publishWait(t, q, &chunk.Chunk{Tag: "t", Count: 100, Entries: p})
	}
	if err == nil {
		t.Fatal("2 MB published into a 1 MiB stream")
	}
	if got := testutil.ToFloat64(q.metrics.publishErrs.WithLabelValues("store_failed")); got < 1 {
		t.Fatalf("refusal not counted as store_failed (%v): %v", got, err)
	}
}

// A chunk without an id published again (as ingest does after a publish
// that seemed to fail) is stored once; another chunk with the same entries
// is stored too.
func TestRepublishedChunkWithoutIDStoredOnce(t *testing.T) {
	q, _ := openQueue(t, nil)
	if _, err := q.Consumer(context.Background(), "check", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	entries := payload(3, 10)
	c := &chunk.Chunk{Tag: "app", Count: 3, Entries: entries}
	for i := 0; i < 2; i++ {
		if err := publishWait(t, q, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := publishWait(t, q, &chunk.Chunk{Tag: "app", Count: 3, Entries: entries}); err != nil {
		t.Fatal(err)
	}
	if n := len(fetchAll(t, q, "check")); n != 2 {
		t.Fatalf("%d messages stored, want 2: the republished chunk once and the other chunk", n)
	}
}

func TestMsgID(t *testing.T) {
	a := MsgID("abc", "t", []byte{1, 2, 3})
	if a != MsgID("abc", "t", []byte{1, 2, 3}) {
		t.Error("same chunk, different ids")
	}
	if a == MsgID("abc", "t", []byte{1, 2, 4}) || a == MsgID("abc", "u", []byte{1, 2, 3}) {
		t.Error("reused chunk id for other data gives the same message id")
	}
	if a == MsgID("abd", "t", []byte{1, 2, 3}) {
		t.Error("another chunk id with the same data gives the same message id")
	}
	long := strings.Repeat("x", 200)
	if len(a) != 22 || len(MsgID(long, "t", []byte{1})) != 22 {
		t.Errorf("ids %q and %q: want 22 characters whatever the chunk id", a, MsgID(long, "t", []byte{1}))
	}
	if MsgID("", "t", nil) == MsgID("", "t", nil) {
		t.Error("chunks without an id must get unique message ids")
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Stream: StreamConfig{Name: "a.b", SubjectPrefix: "x>", MaxBytes: 10, Replicas: 9}}
	c.Embedded.MaxPayload = units.ByteSize(1)
	c.PublishTimeout = -1
	c.MaxPendingPublishes = -1
	c.Batch = BatchConfig{Linger: -time.Millisecond, MaxBytes: 10, MaxChunkBytes: 20}
	err := c.Validate()
	for _, f := range []string{"embedded.store_dir:", "embedded.max_payload:", "stream.name:", "stream.subject_prefix:",
		"stream.max_bytes:", "stream.replicas:", "publish_timeout:", "max_pending_publishes:",
		"batch.linger:", "batch.max_bytes:", "batch.max_chunk_bytes:"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("%v does not name %s", err, f)
		}
	}
}

// TestExternalServer points the queue at a nats-server of its own, reached
// over loopback TCP by URL, as a production cluster would be.
func TestExternalServer(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer srv.Shutdown()
	q, _ := openQueue(t, func(c *Config) {
		c.URL = srv.ClientURL()
		c.Embedded.StoreDir = "" // not used with a URL
	})
	if q.srv != nil {
		t.Fatal("an embedded server was started although a URL is set")
	}
	if _, err := q.Consumer(context.Background(), "ext", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := publishWait(t, q, &chunk.Chunk{Tag: "ext", ID: "e1", Count: 3, Entries: payload(3, 10)}); err != nil {
		t.Fatal(err)
	}
	if msgs := fetchAll(t, q, "ext"); len(msgs) != 1 {
		t.Fatalf("%d messages on the external server, want 1", len(msgs))
	}
	if err := q.Healthy(); err != nil {
		t.Fatal(err)
	}
}

// TestStoreTooSmallSaysWhatToChange asks for a stream larger than the
// JetStream store: the error says which settings to change.
func TestStoreTooSmallSaysWhatToChange(t *testing.T) {
	cfg := Config{}
	cfg.Embedded.StoreDir = t.TempDir()
	cfg.Embedded.MaxStore = 64 << 20
	cfg.SetDefaults()
	_, err := Open(context.Background(), cfg, component.Settings{})
	if err == nil || !strings.Contains(err.Error(), "nats.stream.max_bytes") {
		t.Fatalf("Open with a 64MiB store and a 10GiB stream: %v", err)
	}
}

// A JetStream API request that gets no answer is asked again, each attempt
// bounded by its own timeout, until ctx ends; an answer, even an error,
// ends the attempts.
func TestAttemptsAskAgainWithoutAnswer(t *testing.T) {
	calls := 0
	err := attempts(context.Background(), 50*time.Millisecond, func(ctx context.Context) error {
		calls++
		if calls < 3 {
			<-ctx.Done() // no answer: the request waits out its attempt
			return ctx.Err()
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("attempts: %v after %d calls, want nil after 3", err, calls)
	}

	calls = 0
	refused := errors.New("insufficient resources")
	if err := attempts(context.Background(), time.Second, func(context.Context) error { calls++; return refused }); err != refused || calls != 1 {
		t.Fatalf("attempts: %v after %d calls, want the answer after 1", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	calls = 0
	err = attempts(ctx, 50*time.Millisecond, func(ctx context.Context) error { calls++; <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil || calls < 2 {
		t.Fatalf("attempts: %v after %d calls with ctx %v, want the deadline after several", err, calls, ctx.Err())
	}
}

// Storing is true from a publish until it is stored and a quiet moment
// has passed, and false again after.
func TestStoringFollowsPublishes(t *testing.T) {
	q, _ := openQueue(t, nil)
	if q.Storing() {
		t.Fatal("storing before any publish")
	}
	stops := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); q.Storing(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("still storing 5s after the chunk was stored")
			}
		}
	}
	quiet := q.quiet
	q.quiet = time.Hour
	p, err := q.Publish(&chunk.Chunk{Tag: "t", Count: 3, Entries: payload(3, 10)})
	if err != nil {
		t.Fatal(err)
	}
	if !q.Storing() {
		t.Fatal("not storing right after a publish")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !q.Storing() {
		t.Fatal("not storing within the quiet time after a publish")
	}
	q.quiet = quiet
	stops()

	// A chunk gathered into a batch message waits for the batch's linger
	// before it is published at all.
	q.quiet = 0
	p, err = q.Publish(&chunk.Chunk{Tag: "t", ID: "c1", Count: 3, Entries: payload(3, 10)})
	if err != nil {
		t.Fatal(err)
	}
	if !q.Storing() {
		t.Fatal("not storing while a chunk is being gathered into a batch")
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	stops()
}
