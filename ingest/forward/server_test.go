package forward

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/internal/msgp"
	"github.com/sluicelog/sluice/internal/testcerts"
	"github.com/sluicelog/sluice/internal/units"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memPub is an in-memory Publisher: it keeps copies of the chunks it
// stores, can refuse the first publishes, and can hold every Wait.
type memPub struct {
	mu     sync.Mutex
	chunks []chunk.Chunk
	calls  int
	refuse int           // refuse this many publishes (as a full stream would)
	hold   chan struct{} // when set, Wait blocks until it is closed
}

type memPending struct {
	err  error
	hold chan struct{}
}

func (p memPending) Wait(ctx context.Context) error {
	if p.hold != nil {
		select {
		case <-p.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.err
}

func (m *memPub) Publish(c *chunk.Chunk) (chunk.Pending, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.refuse > 0 {
		m.refuse--
		return memPending{err: errors.New("maximum bytes exceeded")}, nil
	}
	cp := *c
	cp.Entries = append([]byte(nil), c.Entries...)
	m.chunks = append(m.chunks, cp)
	return memPending{hold: m.hold}, nil
}

func (m *memPub) stored() []chunk.Chunk {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]chunk.Chunk(nil), m.chunks...)
}

func (m *memPub) records() int {
	n := 0
	for _, c := range m.stored() {
		n += c.Count
	}
	return n
}

