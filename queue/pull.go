package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Puller pulls a durable consumer's messages through one subscription that
// lives as long as the puller.
//
// nats.go's Fetch subscribes anew for every pull and unsubscribes the moment
// the server says the pull is over. A replicated consumer (nats-server 2.12
// and later, every consumer of a stream with replicas > 1) sends a message
// only once its delivery is replicated, but says "409 Batch Completed" or
// "409 Message Size Exceeds MaxBytes" at once: the word overtook the last
// messages of the pull, which then went to an inbox nobody listened to and
// came back only after the consumer's AckWait. Measured on a 3-node cluster,
// nats.go alone fetching 27 KB messages 64 at a time with a byte bound got
// 1,035 of 3,000 in 44 s (TestClusterPullGetsEveryMessage runs the puller
// on such a cluster). Here a pull that the server ends with messages still
// on their way waits for them, and any that come later still arrive on the
// same subscription.
type Puller struct {
	nc      *nats.Conn
	subject string // the consumer's next-messages API subject
	inbox   string // pull k replies to inbox.k
	pulls   uint64
	sub     *nats.Subscription
	// Expires is how long the server keeps a pull open; Pull waits a second
	// longer for its end.
	Expires time.Duration
	// Straggle is how long Pull waits, once the server ended a pull, for
	// messages it counted that have not arrived.
	Straggle time.Duration
}

// NewPuller subscribes to an inbox for the pulls of a consumer. Close ends
// the subscription.
func (q *Queue) NewPuller(cons jetstream.Consumer) (*Puller, error) {
	info := cons.CachedInfo()
	consumer := info.Name
	inbox := q.nc.NewInbox()
	sub, err := q.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return nil, fmt.Errorf("queue: pull subscription for %s: %w", consumer, err)
	}
	// What arrives is bounded by what was asked for; nothing may be
	// dropped here.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("queue: pull subscription for %s: %w", consumer, err)
	}
	return &Puller{nc: q.nc, subject: "$JS.API.CONSUMER.MSG.NEXT." + info.Stream + "." + consumer,
		inbox: inbox, sub: sub, Expires: 4500 * time.Millisecond, Straggle: time.Second}, nil
}

// Close ends the subscription; messages it still held are redelivered after
// the consumer's AckWait.
func (p *Puller) Close() error { return p.sub.Unsubscribe() }

// ErrNoMessages is returned for a pull the server answered with "404 No
// Messages" (one that asked not to wait; sluice's pulls wait).
var ErrNoMessages = errors.New("queue: no messages")

// Pull asks for at most n messages of at most maxBytes in all (0: no byte
// bound) and hands each one that arrives to admit, a late one of an earlier
// pull included, until the pull is over: n messages or maxBytes arrived, or
// the server ended the pull and every message it counted for it arrived (or
// Straggle passed), or Expires passed, or ctx ended. It returns how many
// messages arrived; an error only for a pull the server refused or ctx.
func (p *Puller) Pull(ctx context.Context, n, maxBytes int, admit func(jetstream.Msg)) (int, error) {
	req := fmt.Appendf(nil, `{"batch":%d,"expires":%d`, n, p.Expires.Nanoseconds())
	if maxBytes > 0 {
		req = fmt.Appendf(req, `,"max_bytes":%d`, maxBytes)
	}
	req = append(req, '}')
	p.pulls++
	reply := p.inbox + "." + strconv.FormatUint(p.pulls, 10)
	if err := p.nc.PublishRequest(p.subject, reply, req); err != nil {
		return 0, fmt.Errorf("queue: pull: %w", err)
	}
	wait, cancel := context.WithTimeout(ctx, p.Expires+time.Second)
	defer cancel()
	want, got, bytes := n, 0, 0
	for got < want && (maxBytes == 0 || bytes < maxBytes) {
		m, err := p.sub.NextMsgWithContext(wait)
		if err != nil {
			if ctx.Err() != nil {
				return got, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return got, nil // what is still on its way arrives with the next pull
			}
			return got, fmt.Errorf("queue: pull: %w", err)
		}
		if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
			if m.Subject != reply {
				continue // the end of an earlier pull, given up on
			}
			left, over, err := pullStatus(m, status)
			switch {
			case err != nil:
				return got, err
			case over && left < 0:
				return got, nil // over, how many the server sent unsaid
			case over:
				// The server delivered n-left; wait a little for those not
				// here yet.
				want = n - left
				var stop context.CancelFunc
				wait, stop = context.WithTimeout(wait, p.Straggle)
				defer stop() // once: the server ends a pull once
			}
			continue
		}
		admit(pulledMsg{m})
		got++
		bytes += m.Size()
	}
	return got, nil
}

// pullStatus reads a status message: over (with the messages the server
// did not deliver, -1 when it does not say) for the end of a pull, neither
// for a heartbeat, an error for a refusal.
func pullStatus(m *nats.Msg, status string) (left int, over bool, err error) {
	desc := m.Header.Get("Description")
	switch status {
	case "100": // heartbeat or flow control
		return 0, false, nil
	case "404":
		return 0, false, ErrNoMessages
	case "408", "409":
		if s := m.Header.Get("Nats-Pending-Messages"); s != "" {
			left, _ = strconv.Atoi(s)
			return left, true, nil
		}
		if status == "408" {
			return -1, true, nil
		}
	case "503":
		desc = "no responders: the consumer has no leader or does not exist"
	}
	return 0, false, fmt.Errorf("queue: pull: %s %s", status, desc)
}

// pulledMsg is a message of a Puller's pull. Its acknowledgements are
// nats.Msg's own (which also refuse a second ack).
type pulledMsg struct{ m *nats.Msg }

var _ jetstream.Msg = pulledMsg{}

func (p pulledMsg) Data() []byte                       { return p.m.Data }
func (p pulledMsg) Headers() nats.Header               { return p.m.Header }
func (p pulledMsg) Subject() string                    { return p.m.Subject }
func (p pulledMsg) Reply() string                      { return p.m.Reply }
func (p pulledMsg) Ack() error                         { return p.m.Ack() }
func (p pulledMsg) Nak() error                         { return p.m.Nak() }
func (p pulledMsg) NakWithDelay(d time.Duration) error { return p.m.NakWithDelay(d) }
func (p pulledMsg) InProgress() error                  { return p.m.InProgress() }
func (p pulledMsg) Term() error                        { return p.m.Term() }

// DoubleAck acknowledges and waits for the server to confirm.
func (p pulledMsg) DoubleAck(ctx context.Context) error { return p.m.AckSync(nats.Context(ctx)) }

// TermWithReason is Term with a reason, which nats.Msg has no option for.
func (p pulledMsg) TermWithReason(r string) error {
	if p.m.Reply == "" {
		return jetstream.ErrMsgNoReply
	}
	return p.m.Respond([]byte("+TERM " + r))
}

// Metadata parses the message's ack subject.
func (p pulledMsg) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := p.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered, NumPending: md.NumPending, Timestamp: md.Timestamp,
		Stream: md.Stream, Consumer: md.Consumer, Domain: md.Domain,
	}, nil
}
