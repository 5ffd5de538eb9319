package sinks

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/queue"
)

// RunnerConfig bounds the batches a runner hands to its sink.
type RunnerConfig struct {
	// MaxMessages is the most queue messages (chunks) in one batch.
	MaxMessages int
	// MaxBytes is the most payload bytes in one batch.
	MaxBytes int
	// Linger is how long a batch waits for more messages once one arrived.
	Linger time.Duration
	// BufferBytes bounds the messages pulled ahead of the sink. It must hold
	// at least one message of the largest size and stay well below the NATS
	// client's pending limit (64MB).
	BufferBytes int
}

func (c *RunnerConfig) setDefaults() {
	if c.MaxMessages <= 0 {
		c.MaxMessages = 64
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 16 << 20
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.BufferBytes <= 0 {
		c.BufferBytes = 32 << 20
	}
}

type runnerMetrics struct {
	records  prometheus.Counter
	messages prometheus.Counter
	errors   prometheus.Counter
	latency  prometheus.Observer
}

// Runner feeds one sink from its durable consumer: it pulls messages, groups
// them into batches, writes each batch and acknowledges its messages only
// after the sink wrote all of it. A failed write is retried with backoff
// (keeping the messages alive with in-progress acks) until it succeeds or the
// runner stops; unacknowledged messages are redelivered by JetStream.
type Runner struct {
	name string
	sink Sink
	cons jetstream.Consumer
	cfg  RunnerConfig
	log  *slog.Logger
	m    runnerMetrics

	cc       jetstream.ConsumeContext
	msgs     chan jetstream.Msg // from the consume callback to run
	hard     context.Context    // ends waits and retries
	hardStop context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

// NewRunner returns a runner; Start starts it.
func NewRunner(name string, sink Sink, cons jetstream.Consumer, cfg RunnerConfig, set component.Settings) *Runner {
	set = set.Defaults()
	cfg.setDefaults()
	l := prometheus.Labels{"sink": name}
	m := runnerMetrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_records_total",
			Help: "Records written by the sink.", ConstLabels: l}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_messages_acked_total",
			Help: "Queue messages acknowledged after the sink wrote them.", ConstLabels: l}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_write_errors_total",
			Help: "Batch writes that failed and were retried.", ConstLabels: l}),
	}
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_write_seconds",
		Help: "Time to write one batch.", ConstLabels: l, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	m.latency = h
	set.Registerer.MustRegister(m.records, m.messages, m.errors, h)
	hard, hardStop := context.WithCancel(context.Background())
	return &Runner{name: name, sink: sink, cons: cons, cfg: cfg, log: set.Logger.With("sink", name), m: m,
		msgs: make(chan jetstream.Msg, cfg.MaxMessages), hard: hard, hardStop: hardStop, done: make(chan struct{})}
}

// Start begins pulling and writing in the background.
func (r *Runner) Start() error {
	cc, err := r.cons.Consume(r.receive,
		jetstream.PullMaxMessagesWithBytesLimit(r.cfg.MaxMessages, r.cfg.BufferBytes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if r.hard.Err() == nil {
				r.log.Warn("pulling messages", "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("sink %s: %w", r.name, err)
	}
	r.cc = cc
	go r.run()
	return nil
}

// receive is the consume callback. It blocks while run is busy, which holds
// further pulls: the pull-ahead stays bounded.
func (r *Runner) receive(m jetstream.Msg) {
	select {
	case r.msgs <- m:
	case <-r.hard.Done(): // abandoned: JetStream redelivers it
	}
}

// Shutdown stops pulling, writes and acknowledges what was pulled, and
// returns. If ctx ends first the rest is abandoned (JetStream redelivers it).
// It does not close the sink. It is safe to call more than once.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.once.Do(func() {
		if r.cc == nil {
			close(r.done)
			return
		}
		r.cc.Drain()
	})
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.hardStop()
		<-r.done
		return fmt.Errorf("sink %s: shutdown: %w", r.name, ctx.Err())
	}
}

func (r *Runner) run() {
	defer close(r.done)
	defer r.hardStop()
	closed := r.cc.Closed()
	batch := make([]jetstream.Msg, 0, r.cfg.MaxMessages)
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	for {
		select {
		case m := <-r.msgs:
			batch = append(batch[:0], m)
		case <-closed:
			// Drained: every message pulled is in r.msgs now.
			for len(r.msgs) > 0 && r.hard.Err() == nil {
				batch = batch[:0]
				for len(batch) < r.cfg.MaxMessages && len(r.msgs) > 0 {
					batch = append(batch, <-r.msgs)
				}
				r.deliver(batch)
			}
			return
		case <-r.hard.Done():
			return
		}
		size := len(batch[0].Data())
		linger.Reset(r.cfg.Linger)
	fill:
		for len(batch) < r.cfg.MaxMessages && size < r.cfg.MaxBytes {
			select {
			case m := <-r.msgs:
				batch = append(batch, m)
				size += len(m.Data())
			case <-linger.C:
				break fill
			}
		}
		if !linger.Stop() {
			select {
			case <-linger.C:
			default:
			}
		}
		r.deliver(batch)
		clear(batch)
	}
}

// deliver writes a batch and acknowledges its messages.
func (r *Runner) deliver(msgs []jetstream.Msg) {
	chunks := make([]*chunk.Chunk, 0, len(msgs))
	keep := msgs[:0:0]
	records := 0
	for _, m := range msgs {
		c, err := queue.ChunkFromMsg(m)
		if err != nil {
			// Not a chunk sluice wrote: it can never be written, so it is
			// terminated rather than redelivered forever.
			r.log.Error("dropping undecodable message", "err", err)
			_ = m.Term()
			continue
		}
		chunks = append(chunks, c)
		keep = append(keep, m)
		records += c.Count
	}
	if len(chunks) == 0 {
		return
	}
	backoff := 50 * time.Millisecond
	for {
		start := time.Now()
		err := r.sink.Write(r.hard, chunks)
		if err == nil {
			r.m.latency.Observe(time.Since(start).Seconds())
			break
		}
		r.m.errors.Inc()
		r.log.Warn("write failed; retrying", "err", err, "retry_in", backoff)
		for _, m := range keep {
			_ = m.InProgress()
		}
		select {
		case <-time.After(backoff):
		case <-r.hard.Done():
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	for _, m := range keep {
		if err := m.Ack(); err != nil {
			r.log.Warn("ack failed; the message will be redelivered", "err", err)
		}
	}
	r.m.records.Add(float64(records))
	r.m.messages.Add(float64(len(keep)))
}
