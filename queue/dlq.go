package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicelog/sluice/internal/units"
)

// Dead-letter headers. A dead-letter message body is the one entry, as
// msgpack [time, record], exactly as it was in the chunk.
const (
	HeaderSink     = "Sluice-Sink"
	HeaderError    = "Sluice-Error"
	HeaderAttempts = "Sluice-Attempts"
	HeaderSeq      = "Sluice-Seq"
	HeaderIndex    = "Sluice-Index"
)

// DeadLetterConfig configures the dead-letter stream.
type DeadLetterConfig struct {
	// MaxAge is how long dead letters are kept.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes bounds the stream; when it is full, records that would be dead
	// stay unacknowledged in the log stream (backpressure, no loss).
	MaxBytes units.ByteSize `yaml:"max_bytes"`
}

// DeadLetter is a record a sink gave up on.
type DeadLetter struct {
	Sink     string
	Tag      string
	Seq      uint64 // stream sequence of the original message
	Index    int    // index of the record in it
	Attempts int
	Err      string
	Entry    []byte // the msgpack [time, record] entry
	// StoredSeq is the dead letter's own sequence in the dead-letter stream
	// (set when read back).
	StoredSeq uint64
	Stored    time.Time
}

// DeadLetterStream returns the dead-letter stream's name.
func (q *Queue) DeadLetterStream() string { return q.cfg.Stream.Name + "_DLQ" }

// DeadLetterSubject returns the dead-letter subject of a sink:
// `<prefix>-dlq.<sink>`.
func (q *Queue) DeadLetterSubject(sink string) string {
	return q.cfg.Stream.SubjectPrefix + "-dlq." + sink
}

