package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// publishEach publishes the chunks at once, without waiting.
func publishEach(t *testing.T, q *Queue, cs []*chunk.Chunk) []chunk.Pending {
	t.Helper()
	var ps []chunk.Pending
	for _, c := range cs {
		p, err := q.Publish(c)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// publishAll publishes the chunks at once and waits until all are stored.
func publishAll(t *testing.T, q *Queue, cs []*chunk.Chunk) {
	t.Helper()
	ps := publishEach(t, q, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range ps {
		if err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func testChunk(tag, id string, n int) *chunk.Chunk {
	return &chunk.Chunk{Tag: tag, ID: id, Count: n, Entries: payload(n, 100)}
}

// clone is the same chunk, byte for byte, to publish again: Publish points
// a batched chunk's entries at the batch, whose room is reused once stored
// (and payload's maps come out in any order, so a new one would differ).
func clone(c *chunk.Chunk) *chunk.Chunk {
	return &chunk.Chunk{Tag: c.Tag, ID: c.ID, Count: c.Count, Entries: bytes.Clone(c.Entries)}
}

// Small chunks with chunk ids, of several tags, published within the linger
// are stored together in batch messages on the batch subject, and come back
// as they went in, each with its key; the body is compressed.
func TestBatchGathersChunks(t *testing.T) {
	q, reg := openQueue(t, func(c *Config) { c.Batch.Linger = 200 * time.Millisecond })
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	var cs []*chunk.Chunk
	want := map[string]*chunk.Chunk{}
	for i := 0; i < 30; i++ {
		c := testChunk(fmt.Sprintf("app.%d", i%3), fmt.Sprintf("chunk-%02d", i), 1+i%4)
		cs = append(cs, c)
		// A copy: Publish points a batched chunk's entries at the batch.
		want[MsgID(c.ID, c.Tag, c.Entries)] = clone(c)
	}
	// A chunk without an id and one above max_chunk_bytes are messages of
	// their own.
	lone := []*chunk.Chunk{{Tag: "app.x", Count: 2, Entries: payload(2, 100)}, testChunk("app.big", "big", 700)}
	publishAll(t, q, append(cs, lone...))

	msgs := fetchAll(t, q, "s")
	got := map[string]Part{}
	singles := 0
	for _, m := range msgs {
		parts, _, err := PartsFromMsg(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		if enc := m.Headers().Get(HeaderEncoding); enc != EncodingChunksS2 {
			singles++
			if len(parts) != 1 || parts[0].Key != "" || m.Subject() == q.BatchSubject() {
				t.Errorf("message of encoding %s on %s: %d parts, key %q", enc, m.Subject(), len(parts), parts[0].Key)
			}
			continue
		}
		if m.Subject() != q.BatchSubject() {
			t.Errorf("batch message on %s, want %s", m.Subject(), q.BatchSubject())
		}
		var keys []string
		for _, p := range parts {
			got[p.Key] = p
			keys = append(keys, p.Key)
		}
		if h := m.Headers().Get(HeaderChunkKeys); h != strings.Join(keys, " ") {
			t.Errorf("keys header %q, parts' keys %q", h, keys)
		}
	}
	if singles != 2 {
		t.Errorf("%d messages of one chunk, want 2 (no chunk id, too big)", singles)
	}
	if len(msgs)-singles >= len(cs)/2 {
		t.Errorf("%d batch messages for %d chunks published at once", len(msgs)-singles, len(cs))
	}
	if len(got) != len(want) {
		t.Fatalf("%d chunks in batch messages, want %d", len(got), len(want))
	}
	for key, c := range want {
		p := got[key]
		if p.Tag != c.Tag || p.Count != c.Count || !bytes.Equal(p.Entries, c.Entries) {
			t.Errorf("chunk %s came back as %q count %d, %d bytes", c.ID, p.Tag, p.Count, len(p.Entries))
		}
	}
	if n := testutil.ToFloat64(q.metrics.batched); n != float64(len(cs)) {
		t.Errorf("batched chunks counted %v, want %d", n, len(cs))
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// An eager chunk (its sender waits for each ack before sending more) is not
// held for the linger: with no other batch in flight it goes at once, with
// the chunks gathered before it.
func TestEagerChunkSealsItsBatch(t *testing.T) {
	q, _ := openQueue(t, nil)
	q.batcher.linger = time.Hour // were the eager chunk held, the test would time out
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	first, eager := testChunk("app", "first", 2), testChunk("app", "eager", 3)
	eager.Eager = true
	publishAll(t, q, []*chunk.Chunk{first, eager})
	msgs := fetchAll(t, q, "s")
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want one batch of both chunks", len(msgs))
	}
	if parts, _, err := PartsFromMsg(msgs[0], nil); err != nil || len(parts) != 2 {
		t.Fatalf("%d parts (%v), want 2", len(parts), err)
	}
	sealed(t, q, map[string]float64{sealEager: 1, sealLinger: 0, sealFull: 0})
}

// An eager chunk that starts a batch goes alone, in a body of its size; the
// next chunk starts a batch of its own, which waits for its linger.
func TestEagerChunkAlone(t *testing.T) {
	q, _ := openQueue(t, func(c *Config) { c.Batch.Linger = 50 * time.Millisecond })
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	eager, next := testChunk("app", "eager", 3), testChunk("app", "next", 2)
	eager.Eager = true
	publishAll(t, q, []*chunk.Chunk{eager})
	publishAll(t, q, []*chunk.Chunk{next})
	msgs := fetchAll(t, q, "s")
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for i, want := range []string{"eager", "next"} {
		if parts, _, err := PartsFromMsg(msgs[i], nil); err != nil || len(parts) != 1 || parts[0].Count != map[string]int{"eager": 3, "next": 2}[want] {
			t.Errorf("message %d: %d parts (%v), want chunk %s alone", i, len(parts), err, want)
		}
	}
	sealed(t, q, map[string]float64{sealEager: 1, sealLinger: 1, sealFull: 0})
	// With both settled, nothing is in flight: another eager chunk goes
	// without the linger (an hour now).
	q.batcher.linger = time.Hour
	last := testChunk("app", "last", 1)
	last.Eager = true
	publishAll(t, q, []*chunk.Chunk{last})
	sealed(t, q, map[string]float64{sealEager: 2})
}

// While another batch awaits its PubAck, an eager chunk's batch keeps
// gathering, and goes as soon as none is in flight: senders that wait for
// each ack still share messages.
func TestEagerChunkWaitsForTheBatchInFlight(t *testing.T) {
	q, _ := openQueue(t, nil)
	q.batcher.linger = time.Hour
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	q.batcher.mu.Lock()
	q.batcher.inFlight++ // another batch, in flight
	q.batcher.mu.Unlock()
	a, b := testChunk("app", "a", 1), testChunk("app", "b", 2)
	a.Eager, b.Eager = true, true
	ps := publishEach(t, q, []*chunk.Chunk{a, b})
	sealed(t, q, map[string]float64{sealEager: 0})
	q.batcher.landed() // the other batch settles
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range ps {
		if err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	msgs := fetchAll(t, q, "s")
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want one batch of both eager chunks", len(msgs))
	}
	sealed(t, q, map[string]float64{sealEager: 1, sealLinger: 0})
}

// sealed checks the batches sealed for each reason.
func sealed(t *testing.T, q *Queue, want map[string]float64) {
	t.Helper()
	for reason, n := range want {
		if got := testutil.ToFloat64(q.metrics.sealed.WithLabelValues(reason)); got != n {
			t.Errorf("batches sealed for %s: %v, want %v", reason, got, n)
		}
	}
}

// A batch never outgrows max_bytes: chunks beyond it start the next batch.
func TestBatchMaxBytes(t *testing.T) {
	q, _ := openQueue(t, func(c *Config) {
		c.Batch.Linger = 200 * time.Millisecond
		c.Batch.MaxBytes = 8 << 10
		c.Batch.MaxChunkBytes = 4 << 10
	})
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	var cs []*chunk.Chunk
	for i := 0; i < 20; i++ {
		cs = append(cs, testChunk("app", fmt.Sprint(i), 10)) // about 1.3 KB each
	}
	publishAll(t, q, cs)
	chunks := 0
	msgs := fetchAll(t, q, "s")
	for _, m := range msgs {
		parts, decoded, err := PartsFromMsg(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		body := m.Data()
		if decoded != nil {
			body = decoded
		}
		if len(body) > 8<<10 {
			t.Errorf("batch body of %d bytes, above max_bytes 8KiB", len(body))
		}
		chunks += len(parts)
	}
	if chunks != len(cs) || len(msgs) < 3 {
		t.Errorf("%d chunks in %d messages, want %d in at least 3", chunks, len(msgs), len(cs))
	}
}

// A lone chunk in its batch is deduplicated by JetStream (its key is the
// message id), like a message of one chunk.
func TestBatchOfOneDeduplicatedByJetStream(t *testing.T) {
	q, _ := openQueue(t, nil)
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	c := testChunk("app", "once", 3)
	for i := 0; i < 3; i++ {
		publishAll(t, q, []*chunk.Chunk{clone(c)})
	}
	if n := len(fetchAll(t, q, "s")); n != 1 {
		t.Errorf("%d messages for one chunk published three times, want 1", n)
	}
}

// batchMsgs returns the stream's batch messages by sequence.
func batchMsgs(t *testing.T, q *Queue, sink string) []jetstream.Msg {
	t.Helper()
	var out []jetstream.Msg
	for _, m := range fetchAll(t, q, sink) {
		if m.Subject() == q.BatchSubject() {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return meta(t, out[i]).Sequence.Stream < meta(t, out[j]).Sequence.Stream })
	return out
}

func meta(t *testing.T, m jetstream.Msg) *jetstream.MsgMetadata {
	t.Helper()
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// earlier asks q's index about every chunk of m.
func earlier(t *testing.T, q *Queue, m jetstream.Msg) map[string]bool {
	t.Helper()
	md := meta(t, m)
	parts, _, err := PartsFromMsg(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, p := range parts {
		dup, err := q.Seen().Earlier(context.Background(), p.Key, md.Sequence.Stream, md.Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		out[p.Key] = dup
	}
	return out
}

// A resent chunk stored in another batch message than its first copy is
// told apart: its key came first at a lower sequence. The keys outlive the
// messages: a queue opened again on the same store (a restarted replica)
// knows the keys of a message every sink wrote and the stream removed.
func TestSeenFindsResentChunk(t *testing.T) {
	store := t.TempDir()
	edit := func(c *Config) {
		c.Embedded.StoreDir = store
		c.Batch.Linger = 100 * time.Millisecond
	}
	q, _ := openQueue(t, edit)
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	a, b, c := testChunk("app", "a", 2), testChunk("app", "b", 2), testChunk("other", "c", 2)
	ka, kb, kc := MsgID(a.ID, a.Tag, a.Entries), MsgID(b.ID, b.Tag, b.Entries), MsgID(c.ID, c.Tag, c.Entries)
	publishAll(t, q, []*chunk.Chunk{clone(a), clone(b)})
	publishAll(t, q, []*chunk.Chunk{clone(a), clone(c)}) // a resent beside a new chunk
	msgs := batchMsgs(t, q, "check")
	if len(msgs) != 2 {
		t.Fatalf("%d batch messages, want 2", len(msgs))
	}
	first, second := earlier(t, q, msgs[0]), earlier(t, q, msgs[1])
	if first[ka] || first[kb] || len(first) != 2 {
		t.Errorf("first message %v, want a and b, neither resent", first)
	}
	if !second[ka] || second[kc] || len(second) != 2 {
		t.Errorf("second message %v, want a resent and c not", second)
	}

	// Every sink writes both (the consumers ack them) and they go.
	fetchAll(t, q, "s")
	q.Close()
	q2, _ := openQueue(t, edit)
	if st, err := q2.stream.Info(context.Background()); err != nil || st.State.Msgs != 0 {
		t.Fatalf("stream after every sink acked: %+v, %v; want empty", st.State, err)
	}
	publishAll(t, q2, []*chunk.Chunk{clone(b), testChunk("app", "d", 1)}) // b resent after a restart
	msgs = batchMsgs(t, q2, "after")
	if len(msgs) != 1 {
		t.Fatalf("%d batch messages after the restart, want 1", len(msgs))
	}
	if got := earlier(t, q2, msgs[0]); !got[kb] || len(got) != 2 {
		t.Errorf("after a restart: %v, want b resent", got)
	}
}

// Outside the duplicate window the same key is not a resend.
func TestSeenWindow(t *testing.T) {
	q, _ := openQueue(t, func(c *Config) { c.Stream.DuplicateWindow = time.Second })
	s := q.Seen()
	key := MsgID("a", "app", []byte{1})
	t0 := time.Now()
	// All read before any is asked about: the last is 1.8 windows after the
	// first, within the two the index keeps.
	at := []time.Time{t0, t0.Add(500 * time.Millisecond), t0.Add(1800 * time.Millisecond)}
	for i, ts := range at {
		s.addKeys(uint64(i+1), ts, key)
	}
	for i, want := range []bool{false, true, false} {
		if dup, err := s.Earlier(context.Background(), key, uint64(i+1), at[i]); err != nil || dup != want {
			t.Errorf("seq %d: resend %v (%v), want %v", i+1, dup, err, want)
		}
	}
}

// Earlier waits for the index to read up to the message asked about. If
// the index does not move in time, it answers "not a resend" (a duplicate,
// never a loss), counts it, and does not wait again until the index moves.
// A message stored before the index's window is not waited for.
func TestSeenWaitsForIndex(t *testing.T) {
	q, _ := openQueue(t, nil)
	s := q.Seen()
	s.wait = 300 * time.Millisecond
	key := MsgID("a", "app", []byte{1})
	now := time.Now()
	s.addKeys(10, now, key)
	done := make(chan bool)
	go func() {
		dup, _ := s.Earlier(context.Background(), key, 12, now)
		done <- dup
	}()
	time.Sleep(50 * time.Millisecond)
	s.addKeys(12, now, MsgID("b", "app", []byte{1}))
	if dup := <-done; !dup {
		t.Error("key of seq 10 not found once the index read seq 12")
	}
	start := time.Now()
	if dup, err := s.Earlier(context.Background(), MsgID("new", "app", []byte{1}), 99, now); dup || err != nil {
		t.Errorf("index behind: resend %v, %v; want false, nil", dup, err)
	}
	if waited := time.Since(start); waited < s.wait {
		t.Errorf("answered after %v, before the index could catch up (%v)", waited, s.wait)
	}
	if n := testutil.ToFloat64(s.timeouts); n != 1 {
		t.Errorf("timeouts counted %v, want 1", n)
	}
	if _, err := s.Earlier(context.Background(), key, 100, now); err != nil || testutil.ToFloat64(s.timeouts) != 1 {
		t.Errorf("index stalled: %v, timeouts %v; want no second wait", err, testutil.ToFloat64(s.timeouts))
	}
	s.addKeys(13, now, MsgID("c", "app", []byte{1})) // it moves: waits again
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Earlier(ctx, key, 100, now); !errors.Is(err, context.Canceled) {
		t.Errorf("ended context: %v", err)
	}
	if _, err := s.Earlier(context.Background(), key, 100, now.Add(-time.Hour)); err != nil {
		t.Errorf("message from before the window: %v", err)
	}
}

// A batch message whose body is not what sluice writes is refused with
// ErrBadBatch (the runner sends it to the dead-letter stream).
func TestDamagedBatch(t *testing.T) {
	good := appendSection(nil, "app", 1, "key", payload(1, 10))
	if parts, err := readParts(good, nil); err != nil || len(parts) != 1 || parts[0].Tag != "app" || parts[0].Key != "key" {
		t.Fatalf("good body: %v %+v", err, parts)
	}
	three := msgp.AppendArrayHeader(nil, 3)
	three = msgp.AppendStr(three, "app")
	countTooBig := appendSection(nil, "app", 1000, "key", payload(1, 10))
	for name, body := range map[string][]byte{
		"empty": nil, "not an array": []byte{0xc0}, "three fields": three,
		"torn": good[:len(good)-3], "count above the bytes": countTooBig, "trailing garbage": append(append([]byte{}, good...), 0x93),
	} {
		if _, err := readParts(body, nil); !errors.Is(err, ErrBadBatch) {
			t.Errorf("%s: %v, want ErrBadBatch", name, err)
		}
	}
}

func FuzzReadParts(f *testing.F) {
	good := appendSection(nil, "app", 1, "key", payload(1, 10))
	f.Add(good)
	f.Add(append(append([]byte{}, good...), good...))
	f.Fuzz(func(t *testing.T, body []byte) {
		parts, err := readParts(body, nil)
		if err != nil {
			if !errors.Is(err, ErrBadBatch) {
				t.Fatalf("error %v is not ErrBadBatch", err)
			}
			return
		}
		total := 0
		for _, p := range parts {
			if p.Count < 0 || p.Count > len(p.Entries) {
				t.Fatalf("count %d for %d bytes", p.Count, len(p.Entries))
			}
			total += len(p.Entries)
		}
		if total > len(body) {
			t.Fatalf("%d bytes of entries from a body of %d", total, len(body))
		}
	})
}

// When a full stream refuses a batch, each of its chunks gets its entries
// back as a copy of its own (the batch's room goes back to the pool), and
// publishing the chunk again, once there is room, stores the same bytes.
func TestRefusedBatchGivesChunksTheirBytes(t *testing.T) {
	q, _ := openQueue(t, func(c *Config) {
		c.Stream.MaxBytes = 1 << 20
		c.Batch.Linger = 5 * time.Millisecond
	})
	if _, err := q.Consumer(context.Background(), "slow", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	var refused []*chunk.Chunk
	var want [][]byte
	for i := 0; i < 1000 && refused == nil; i++ {
		cs := []*chunk.Chunk{testChunk("app", fmt.Sprintf("%d-a", i), 200), testChunk("app", fmt.Sprintf("%d-b", i), 200)}
		orig := [][]byte{bytes.Clone(cs[0].Entries), bytes.Clone(cs[1].Entries)}
		for j, p := range publishEach(t, q, cs) {
			if err := p.Wait(context.Background()); err != nil {
				refused, want = append(refused, cs[j]), append(want, orig[j])
				if m := p.(*batch).msg; m.Data != nil || m.Header != nil {
					t.Fatal("a refused batch's message still holds its body")
				}
			}
		}
	}
	if refused == nil {
		t.Fatal("1,000 batches of 50 KB (about 6 KB compressed) stored in a 1 MiB stream")
	}
	// Other batches now take the pool's buffers (and are refused too); the
	// refused chunks' bytes must not move.
	for i := 0; i < 4; i++ {
		p, err := q.Publish(testChunk("other", fmt.Sprint("x", i), 200))
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Wait(context.Background())
	}
	for i, c := range refused {
		if !bytes.Equal(c.Entries, want[i]) {
			t.Fatalf("refused chunk %s: entries changed after the refusal", c.ID)
		}
	}
	if err := q.stream.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	publishAll(t, q, refused)
	msgs := batchMsgs(t, q, "check")
	if len(msgs) != 1 {
		t.Fatalf("%d batch messages after the republish, want 1", len(msgs))
	}
	parts, _, err := PartsFromMsg(msgs[0], nil)
	if err != nil || len(parts) != len(refused) {
		t.Fatalf("%d parts (%v), want %d", len(parts), err, len(refused))
	}
	for i, p := range parts {
		if !bytes.Equal(p.Entries, want[i]) {
			t.Errorf("chunk %d stored with other bytes than it was published with", i)
		}
	}
	if n := len(q.batcher.slots); n != 0 {
		t.Errorf("%d batch slots taken after every batch was stored or refused", n)
	}
}

// Batch messages awaiting their PubAck take the max_pending slots; a chunk
// that needs a new batch while every slot is taken waits for one, and
// fails, counted, if none frees within the publish timeout. A stored batch
// gives its slot back (a refused one: TestRefusedBatchGivesChunksTheirBytes).
func TestBatchSlotsBoundBatches(t *testing.T) {
	q, reg := openQueue(t, func(c *Config) {
		c.Batch.MaxPending = 2
		c.PublishTimeout = 300 * time.Millisecond
	})
	b := q.batcher
	// Two batches awaiting PubAcks that do not come.
	b.slots <- struct{}{}
	b.slots <- struct{}{}
	if _, err := q.Publish(testChunk("app", "a", 2)); !errors.Is(err, ErrBatchesPending) {
		t.Fatalf("publish with every slot taken: %v, want ErrBatchesPending", err)
	}
	if n := testutil.ToFloat64(q.metrics.publishErrs.WithLabelValues("batches_pending")); n != 1 {
		t.Errorf("publish errors counted %v, want 1", n)
	}
	// One PubAck comes while a chunk waits: it goes on, and is stored.
	published := make(chan error, 1)
	go func() {
		p, err := q.Publish(testChunk("app", "b", 2))
		if err == nil {
			err = p.Wait(context.Background())
		}
		published <- err
	}()
	select {
	case err := <-published:
		t.Fatalf("publish returned (%v) with every slot taken", err)
	case <-time.After(100 * time.Millisecond):
	}
	<-b.slots
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	<-b.slots
	if n := len(b.slots); n != 0 {
		t.Errorf("%d slots taken after the batch was stored", n)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// Once stored, a message lets go of its body and headers (letGo): nats.go's
// timer for its PubAck, stopped, would otherwise keep them for
// publish_timeout.
func TestStoredMessagesLetGoOfTheirBody(t *testing.T) {
	q, _ := openQueue(t, nil)
	lone := &chunk.Chunk{Tag: "app", Count: 3, Entries: payload(3, 100)} // no chunk id: a message of its own
	batched := testChunk("app", "b", 3)
	ps := publishEach(t, q, []*chunk.Chunk{lone, batched})
	for _, p := range ps {
		if err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if m := ps[0].(*pending).futs[0].Msg(); m.Data != nil || m.Header != nil {
		t.Error("a stored chunk's message still holds its body")
	}
	if m := ps[1].(*batch).msg; m.Data != nil || m.Header != nil {
		t.Error("a stored batch's message still holds its body")
	}
}
