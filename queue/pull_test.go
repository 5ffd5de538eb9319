package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicelog/sluice/internal/chunk"
)

// pullEnv is a queue with one consumer, its puller, and n published chunks.
func pullEnv(t *testing.T, n int, cc ConsumerConfig) (*Queue, jetstream.Consumer, *Puller) {
	t.Helper()
	q, _ := openQueue(t, func(c *Config) { c.Stream.Compression = CompressionNone })
	cons, err := q.Consumer(context.Background(), "s", cc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := q.NewPuller(cons)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for i := 0; i < n; i++ {
		if err := publishWait(t, q, &chunk.Chunk{Tag: "app", ID: fmt.Sprint("c", i), Count: 10, Entries: payload(10, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	return q, cons, p
}

func pull(t *testing.T, p *Puller, n, maxBytes int) ([]jetstream.Msg, error) {
	t.Helper()
	var got []jetstream.Msg
	k, err := p.Pull(context.Background(), n, maxBytes, func(m jetstream.Msg) { got = append(got, m) })
	if k != len(got) {
		t.Fatalf("Pull counted %d messages, handed on %d", k, len(got))
	}
	return got, err
}

// A pull ends at its count, at its bytes (the server refuses the next
// message), or when it expires with fewer; every message it hands on is the
// stream's next, with its metadata, and can be acknowledged.
func TestPullerPulls(t *testing.T) {
	q, _, p := pullEnv(t, 5, ConsumerConfig{})
	p.Expires = 300 * time.Millisecond

	got, err := pull(t, p, 2, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("pull of 2: %d messages, %v", len(got), err)
	}
	for i, m := range got {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.Sequence.Stream != uint64(i+1) || md.NumDelivered != 1 || md.Stream != q.StreamName() || md.Consumer != ConsumerName("s") {
			t.Fatalf("message %d: metadata %+v", i, md)
		}
		if m.Headers().Get(HeaderTag) != "app" || len(m.Data()) == 0 {
			t.Fatalf("message %d: tag %q, %d bytes", i, m.Headers().Get(HeaderTag), len(m.Data()))
		}
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}

	// Room in bytes for one message and a half: the server delivers one and
	// ends the pull.
	one := len(got[0].Data()) + len(got[0].Headers().Get(HeaderTag))
	got, err = pull(t, p, 10, one*3/2+200)
	if err != nil || len(got) != 1 {
		t.Fatalf("pull bounded to one message's bytes: %d messages, %v", len(got), err)
	}
	_ = got[0].Ack()

	// Two are left: a pull of ten gets them and ends when it expires.
	start := time.Now()
	got, err = pull(t, p, 10, 1<<20)
	if err != nil || len(got) != 2 {
		t.Fatalf("pull of 10 from 2 left: %d messages, %v", len(got), err)
	}
	if waited := time.Since(start); waited < p.Expires {
		t.Fatalf("pull returned after %v, before it expired (%v)", waited, p.Expires)
	}
	for _, m := range got {
		_ = m.Ack()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitSettled(ctx, q.JetStream(), q.StreamName(), ConsumerName("s")); err != nil {
		t.Fatal(err)
	}
}

// The acknowledgements of a pulled message do what their names say: a nak
// brings it back at once, in-progress keeps it past its AckWait, term (with
// a reason) ends it.
func TestPulledMessageAcks(t *testing.T) {
	q, _, p := pullEnv(t, 2, ConsumerConfig{AckWait: 500 * time.Millisecond})
	p.Expires = 300 * time.Millisecond

	got, err := pull(t, p, 2, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("%d messages, %v", len(got), err)
	}
	if err := got[0].Nak(); err != nil {
		t.Fatal(err)
	}
	// Keep the second past its AckWait.
	for i := 0; i < 4; i++ {
		time.Sleep(200 * time.Millisecond)
		if err := got[1].InProgress(); err != nil {
			t.Fatal(err)
		}
	}
	again, err := pull(t, p, 2, 0)
	if err != nil || len(again) != 1 {
		t.Fatalf("after a nak and in-progress acks: %d messages, %v; want the nak'd one only", len(again), err)
	}
	md, _ := again[0].Metadata()
	if md.Sequence.Stream != 1 || md.NumDelivered != 2 {
		t.Fatalf("redelivery: %+v", md)
	}
	// Term with a reason (Term alone is nats.Msg's): settled unless it
	// failed to end the message.
	if err := again[0].TermWithReason("poison"); err != nil {
		t.Fatal(err)
	}
	if err := got[1].DoubleAck(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitSettled(ctx, q.JetStream(), q.StreamName(), ConsumerName("s")); err != nil {
		t.Fatal(err)
	}
}

// A pull for a consumer that no longer exists is an error, not an empty
// pull.
func TestPullerConsumerGone(t *testing.T) {
	q, _, p := pullEnv(t, 0, ConsumerConfig{})
	p.Expires = 300 * time.Millisecond
	if err := q.JetStream().DeleteConsumer(context.Background(), q.StreamName(), ConsumerName("s")); err != nil {
		t.Fatal(err)
	}
	if got, err := pull(t, p, 5, 0); err == nil {
		t.Fatalf("pull from a deleted consumer: %d messages and no error", len(got))
	}
}

// Status messages end a pull with the count the server did not deliver,
// are ignored (heartbeats), or are refusals.
func TestPullStatus(t *testing.T) {
	msg := func(status, desc, pending string) *nats.Msg {
		h := nats.Header{"Status": {status}, "Description": {desc}}
		if pending != "" {
			h.Set("Nats-Pending-Messages", pending)
			h.Set("Nats-Pending-Bytes", "100")
		}
		return &nats.Msg{Header: h}
	}
	for _, tc := range []struct {
		m        *nats.Msg
		left     int
		over     bool
		err      string
		noMsgErr bool
	}{
		{m: msg("100", "Idle Heartbeat", "")},
		{m: msg("404", "No Messages", ""), noMsgErr: true},
		{m: msg("408", "Request Timeout", "7"), left: 7, over: true},
		{m: msg("408", "Request Timeout", ""), left: -1, over: true},
		{m: msg("409", "Batch Completed", "0"), left: 0, over: true},
		{m: msg("409", "Message Size Exceeds MaxBytes", "12"), left: 12, over: true},
		{m: msg("409", "Leadership Change", ""), err: "409 Leadership Change"},
		{m: msg("409", "Consumer Deleted", ""), err: "Consumer Deleted"},
		{m: msg("503", "", ""), err: "no responders"},
	} {
		status := tc.m.Header.Get("Status") + " " + tc.m.Header.Get("Description")
		left, over, err := pullStatus(tc.m, tc.m.Header.Get("Status"))
		switch {
		case tc.noMsgErr:
			if !errors.Is(err, ErrNoMessages) {
				t.Errorf("%s: err %v, want ErrNoMessages", status, err)
			}
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want one saying %q", status, err, tc.err)
			}
		case err != nil || left != tc.left || over != tc.over:
			t.Errorf("%s: left %d, over %v, err %v; want %d, %v", status, left, over, err, tc.left, tc.over)
		}
	}
}