func (q *Queue) createDeadLetterStream(ctx context.Context) error {
	c := q.cfg.DeadLetter
	_, err := q.createStream(ctx, jetstream.StreamConfig{
		Name:        q.DeadLetterStream(),
		Description: "sluice dead letters: records sinks rejected permanently",
		Subjects:    []string{q.cfg.Stream.SubjectPrefix + "-dlq.>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      c.MaxAge,
		MaxBytes:    int64(c.MaxBytes),
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Stream.Replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: create stream %s: %w%s", q.DeadLetterStream(), err, storageHint(err))
	}
	return nil
}

// PutDeadLetters stores dead letters and returns once all are stored (or the
// first error). Storing the same dead letter twice keeps one copy (the
// message id is sink, sequence and index).
func (q *Queue) PutDeadLetters(ctx context.Context, dls []DeadLetter) error {
	futs := make([]jetstream.PubAckFuture, 0, len(dls))
	for _, d := range dls {
		errText := d.Err
		if len(errText) > 4096 {
			errText = errText[:4096]
		}
		h := nats.Header{
			HeaderSink:            []string{d.Sink},
			HeaderTag:             []string{d.Tag},
			HeaderSeq:             []string{strconv.FormatUint(d.Seq, 10)},
			HeaderIndex:           []string{strconv.Itoa(d.Index)},
			HeaderAttempts:        []string{strconv.Itoa(d.Attempts)},
			HeaderError:           []string{errText},
			jetstream.MsgIDHeader: []string{fmt.Sprintf("dlq:%s:%d:%d:%d", d.Sink, d.Seq, d.Index, d.Attempts)},
		}
		f, err := q.js.PublishMsgAsync(&nats.Msg{Subject: q.DeadLetterSubject(d.Sink), Header: h, Data: d.Entry},
			jetstream.WithExpectStream(q.DeadLetterStream()))
		if err != nil {
			return fmt.Errorf("queue: store dead letter: %w", err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
			letGo(f.Msg())
		case err := <-f.Err():
			letGo(f.Msg())
			return fmt.Errorf("queue: store dead letter: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// DeadLetters returns up to max dead letters of a sink, oldest first,
// starting at the dead-letter stream sequence from (0 for the start).
func (q *Queue) DeadLetters(ctx context.Context, sink string, from uint64, max int) ([]DeadLetter, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{q.DeadLetterSubject(sink)}}
	if from > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	}
	cons, err := q.js.OrderedConsumer(ctx, q.DeadLetterStream(), cfg)
	if err != nil {
		return nil, fmt.Errorf("queue: read dead letters: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: read dead letters: %w", err)
	}
	want := int(min(uint64(max), info.NumPending))
	var out []DeadLetter
	for len(out) < want {
		batch, err := cons.Fetch(want-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("queue: read dead letters: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			d, err := deadLetterFromMsg(m)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("queue: read dead letters: %w", err)
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

func deadLetterFromMsg(m jetstream.Msg) (DeadLetter, error) {
	h := m.Headers()
	md, err := m.Metadata()
	if err != nil {
		return DeadLetter{}, fmt.Errorf("queue: dead letter metadata: %w", err)
	}
	seq, _ := strconv.ParseUint(h.Get(HeaderSeq), 10, 64)
	idx, _ := strconv.Atoi(h.Get(HeaderIndex))
	att, _ := strconv.Atoi(h.Get(HeaderAttempts))
	return DeadLetter{
		Sink: h.Get(HeaderSink), Tag: h.Get(HeaderTag), Seq: seq, Index: idx, Attempts: att,
		Err: h.Get(HeaderError), Entry: m.Data(), StoredSeq: md.Sequence.Stream, Stored: md.Timestamp,
	}, nil
}

// DeleteDeadLetter removes a dead letter by its dead-letter stream sequence.
func (q *Queue) DeleteDeadLetter(ctx context.Context, storedSeq uint64) error {
	s, err := q.js.Stream(ctx, q.DeadLetterStream())
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := s.DeleteMsg(ctx, storedSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("queue: delete dead letter %d: %w", storedSeq, err)
	}
	return nil
}

// Rewind makes a sink's consumer deliver again from the stream sequence seq:
// every message still in the stream from there on is delivered again. With
// interest retention only messages some sink has not acknowledged are still
// there; `limits` retention keeps a replay window. It returns the sequence
// the consumer was reset to.
func (q *Queue) Rewind(ctx context.Context, sink string, seq uint64) (uint64, error) {
	if seq == 0 {
		seq = 1
	}
	resp, err := q.js.ResetConsumerToSequence(ctx, q.cfg.Stream.Name, ConsumerName(sink), seq)
	if err != nil {
		return 0, fmt.Errorf("queue: rewind sink %s to %d: %w", sink, seq, err)
	}
	return resp.ResetSeq, nil
}

// SeqAt returns the sequence of the first message stored at or after t, or
// the next sequence to be stored when there is none.
func (q *Queue) SeqAt(ctx context.Context, t time.Time) (uint64, error) {
	cons, err := q.js.OrderedConsumer(ctx, q.cfg.Stream.Name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t,
	})
	if err != nil {
		return 0, fmt.Errorf("queue: find sequence at %s: %w", t, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("queue: find sequence at %s: %w", t, err)
	}
	if info.NumPending > 0 {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err == nil {
			md, err := m.Metadata()
			if err == nil {
				return md.Sequence.Stream, nil
			}
		}
	}
	s, err := q.js.Stream(ctx, q.cfg.Stream.Name)
	if err != nil {
		return 0, fmt.Errorf("queue: %w", err)
	}
	return s.CachedInfo().State.LastSeq + 1, nil
}

// DeadLetterAt returns the dead letter stored at a dead-letter sequence.
func (q *Queue) DeadLetterAt(ctx context.Context, storedSeq uint64) (*DeadLetter, error) {
	s, err := q.js.Stream(ctx, q.DeadLetterStream())
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	m, err := s.GetMsg(ctx, storedSeq)
	if err != nil {
		return nil, fmt.Errorf("queue: dead letter %d: %w", storedSeq, err)
	}
	h := m.Header
	seq, _ := strconv.ParseUint(h.Get(HeaderSeq), 10, 64)
	idx, _ := strconv.Atoi(h.Get(HeaderIndex))
	att, _ := strconv.Atoi(h.Get(HeaderAttempts))
	return &DeadLetter{Sink: h.Get(HeaderSink), Tag: h.Get(HeaderTag), Seq: seq, Index: idx, Attempts: att,
		Err: h.Get(HeaderError), Entry: m.Data, StoredSeq: m.Sequence, Stored: m.Time}, nil
}

// DeadLetterCounts returns the number of dead letters of each sink.
func (q *Queue) DeadLetterCounts(ctx context.Context) (map[string]uint64, error) {
	s, err := q.js.Stream(ctx, q.DeadLetterStream())
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(q.cfg.Stream.SubjectPrefix+"-dlq.>"))
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	prefix := q.cfg.Stream.SubjectPrefix + "-dlq."
	out := make(map[string]uint64, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		out[strings.TrimPrefix(subj, prefix)] = n
	}
	return out, nil
}
