package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Settled reports whether a sink's consumer has acknowledged every message
// its stream stored: nothing pending, nothing unacknowledged, and the ack
// floor at or past the stream's last sequence. The last part matters: a
// stream tells its consumers about a new message asynchronously, so just
// after a publish is acknowledged the consumer can still count zero
// pending. Which says, when not settled, what is left.
//
// Every message of the stream must match the consumer's filter, as every
// sink consumer's does.
func Settled(ctx context.Context, js jetstream.JetStream, stream, consumer string) (ok bool, which string, err error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, "", fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	last := s.CachedInfo().State.LastSeq
	c, err := s.Consumer(ctx, consumer)
	if err != nil {
		return false, "", fmt.Errorf("queue: consumer %s: %w", consumer, err)
	}
	info := c.CachedInfo()
	if info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last {
		return true, "", nil
	}
	return false, fmt.Sprintf("pending %d, ack pending %d, redelivered %d, acknowledged to %d of %d",
		info.NumPending, info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream, last), nil
}

// WaitSettled polls Settled until the consumer is settled or ctx ends, and
// then says what was left. Errors are retried, and each poll has its own
// few seconds: in a cluster that lost a node the consumer may have no
// leader for a moment, and a request then may go unanswered.
func WaitSettled(ctx context.Context, js jetstream.JetStream, stream, consumer string) error {
	var last string
	for {
		poll, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, which, err := Settled(poll, js, stream, consumer)
		cancel()
		switch {
		case ok:
			return nil
		case err == nil:
			last = which
		case ctx.Err() == nil:
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("queue: consumer %s not settled: %s", consumer, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