func startServer(t *testing.T, pub Publisher, edit func(*Config)) (*Server, *prometheus.Registry) {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0"}
	if edit != nil {
		edit(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := New(cfg, pub, component.Settings{Registerer: reg})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, reg
}

func dial(t *testing.T, s *Server) *forwardtest.Conn {
	t.Helper()
	c, err := forwardtest.Dial(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A sender that waits for each ack before it sends the next chunk has its
// chunks marked eager once eagerStreak of them came that way in a row, so
// that the queue sends them without waiting for others to join their batch
// message; a forwarder that sends a chunk now and then does not. The window
// is widened for the first case, so that a slow machine cannot stretch the
// gap past it, and narrowed for the second.
func TestChunksOfASenderWaitingForAcksAreEager(t *testing.T) {
	send := func(t *testing.T, c *forwardtest.Conn, i int) {
		t.Helper()
		id := fmt.Sprint("chunk-", i)
		if err := c.SendAck(forwardtest.Packed("t", entries(i, 1), forwardtest.Options{Chunk: id}), id, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	eager := func(pub *memPub) []bool {
		var out []bool
		for _, c := range pub.stored() {
			out = append(out, c.Eager)
		}
		return out
	}
	defer func(d time.Duration) { eagerAfterAck = d }(eagerAfterAck)

	eagerAfterAck = time.Minute
	pub := &memPub{}
	c := dial(t, func() *Server { s, _ := startServer(t, pub, nil); return s }())
	n := eagerStreak + 3
	for i := range n {
		send(t, c, i)
	}
	// The first chunk has no ack before it; the next eagerStreak make the
	// streak.
	want := make([]bool, n)
	for i := eagerStreak; i < n; i++ {
		want[i] = true
	}
	if got := eager(pub); !slices.Equal(got, want) {
		t.Errorf("waiting for each ack: eager %v, want %v", got, want)
	}
	// A refused eager chunk is published again as a plain one: a retry
	// waits for others like it.
	pub.mu.Lock()
	pub.refuse = 1
	pub.mu.Unlock()
	send(t, c, n)
	if st := pub.stored(); st[len(st)-1].Eager {
		t.Error("a retried chunk is still eager")
	}
	// The same sender stops waiting for acks: a chunk that comes while
	// another is unacknowledged ends the streak.
	n++
	hold := make(chan struct{})
	pub.mu.Lock()
	pub.hold = hold
	pub.mu.Unlock()
	for i := n; i < n+3; i++ {
		id := fmt.Sprint("chunk-", i)
		if _, err := c.Write(forwardtest.Packed("t", entries(i, 1), forwardtest.Options{Chunk: id})); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); len(pub.stored()) < n+3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks published, want %d", len(pub.stored()), n+3)
		}
	}
	close(hold)
	for range 3 {
		if _, err := c.ReadAck(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := eager(pub)[n:]; !slices.Equal(got, []bool{true, false, false}) {
		t.Errorf("not waiting for acks: eager %v, want [true false false] (the first still comes just after an ack)", got)
	}

	eagerAfterAck = 50 * time.Millisecond
	pub = &memPub{}
	c = dial(t, func() *Server { s, _ := startServer(t, pub, nil); return s }())
	for i := range eagerStreak + 2 {
		send(t, c, i)
		if i%2 == 1 {
			time.Sleep(200 * time.Millisecond) // longer than the window
		}
	}
	if got := eager(pub); slices.Contains(got, true) {
		t.Errorf("bursts of two chunks: eager %v, want none", got)
	}
}

func entries(from, n int) []byte {
	var p []byte
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	for i := from; i < from+n; i++ {
		p = append(p, forwardtest.Entry(t0.Add(time.Duration(i)*time.Second), map[string]any{"seq": i, "log": "hello"})...)
	}
	return p
}

// forwardMode encodes [tag, [[time, record], ...]] with n entries.
func forwardMode(tag string, n int) []byte {
	b := msgp.AppendArrayHeader(nil, 2)
	b = msgp.AppendStr(b, tag)
	b = msgp.AppendArrayHeader(b, n)
	return append(b, entries(0, n)...)
}

// waitClosed reads until the server closes the connection.
func waitClosed(t *testing.T, c *forwardtest.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

func rejected(reg *prometheus.Registry, reason string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "sluice_ingest_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func gz(p []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write(p)
	_ = w.Close()
	return b.Bytes()
}

// TestBadInputClosesOnlyThatConnection sends each kind of bad input on its
// own connection while another connection keeps sending good chunks.
func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	pub := &memPub{}
	s, reg := startServer(t, pub, func(c *Config) {
		c.MaxChunkBytes = 64 << 10
		c.MaxDecompressedBytes = 256 << 10
	})
	good := dial(t, s)
	goodSent := 0
	sendGood := func() {
		t.Helper()
		id := fmt.Sprintf("good-%d", goodSent)
		if err := good.SendAck(forwardtest.Packed("ok", entries(goodSent, 1), forwardtest.Options{Chunk: id}), id, 10*time.Second); err != nil {
			t.Fatalf("good connection: %v", err)
		}
		goodSent++
	}
	sendGood()

	str := func(s string) []byte { return msgp.AppendStr(nil, s) }
	arr := func(parts ...[]byte) []byte {
		b := msgp.AppendArrayHeader(nil, len(parts))
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	opt := func(k string, v []byte) []byte { return append(msgp.AppendStr(msgp.AppendMapHeader(nil, 1), k), v...) }
	entry := entries(0, 1)
	rec := entry[1+10:] // after the array header and the EventTime
	evTime := entry[1 : 1+10]
	bomb := gz(make([]byte, 4<<20))
	cases := []struct {
		name   string
		input  []byte
		reason string
	}{
		{"truncated value", forwardtest.Packed("t", entries(0, 3), forwardtest.Options{})[:40], ReasonTruncated},
		{"event not an array", str("hello"), ReasonType},
		{"event of one element", arr(str("t")), ReasonType},
		{"event of five elements", arr(str("t"), evTime, rec, opt("a", str("b")), str("x")), ReasonType},
		{"tag is an int", arr([]byte{0x05}, msgp.AppendBin(nil, entry)), ReasonTag},
		{"tag is bin", arr(msgp.AppendBin(nil, []byte("t")), msgp.AppendBin(nil, entry)), ReasonTag},
		{"tag is nil", arr([]byte{0xc0}, msgp.AppendBin(nil, entry)), ReasonTag},
		{"tag is empty", arr(str(""), msgp.AppendBin(nil, entry)), ReasonTag},
		{"second element is a map", arr(str("t"), rec), ReasonType},
		{"second element is nil", arr(str("t"), []byte{0xc0}), ReasonType},
		{"entry is not an array", arr(str("t"), msgp.AppendBin(nil, rec)), ReasonEntry},
		{"entry of three elements", arr(str("t"), msgp.AppendBin(nil, arr(evTime, rec, rec))), ReasonEntry},
		{"time is a string", arr(str("t"), str("now"), rec), ReasonType},
		{"time is a string in an entry", arr(str("t"), msgp.AppendBin(nil, arr(str("now"), rec))), ReasonTime},
		{"time is ext 5", arr(str("t"), msgp.AppendBin(nil, arr([]byte{0xd7, 5, 0, 0, 0, 1, 0, 0, 0, 0}, rec))), ReasonTime},
		{"record is a string", arr(str("t"), evTime, str("rec")), ReasonRecord},
		{"record is an array in forward mode", arr(str("t"), arr(arr(evTime, arr()))), ReasonRecord},
		{"option is a string", arr(str("t"), msgp.AppendBin(nil, entry), str("opt")), ReasonOption},
		{"chunk option is an int", arr(str("t"), msgp.AppendBin(nil, entry), opt("chunk", []byte{0x01})), ReasonOption},
		{"compressed option is an int", arr(str("t"), msgp.AppendBin(nil, entry), opt("compressed", []byte{0x01})), ReasonOption},
		{"unknown compressed value", arr(str("t"), msgp.AppendBin(nil, gz(entry)), opt("compressed", str("lz4"))), ReasonCompression},
		{"corrupt gzip", arr(str("t"), msgp.AppendBin(nil, []byte("not gzip at all")), opt("compressed", str("gzip"))), ReasonCompression},
		{"gzip bomb", arr(str("t"), msgp.AppendBin(nil, bomb), opt("compressed", str("gzip"))), ReasonDecompressMax},
		{"oversized packed chunk", forwardtest.Packed("t", entries(0, 5000), forwardtest.Options{}), ReasonTooLarge},
		{"oversized forward chunk", forwardMode("t", 5000), ReasonTooLarge},
		{"garbage bytes", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ReasonType},
		{"never-used byte", []byte{0xc1, 0xc1, 0xc1}, ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := pub.records()
			bad := dial(t, s)
			if _, err := bad.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			if tc.reason == ReasonTruncated {
				_ = bad.Conn.(*net.TCPConn).CloseWrite()
			}
			waitClosed(t, bad)
			deadline := time.Now().Add(10 * time.Second)
			for rejected(reg, tc.reason) < 1 {
				if time.Now().After(deadline) {
					t.Fatalf("sluice_ingest_rejected_total{reason=%q} not counted", tc.reason)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if got := pub.records(); got != before {
				t.Fatalf("bad input enqueued %d records", got-before)
			}
			sendGood()
		})
	}
	if got := pub.records(); got != goodSent {
		t.Fatalf("stored %d records, want the %d good ones", got, goodSent)
	}
}

// TestFraming sends one chunk split across many small writes and many
// chunks in one write.
func TestFraming(t *testing.T) {
	pub := &memPub{}
	s, _ := startServer(t, pub, func(c *Config) { c.ReadBufferBytes = 4 << 10 })
	c := dial(t, s)
	c.Conn.(*net.TCPConn).SetNoDelay(true)
	big := forwardtest.Packed("split", entries(0, 500), forwardtest.Options{Chunk: "big"})
	for off := 0; off < len(big); off += 7 {
		if _, err := c.Write(big[off:min(off+7, len(big))]); err != nil {
			t.Fatal(err)
		}
	}
	if id, err := c.ReadAck(10 * time.Second); err != nil || id != "big" {
		t.Fatalf("ack %q, %v", id, err)
	}
	var many []byte
	for i := 0; i < 50; i++ {
		many = append(many, forwardtest.Packed("many", entries(500+i, 1), forwardtest.Options{Chunk: fmt.Sprint(i)})...)
		many = append(many, 0xc0) // keepalive between chunks
	}
	if _, err := c.Write(many); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if id, err := c.ReadAck(10 * time.Second); err != nil || id != fmt.Sprint(i) {
			t.Fatalf("ack %d: %q, %v", i, id, err)
		}
	}
	got := pub.stored()
	if len(got) != 51 || got[0].Count != 500 || got[0].Tag != "split" || got[0].ID != "big" {
		t.Fatalf("stored %d chunks, first %+v", len(got), got[0].Count)
	}
	// Every stored entry is the one sent, in order.
	seq := 0
	for _, ch := range got {
		for off := 0; off < len(ch.Entries); seq++ {
			e, next, err := chunk.ReadEntry(ch.Entries, off)
			if err != nil {
				t.Fatal(err)
			}
			if e.Sec != time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC).Unix()+int64(seq) {
				t.Fatalf("entry %d has time %d", seq, e.Sec)
			}
			off = next
		}
	}
	if seq != 550 {
		t.Fatalf("%d entries stored, want 550", seq)
	}
}

// TestMessageModeIsBatched stores a run of Message-mode events of one tag
// without chunk ids as one chunk, and a tag change starts another.
func TestMessageModeIsBatched(t *testing.T) {
	pub := &memPub{}
	s, _ := startServer(t, pub, nil)
	c := dial(t, s)
	var b []byte
	t0 := time.Unix(1700000000, 5)
	for i := 0; i < 100; i++ {
		b = append(b, forwardtest.Message("a", t0, map[string]any{"i": i}, nil)...)
	}
	b = append(b, forwardtest.Message("b", t0, map[string]any{"i": 100}, nil)...)
	b = append(b, forwardtest.Message("b", t0, map[string]any{"i": 101}, &forwardtest.Options{Chunk: "m"})...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if id, err := c.ReadAck(10 * time.Second); err != nil || id != "m" {
		t.Fatalf("ack %q, %v", id, err)
	}
	got := pub.stored()
	total := 0
	for _, ch := range got {
		total += ch.Count
	}
	if total != 102 || got[len(got)-1].ID != "m" || got[len(got)-1].Count != 1 {
		t.Fatalf("stored %d records in %d chunks", total, len(got))
	}
	if len(got) > 10 {
		t.Errorf("102 messages stored as %d chunks: not batched", len(got))
	}
	for _, ch := range got[:len(got)-2] {
		if ch.Tag != "a" {
			t.Errorf("chunk of tag %q mixed into tag a's run", ch.Tag)
		}
	}
}

// TestRefusedChunkIsRetriedBeforeAck makes the publisher refuse a chunk
// twice; the ack comes only after it was stored, and it was stored once.
func TestRefusedChunkIsRetriedBeforeAck(t *testing.T) {
	pub := &memPub{refuse: 2}
	s, reg := startServer(t, pub, nil)
	c := dial(t, s)
	if err := c.SendAck(forwardtest.Packed("t", entries(0, 3), forwardtest.Options{Chunk: "x"}), "x", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := pub.stored(); len(got) != 1 || got[0].Count != 3 {
		t.Fatalf("stored %v", got)
	}
	if n := testutil.ToFloat64(s.m.retries); n != 2 {
		t.Errorf("retries %v, want 2", n)
	}
	_ = reg
}

// TestNoAckBeforeStored holds the publisher's confirmations: the chunk is
// handed over but no ack may come; once released, the ack comes.
func TestNoAckBeforeStored(t *testing.T) {
	pub := &memPub{hold: make(chan struct{})}
	s, _ := startServer(t, pub, nil)
	c := dial(t, s)
	if _, err := c.Write(forwardtest.Packed("t", entries(0, 1), forwardtest.Options{Chunk: "held"})); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(pub.stored()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("chunk never published")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The acker is blocked in Wait: there is nothing to read.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := c.Read(make([]byte, 16)); n != 0 {
		t.Fatal("ack sent before the chunk was stored")
	}
	close(pub.hold)
	if id, err := c.ReadAck(10 * time.Second); err != nil || id != "held" {
		t.Fatalf("ack %q, %v", id, err)
	}
}

// TestShutdownAcksWhatWasRead shuts down while a chunk awaits storage: the
// chunk is acknowledged before the connection closes.
func TestShutdownAcksWhatWasRead(t *testing.T) {
	pub := &memPub{hold: make(chan struct{})}
	cfg := Config{Listen: "127.0.0.1:0"}
	cfg.SetDefaults()
	s := New(cfg, pub, component.Settings{})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := forwardtest.Dial(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(forwardtest.Packed("t", entries(0, 1), forwardtest.Options{Chunk: "last"})); err != nil {
		t.Fatal(err)
	}
	for len(pub.stored()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	close(pub.hold)
	if id, err := c.ReadAck(10 * time.Second); err != nil || id != "last" {
		t.Fatalf("ack %q, %v", id, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := forwardtest.Dial(s.Addr().String()); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

// TestNonLogSignalIsAckedNotStored acks a metrics chunk without storing it.
func TestNonLogSignalIsAckedNotStored(t *testing.T) {
	pub := &memPub{}
	s, _ := startServer(t, pub, nil)
	c := dial(t, s)
	b := msgp.AppendArrayHeader(nil, 3)
	b = msgp.AppendStr(b, "metrics")
	b = msgp.AppendBin(b, entries(0, 2))
	b = msgp.AppendMapHeader(b, 2)
	b = msgp.AppendStr(msgp.AppendStr(b, "chunk"), "sig")
	b = append(msgp.AppendStr(b, "fluent_signal"), 0x01)
	if err := c.SendAck(b, "sig", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(pub.stored()); n != 0 {
		t.Fatalf("stored %d chunks of a metrics signal", n)
	}
	if n := testutil.ToFloat64(s.m.dropped.WithLabelValues("signal_1")); n != 2 {
		t.Fatalf("dropped %v records, want 2", n)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Listen: "nope", MaxChunkBytes: 10, MaxDecompressedBytes: 5, MaxInflightBytes: 1, MaxInflightChunks: -1,
		ReadBufferBytes: 1, WriteTimeout: -1}
	err := c.Validate()
	for _, field := range []string{"listen:", "max_chunk_bytes:", "max_decompressed_bytes:", "max_inflight_bytes:",
		"max_inflight_chunks:", "read_buffer_bytes:", "write_timeout:"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("error %v does not name %s", err, field)
		}
	}
	var d Config
	d.SetDefaults()
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if d.MaxChunkBytes != units.ByteSize(16<<20) || d.Listen != ":24224" || !*d.UDPHeartbeat {
		t.Fatalf("defaults %+v", d)
	}
}

// max_inflight_bytes_total holds every connection: with the stores held,
// three connections of one 30 KiB chunk each get two published within
// 64 KiB, and the third only once the first ones are stored.
func TestInflightBytesTotal(t *testing.T) {
	pub := &memPub{hold: make(chan struct{})}
	s, _ := startServer(t, pub, func(c *Config) { c.MaxInflightBytes = 40 << 10; c.MaxInflightBytesTotal = 64 << 10 })
	var p []byte
	for len(p) < 30<<10 {
		p = append(p, forwardtest.Entry(time.Unix(1795332892, 0), map[string]any{"log": strings.Repeat("x", 200)})...)
	}
	conns := make([]*forwardtest.Conn, 3)
	for i := range conns {
		conns[i] = dial(t, s)
		if _, err := conns[i].Write(forwardtest.Packed("t", p, forwardtest.Options{Chunk: fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	calls := func() int { pub.mu.Lock(); defer pub.mu.Unlock(); return pub.calls }
	deadline := time.Now().Add(5 * time.Second)
	for calls() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the third connection's chunk had time to get through, were it allowed
	if n := calls(); n != 2 {
		t.Fatalf("%d chunks published with 64 KiB in flight allowed over all connections, want 2", n)
	}
	close(pub.hold)
	for i, c := range conns {
		if id, err := c.ReadAck(5 * time.Second); err != nil || id != fmt.Sprint(i) {
			t.Fatalf("connection %d: ack %q, %v", i, id, err)
		}
	}
	if n := calls(); n != 3 {
		t.Fatalf("%d published, want 3", n)
	}
}

// A connection waiting for its sender's next chunk holds no read buffer:
// memory follows what the connections are sending, not how many there are.
// A connection that then sends again is read and acknowledged as before.
func TestIdleConnectionsHoldNoReadBuffer(t *testing.T) {
	ca := testcerts.NewCA(t, "sluice test CA")
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[withTLS], func(t *testing.T) {
			pub := &memPub{}
			s, _ := startServer(t, pub, func(c *Config) {
				if withTLS {
					c.TLS = tlsFiles(t, ca, nil)
				}
			})
			const n = 20
			conns := make([]*forwardtest.Conn, n)
			send := func(round int) {
				t.Helper()
				for i, c := range conns {
					id := fmt.Sprintf("%d-%d", round, i)
					// Round 1's chunks are larger than a TLS connection's
					// small waiting buffer.
					if _, err := c.Write(forwardtest.Packed("t", entries(0, 10+round*90), forwardtest.Options{Chunk: id})); err != nil {
						t.Fatal(err)
					}
					if got, err := c.ReadAck(5 * time.Second); err != nil || got != id {
						t.Fatalf("ack %q, %v; want %q", got, err, id)
					}
				}
			}
			for i := range conns {
				if withTLS {
					c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.Pool()})
					if err != nil {
						t.Fatal(err)
					}
					conns[i] = c
				} else {
					conns[i] = dial(t, s)
				}
			}
			held := func() float64 { return testutil.ToFloat64(s.m.readBufs) }
			for round := range 2 {
				send(round)
				deadline := time.Now().Add(5 * time.Second)
				for held() != 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if b := held(); b != 0 {
					t.Fatalf("round %d: %d idle connections hold %v bytes of read buffers, want 0", round, n, b)
				}
			}
			if got, want := pub.records(), n*(10+100); got != want {
				t.Fatalf("%d records stored, want %d", got, want)
			}
		})
	}
}

// gatePub is memPub whose Publish waits until open is closed, counting the
// callers waiting.
type gatePub struct {
	*memPub
	open    chan struct{}
	waiting atomic.Int32
}

func (g *gatePub) Publish(c *chunk.Chunk) (chunk.Pending, error) {
	g.waiting.Add(1)
	<-g.open
	g.waiting.Add(-1)
	return g.memPub.Publish(c)
}

// TestWakingConnectionsAreBounded: when more idle connections get bytes at
// once than there are waking slots, only that many take a read buffer; the
// others wait holding none, and go on once slots are free.
func TestWakingConnectionsAreBounded(t *testing.T) {
	pub := &gatePub{memPub: &memPub{}, open: make(chan struct{})}
	s, _ := startServer(t, pub, nil)
	var opened sync.Once
	open := func() { opened.Do(func() { close(pub.open) }) }
	t.Cleanup(open) // before the server's shutdown, also when the test fails
	slots := cap(s.waking)
	n := slots + 10
	conns := make([]*forwardtest.Conn, n)
	for i := range conns {
		conns[i] = dial(t, s)
	}
	held := func() float64 { return testutil.ToFloat64(s.m.readBufs) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %d publishes waiting, %v bytes of read buffers", what, pub.waiting.Load(), held())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("idle connections", func() bool { return held() == 0 })
	for i, c := range conns {
		if _, err := c.Write(forwardtest.Packed("t", entries(0, 10), forwardtest.Options{Chunk: fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("every slot taken", func() bool { return int(pub.waiting.Load()) == slots })
	time.Sleep(100 * time.Millisecond) // the other connections have their bytes by now
	if w, b := int(pub.waiting.Load()), held(); w != slots || b != float64(slots*int(s.cfg.ReadBufferBytes)) {
		t.Fatalf("%d connections publishing with %v bytes of read buffers, want %d with %d", w, b, slots, slots*int(s.cfg.ReadBufferBytes))
	}
	open()
	for i, c := range conns {
		if id, err := c.ReadAck(10 * time.Second); err != nil || id != fmt.Sprint(i) {
			t.Fatalf("ack %q, %v; want %d", id, err, i)
		}
	}
	if got := pub.records(); got != n*10 {
		t.Fatalf("%d records stored, want %d", got, n*10)
	}
	waitFor("idle connections", func() bool { return held() == 0 })
}

// Shedding closes the longest-open connections between chunks, and only
// after the acks of every chunk they sent: a chunk whose PubAck is still
// pending is acknowledged before the close. The others stay open.
func TestShedClosesAfterAcks(t *testing.T) {
	hold := make(chan struct{})
	pub := &memPub{}
	s, _ := startServer(t, pub, nil)
	conns := make([]*forwardtest.Conn, 3)
	for i := range conns {
		conns[i] = dial(t, s)
		id := fmt.Sprint("first-", i)
		if _, err := conns[i].Write(forwardtest.Packed("t", entries(0, 5), forwardtest.Options{Chunk: id})); err != nil {
			t.Fatal(err)
		}
		if got, err := conns[i].ReadAck(5 * time.Second); err != nil || got != id {
			t.Fatalf("ack %q, %v", got, err)
		}
	}
	// The oldest connection sends a chunk whose storing is held.
	pub.mu.Lock()
	pub.hold = hold
	pub.mu.Unlock()
	if _, err := conns[0].Write(forwardtest.Packed("t", entries(5, 5), forwardtest.Options{Chunk: "held"})); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pub.records() < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.Shed(2, "balance"); n != 2 {
		t.Fatalf("Shed(2) asked %d connections", n)
	}
	if n := s.Shed(5, "balance"); n != 1 {
		t.Fatalf("Shed(5) with one connection left unasked asked %d", n)
	}
	close(hold)
	if got, err := conns[0].ReadAck(5 * time.Second); err != nil || got != "held" {
		t.Fatalf("the held chunk's ack before the close: %q, %v", got, err)
	}
	for _, c := range conns {
		waitClosed(t, c)
	}
	if got := testutil.ToFloat64(s.m.shed.WithLabelValues("balance")); got != 3 {
		t.Errorf("sluice_ingest_connections_shed_total{reason=balance} = %v, want 3", got)
	}
	if got := pub.records(); got != 20 {
		t.Errorf("%d records stored, want 20", got)
	}
	for deadline := time.Now().Add(5 * time.Second); s.Connections() != 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.Connections(); n != 0 {
		t.Errorf("%d connections open after shedding all", n)
	}
}

// With max_connection_age, a connection is closed once that old (give or
// take 10%), after its acks; a new connection is served as usual.
func TestMaxConnectionAge(t *testing.T) {
	pub := &memPub{}
	s, _ := startServer(t, pub, func(c *Config) { c.MaxConnectionAge = time.Second })
	c := dial(t, s)
	if _, err := c.Write(forwardtest.Packed("t", entries(0, 3), forwardtest.Options{Chunk: "a"})); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadAck(5 * time.Second); err != nil || got != "a" {
		t.Fatalf("ack %q, %v", got, err)
	}
	waitClosed(t, c)
	if got := testutil.ToFloat64(s.m.shed.WithLabelValues("max_age")); got != 1 {
		t.Errorf("sluice_ingest_connections_shed_total{reason=max_age} = %v, want 1", got)
	}
	again := dial(t, s)
	if _, err := again.Write(forwardtest.Packed("t", entries(3, 3), forwardtest.Options{Chunk: "b"})); err != nil {
		t.Fatal(err)
	}
	if got, err := again.ReadAck(5 * time.Second); err != nil || got != "b" {
		t.Fatalf("a new connection: ack %q, %v", got, err)
	}
}

// A chunk whose header declares entries above the read buffer takes a
// buffer for all of them as soon as that header is read, instead of
// doubling its buffer (and copying what it read) read after read.
func TestBigChunkTakesItsBufferAtOnce(t *testing.T) {
	pub := &memPub{}
	s, _ := startServer(t, pub, nil)
	c := dial(t, s)
	msg := forwardtest.Packed("t", entries(0, 10000), forwardtest.Options{Chunk: "big"})
	first := int(s.cfg.ReadBufferBytes) + 1000 // more than a read buffer holds
	if len(msg) < 16*first {
		t.Fatalf("a chunk of %d bytes is too small for the test", len(msg))
	}
	if _, err := c.Write(msg[:first]); err != nil {
		t.Fatal(err)
	}
	held := func() float64 { return testutil.ToFloat64(s.m.readBufs) }
	deadline := time.Now().Add(10 * time.Second)
	for held() < float64(len(msg)) {
		if time.Now().After(deadline) {
			t.Fatalf("%v bytes of read buffer after the first %d bytes of a chunk of %d", held(), first, len(msg))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.Write(msg[first:]); err != nil {
		t.Fatal(err)
	}
	if id, err := c.ReadAck(10 * time.Second); err != nil || id != "big" {
		t.Fatalf("ack %q, %v", id, err)
	}
	if got := pub.records(); got != 10000 {
		t.Fatalf("%d records stored, want 10000", got)
	}
}
