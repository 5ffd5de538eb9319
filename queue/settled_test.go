package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicelog/sluice/internal/chunk"
)

func settled(t *testing.T, q *Queue, sink string) (bool, string) {
	t.Helper()
	ok, which, err := Settled(context.Background(), q.JetStream(), q.StreamName(), ConsumerName(sink))
	if err != nil {
		t.Fatal(err)
	}
	return ok, which
}

// A consumer is settled only once it has acknowledged every stored message.
// Right after each publish is acknowledged the consumer may not have heard
// of the message yet and count nothing pending; it is still not settled.
func TestSettled(t *testing.T) {
	q, _ := openQueue(t, nil)
	cons, err := q.Consumer(context.Background(), "s", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, which := settled(t, q, "s"); !ok {
		t.Fatalf("empty stream: not settled: %s", which)
	}
	const n = 200
	for i := 0; i < n; i++ {
		if err := publishWait(t, q, &chunk.Chunk{Tag: "t", Count: 1, Entries: payload(1, 10)}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := settled(t, q, "s"); ok {
			t.Fatalf("settled right after publish %d, with nothing consumed", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != n {
		t.Fatalf("fetched %d, want %d", len(msgs), n)
	}
	if ok, which := settled(t, q, "s"); ok {
		t.Fatal("settled with every message delivered and none acknowledged")
	} else if which != "pending 0, ack pending 200, redelivered 0, acknowledged to 0 of 200" {
		t.Errorf("which = %q", which)
	}
	for _, m := range msgs[:n-1] {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := settled(t, q, "s"); ok {
		t.Fatal("settled with one message unacknowledged")
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	err = WaitSettled(short, q.JetStream(), q.StreamName(), ConsumerName("s"))
	if err == nil || !strings.Contains(err.Error(), "ack pending 1,") {
		t.Fatalf("WaitSettled with one message unacknowledged: %v", err)
	}
	if err := msgs[n-1].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, which := settled(t, q, "s"); !ok {
		t.Fatalf("every message acknowledged: not settled: %s", which)
	}
	if err := WaitSettled(ctx, q.JetStream(), q.StreamName(), ConsumerName("s")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Settled(ctx, q.JetStream(), q.StreamName(), ConsumerName("none")); err == nil {
		t.Error("no error for a consumer that does not exist")
	}
}
