package sinks

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicelog/sluice/internal/component"
)

// delivery is one delivery of a stream sequence, as JetStream hands it out.
type delivery struct {
	jetstream.Msg // methods the runner does not call panic
	seq, n        uint64
	acks          int
}

func (d *delivery) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: d.seq}, NumDelivered: d.n}, nil
}
func (d *delivery) Data() []byte { return []byte("chunk") }
func (d *delivery) Ack() error   { d.acks++; return nil }

type nopSink struct{}

func (nopSink) Write(context.Context, []Record) error { return nil }
func (nopSink) Close(context.Context) error           { return nil }

// A redelivery of a message in flight joins it and is acknowledged with it;
// one of a message settled lately is acknowledged at once and not written;
// one of a message never seen here is written. A first delivery is always
// written, even of a sequence settled before (a stream made anew).
func TestRedeliveries(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := NewRunner("s", nopSink{}, nil, nil, RunnerConfig{PullMessages: 8, RedeliveryWindow: 64}, component.Settings{Registerer: reg})
	outcomes := func() (j, s, w float64) {
		return testutil.ToFloat64(r.m.joined), testutil.ToFloat64(r.m.skipped), testutil.ToFloat64(r.m.rewritten)
	}
	take := func() *message {
		t.Helper()
		select {
		case m := <-r.msgs:
			r.took(m)
			return m
		default:
			t.Fatal("nothing queued")
			return nil
		}
	}
	queued := func() int { return len(r.msgs) }

	first := &delivery{seq: 5, n: 1}
	r.admit(first)
	again := &delivery{seq: 5, n: 2}
	r.admit(again)
	if queued() != 1 {
		t.Fatalf("%d messages queued after a delivery and its redelivery in flight, want 1", queued())
	}
	if j, s, w := outcomes(); j != 1 || s != 0 || w != 0 {
		t.Fatalf("joined %v skipped %v written %v, want 1 0 0", j, s, w)
	}
	m := take()
	if m.msg != first || m.seq != 5 {
		t.Fatalf("queued %+v, want the first delivery", m)
	}
	r.ack(m)
	if first.acks != 1 || again.acks != 1 {
		t.Fatalf("acks: first %d, joined %d; want 1 each", first.acks, again.acks)
	}
	if len(r.inflight) != 0 {
		t.Fatalf("%d messages still in flight", len(r.inflight))
	}

	// The ack was lost: JetStream delivers the sequence once more.
	late := &delivery{seq: 5, n: 3}
	r.admit(late)
	if queued() != 0 || late.acks != 1 {
		t.Fatalf("a redelivery of a settled message: %d queued, %d acks; want 0 queued, acked once", queued(), late.acks)
	}
	if j, s, w := outcomes(); j != 1 || s != 1 || w != 0 {
		t.Fatalf("joined %v skipped %v written %v, want 1 1 0", j, s, w)
	}

	// Never seen here (another replica had it): written.
	other := &delivery{seq: 6, n: 2}
	r.admit(other)
	if queued() != 1 {
		t.Fatal("a redelivery of a message never seen here was not queued")
	}
	if j, s, w := outcomes(); j != 1 || s != 1 || w != 1 {
		t.Fatalf("joined %v skipped %v written %v, want 1 1 1", j, s, w)
	}
	r.ack(take())

	// A first delivery of a settled sequence is written.
	r.admit(&delivery{seq: 5, n: 1})
	if queued() != 1 {
		t.Fatal("a first delivery of a sequence settled before was not written")
	}
	r.ack(take())

	// Beyond the window a settled sequence is forgotten: written again.
	for seq := uint64(7); seq < 7+64; seq++ {
		r.admit(&delivery{seq: seq, n: 1})
		r.ack(take())
	}
	r.admit(&delivery{seq: 6, n: 3})
	if queued() != 1 {
		t.Fatal("a sequence older than the window was skipped")
	}
	r.ack(take())
	r.admit(&delivery{seq: 7 + 63, n: 2})
	if queued() != 0 {
		t.Fatal("the newest settled sequence was not remembered")
	}
}

func TestSeqWindow(t *testing.T) {
	w := newSeqWindow(100) // rounded up to 128
	if w.has(0) || w.has(1) {
		t.Fatal("an empty window has sequences")
	}
	for _, s := range []uint64{3, 1, 10} {
		w.add(s)
	}
	for s := uint64(0); s <= 12; s++ {
		if want := s == 1 || s == 3 || s == 10; w.has(s) != want {
			t.Fatalf("has(%d) = %v", s, w.has(s))
		}
	}
	w.add(130) // 3 and 10 are still within 128 of it; 1 and 2 are not
	if !w.has(3) || !w.has(10) || w.has(1) || !w.has(130) || w.has(129) || w.has(131) {
		t.Fatal("sliding by less than the window")
	}
	w.add(131 + 128) // everything before slides out
	if w.has(130) || w.has(3) || !w.has(259) {
		t.Fatal("sliding past the window")
	}
	w.add(100) // older than the window: ignored
	if w.has(100) {
		t.Fatal("a sequence older than the window was added")
	}
	// A slot reused by a later sequence does not answer for the earlier.
	w.add(259 + 5)
	if w.has(259+5-128) || !w.has(259+5) {
		t.Fatal("a reused slot")
	}
}
