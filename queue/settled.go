package queue

import (
	"context"
	"fmt"

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
