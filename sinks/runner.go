package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/bufpool"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/queue"
)

// RunnerConfig is the sink framework's policy for one sink.
type RunnerConfig struct {
	// MaxRecords is the most records in one batch.
	MaxRecords int
	// MaxBytes is the most record bytes in one batch.
	MaxBytes int
	// Linger is how long a batch waits for more records once it has one.
	Linger time.Duration
	// Concurrency is the number of batches written at once.
	Concurrency int
	// MaxAttempts sends a record to the dead-letter stream after this many
	// failed attempts; 0 retries retryable failures for ever.
	MaxAttempts int
	// BackoffMin and BackoffMax bound the exponential backoff between
	// attempts; each wait is drawn at random from the upper half (jitter).
	BackoffMin time.Duration
	BackoffMax time.Duration
	// WriteTimeout bounds one Write; a write that takes longer is retried.
	WriteTimeout time.Duration
	// AckWait is the consumer's ack wait: every message fetched and not yet
	// settled gets an in-progress ack every third of it.
	AckWait time.Duration
	// PullMessages and BufferBytes bound the messages fetched ahead of the
	// batcher. BufferBytes must hold at least two of the largest messages.
	PullMessages int
	BufferBytes  int
	// RedeliveryWindow is how many of the latest stream sequences the runner
	// remembers as settled, so that a redelivery of one (its ack was lost)
	// is acknowledged again instead of written. It costs a bit per sequence.
	RedeliveryWindow int
	// Transform, when set, rewrites every record before it is batched
	// (enrichment).
	Transform Transform
	// MatchTag, when set, decides by its tag whether the sink takes a
	// chunk; Keep, when set, decides for each record after Transform. A
	// record left out is settled without being written, and counted.
	MatchTag func(tag string) bool
	Keep     func(tag string, record []byte) (bool, error)
	// Reshape, when set, rewrites every record the sink takes, after Keep
	// (the sink's own transforms); keep false drops it (settled).
	Reshape Transform
	// Scrub, when set, gives the entry stored for a dead letter in place of
	// the record as it came in (e.g. with secrets redacted): it appends a
	// [time, record] entry for e to dst.
	Scrub func(dst []byte, e chunk.Entry) []byte
	// Observe, when set, sees each batch once, just before its first
	// write (the tap); it must not block or keep the records.
	Observe func(recs []Record)
	// Seen, when set, tells a resent chunk in a batch message from its
	// first copy (queue.Seen); the resend is settled without being written.
	Seen interface {
		Earlier(ctx context.Context, key string, seq uint64, stored time.Time) (bool, error)
	}
	// GiveWay, when its Busy is set, lets ingest have the CPU first while
	// it stores a burst.
	GiveWay GiveWay
}

// GiveWay makes a sink give way to ingest while it stores a burst: while
// Busy, the first worker waits between batches, in all Ratio times as long
// as its writes took, and the other workers wait before taking their next
// batch; a wait ends as soon as ingest is no longer busy. The sink writes
// what it put off once the burst is stored. Once the oldest record of the
// sink's latest batch was stored MaxDelay ago (JetStream's clock against
// this process's), no one waits: a sink never falls further behind than
// that for ingest's sake.
type GiveWay struct {
	// Busy reports whether ingest is storing chunks.
	Busy     func() bool
	Ratio    float64
	MaxDelay time.Duration
}

// Transform rewrites a record: it appends the new msgpack record to dst and
// returns the extended slice; keep false drops the record (it counts as
// settled). It may change rec's time. It must be safe for concurrent use.
type Transform func(ctx context.Context, dst []byte, rec *Record) (out []byte, keep bool)

func (c *RunnerConfig) setDefaults() {
	if c.MaxRecords <= 0 {
		c.MaxRecords = 10000
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 8 << 20
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 100 * time.Millisecond
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(30*time.Second, c.BackoffMin)
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 2 * time.Minute
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.PullMessages <= 0 {
		c.PullMessages = 64
	}
	if c.BufferBytes <= 0 {
		c.BufferBytes = 32 << 20
	}
	if c.RedeliveryWindow <= 0 {
		c.RedeliveryWindow = DefaultRedeliveryWindow
	}
}

// DefaultRedeliveryWindow is RunnerConfig.RedeliveryWindow's default: a
// million stream sequences, 128KiB per sink.
const DefaultRedeliveryWindow = 1 << 20

// DeadLetters stores records a sink gave up on; the queue implements it.
type DeadLetters interface {
	PutDeadLetters(ctx context.Context, dls []queue.DeadLetter) error
}

type runnerMetrics struct {
	delivered  prometheus.Counter
	dead       prometheus.Counter
	retried    prometheus.Counter
	errors     *prometheus.CounterVec
	acked      prometheus.Counter
	batchSize  prometheus.Observer
	latency    prometheus.Observer
	undecoded  prometheus.Counter
	replayed   prometheus.Counter
	inProgress prometheus.Counter
	dropped    prometheus.Counter
	filtered   *prometheus.CounterVec
	delivery   prometheus.Histogram
	// redeliveries of a message this replica fetched before: joined (it was
	// still in flight), skipped (settled moments ago) or written (again).
	joined, skipped, rewritten prometheus.Counter
	gaveWay                    prometheus.Counter // seconds
}

func newRunnerMetrics(name string, r prometheus.Registerer) runnerMetrics {
	l := prometheus.Labels{"sink": name}
	records := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_records_total",
		Help: "Records by final outcome: delivered or dead (sent to the dead-letter stream).", ConstLabels: l}, []string{"outcome"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_write_errors_total",
		Help: "Failed writes by kind: retry, throttle, permanent, partial.", ConstLabels: l}, []string{"kind"})
	retried := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_records_retried_total",
		Help: "Record attempts that failed and were tried again.", ConstLabels: l})
	acked := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_messages_acked_total",
		Help: "Queue messages acknowledged once all their records were delivered or dead.", ConstLabels: l})
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_batch_records",
		Help: "Records per write.", ConstLabels: l, Buckets: prometheus.ExponentialBuckets(1, 4, 9)})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_write_seconds",
		Help: "Time of one write.", ConstLabels: l, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	undecoded := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_undecodable_messages_total",
		Help: "Queue messages that were not sluice chunks; sent whole to the dead-letter stream.", ConstLabels: l})
	replayed := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_dead_letters_replayed_total",
		Help: "Dead letters replayed to the sink.", ConstLabels: l})
	inProgress := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_in_progress_acks_total",
		Help: "In-progress acks sent to keep long-running messages from redelivery.", ConstLabels: l})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_records_dropped_total",
		Help: "Records dropped before the sink by enrichment (excluded pods) or by a transform's drop step.", ConstLabels: l})
	age := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_delivery_seconds",
		Help:        "Time from a chunk's storage in JetStream to its acknowledgement by the sink (all its records delivered, dead or filtered out).",
		ConstLabels: l, Buckets: prometheus.ExponentialBuckets(0.001, 2, 20)})
	filtered := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_records_filtered_total",
		Help: "Records the sink does not take: reason match (tag patterns), condition (false), condition_error or resent (a forwarder's resend of a chunk stored earlier, in a batch message).", ConstLabels: l}, []string{"reason"})
	redeliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_redeliveries_total",
		Help:        "Messages JetStream delivered again, by what the runner did: joined (the first delivery was still in flight here; settled with it), skipped (settled here moments ago; acknowledged again, not written) or written (neither: written again).",
		ConstLabels: l}, []string{"outcome"})
	gaveWay := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_gave_way_seconds_total",
		Help: "Time the sink's first worker waited between batches for ingest to store a burst (give_way).", ConstLabels: l})
	r.MustRegister(records, errs, retried, acked, batch, lat, undecoded, replayed, inProgress, dropped, filtered, age, redeliveries, gaveWay)
	return runnerMetrics{
		delivered: records.WithLabelValues("delivered"), dead: records.WithLabelValues("dead"),
		retried: retried, errors: errs, acked: acked, batchSize: batch, latency: lat,
		undecoded: undecoded, replayed: replayed, inProgress: inProgress, dropped: dropped, filtered: filtered,
		delivery: age,
		joined:   redeliveries.WithLabelValues("joined"), skipped: redeliveries.WithLabelValues("skipped"),
		rewritten: redeliveries.WithLabelValues("written"), gaveWay: gaveWay,
	}
}

// message is a queue message from its fetch until it is settled.
type message struct {
	msg       jetstream.Msg
	seq       uint64    // stream sequence
	size      int       // bytes it counts for in the fetch buffer
	stored    time.Time // when JetStream stored it
	remaining atomic.Int64
	arena     *[]byte // transformed records; recycled with the message
	decoded   []byte  // entries inflated from a compressed message (bufpool)
	// joined are later deliveries of the same stream sequence, acknowledged
	// with it; guarded by Runner.mu.
	joined []jetstream.Msg
}

// arenas recycle the buffers transformed records are written into.
var arenas = sync.Pool{New: func() any { b := make([]byte, 0, 512<<10); return &b }}

// Runner feeds one sink from its durable consumer. It turns messages into
// records, groups them into batches (count, bytes, linger, and the sink's own
// Limits), writes up to Concurrency batches at once, retries failed records
// with exponential backoff and jitter (and the delay a throttled sink asks
// for), sends records that fail permanently or too often to the dead-letter
// stream, and acknowledges a message once every one of its records was
// delivered or stored as a dead letter.
//
// Once per replica: the runner fetches only what its buffer has room for,
// and every message it fetched gets in-progress acks until it is settled,
// wherever it waits (buffer, batch, a write), so JetStream does not redeliver
// it meanwhile. Should it still (a lost in-progress ack), the redelivery joins
// the message in flight and is acknowledged with it; a redelivery of a
// message settled within the last RedeliveryWindow sequences (a lost ack) is
// acknowledged again without being written. Only a first delivery is never
// joined or skipped.
type Runner struct {
	name string
	sink Sink
	pull Puller
	dlq  DeadLetters
	cfg  RunnerConfig
	log  *slog.Logger
	m    runnerMetrics

	msgs      chan *message // fetched, for run; closed when fetching stops
	batches   chan []Record
	batchPool sync.Pool    // of *[]Record
	scratch   []Record     // records of one message, reused by run
	parts     []queue.Part // chunks of one message, reused by run
	spans     [][2]int     // transformed record spans, reused by run

	mu          sync.Mutex
	inflight    map[uint64]*message // by stream sequence, from fetch to settle
	settled     seqWindow           // sequences settled lately
	queuedBytes int                 // of the messages in msgs
	room        chan struct{}       // signalled when run takes from msgs

	fetching  context.Context // ends fetching (Shutdown)
	stopFetch context.CancelFunc
	started   bool

	stats struct {
		delivered, dead, retried atomic.Int64
		mu                       sync.Mutex
		lastErr                  string
		lastErrAt                time.Time
	}

	lastStored atomic.Int64 // when the oldest record of the latest batch was stored, Unix ns

	hard     context.Context // ends waits, writes and retries
	hardStop context.CancelFunc
	workers  sync.WaitGroup
	done     chan struct{}
	once     sync.Once
}

// NewRunner returns a runner; Start starts it. dlq may be nil only in tests
// where no record can die.
func NewRunner(name string, sink Sink, pull Puller, dlq DeadLetters, cfg RunnerConfig, set component.Settings) *Runner {
	set = set.Defaults()
	cfg.setDefaults()
	if l, ok := sink.(Limiter); ok {
		lim := l.Limits()
		if lim.MaxRecords > 0 {
			cfg.MaxRecords = min(cfg.MaxRecords, lim.MaxRecords)
		}
		if lim.MaxBytes > 0 {
			cfg.MaxBytes = min(cfg.MaxBytes, lim.MaxBytes)
		}
	}
	if _, ok := sink.(Gatherer); ok {
		// Records a write accepted are stored with their object whether the
		// write still waits or not: a write that timed out and was retried
		// would store them twice.
		cfg.WriteTimeout = 0
	}
	hard, hardStop := context.WithCancel(context.Background())
	fetching, stopFetch := context.WithCancel(hard)
	return &Runner{
		name: name, sink: sink, pull: pull, dlq: dlq, cfg: cfg,
		log:       set.Logger.With("sink", name),
		m:         newRunnerMetrics(name, set.Registerer),
		msgs:      make(chan *message, cfg.PullMessages),
		batches:   make(chan []Record),
		inflight:  make(map[uint64]*message),
		settled:   newSeqWindow(cfg.RedeliveryWindow),
		room:      make(chan struct{}, 1),
		fetching:  fetching,
		stopFetch: stopFetch,
		hard:      hard,
		hardStop:  hardStop,
		done:      make(chan struct{}),
	}
}

// Start begins fetching and writing in the background.
func (r *Runner) Start() error {
	r.started = true
	r.lastStored.Store(time.Now().UnixNano()) // not behind before the first batch
	for i := 0; i < r.cfg.Concurrency; i++ {
		r.workers.Add(1)
		go r.work(i)
	}
	go r.fetch()
	go r.keepAlive()
	go r.run()
	return nil
}

// fetchWait is about as long as a pull waits (queue.Puller's Expires): a
// pull that ended empty in less than half of it found no room for the next
// message, and the sink waits for room, at most this long, before it asks
// again.
const fetchWait = 5 * time.Second

// Puller pulls a consumer's messages (queue.Puller): Pull asks for at most
// n messages and maxBytes, hands each one that arrives to admit, and
// returns when the pull is over.
type Puller interface {
	Pull(ctx context.Context, n, maxBytes int, admit func(jetstream.Msg)) (int, error)
	Close() error
}

// fetch pulls messages while the buffer has room, admits each one the moment
// it arrives, and closes r.msgs when fetching stops. Nothing it asked for
// waits anywhere unseen: a pull asks for no more than the buffer holds.
func (r *Runner) fetch() {
	defer close(r.msgs)
	defer r.pull.Close()
	failures := 0
	for {
		n, bytes, ok := r.waitRoom()
		if !ok {
			return
		}
		start := time.Now()
		got, err := r.pull.Pull(r.fetching, n, bytes, r.admit)
		if r.fetching.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, queue.ErrNoMessages) {
			failures++
			r.log.Warn("pulling messages", "err", err)
			if !r.sleepUntil(r.fetching, r.backoff(failures)) {
				return
			}
			continue
		}
		failures = 0
		if got == 0 && err == nil && time.Since(start) < fetchWait/2 {
			// Ended early with nothing: the next message does not fit in
			// the room left. Wait until run frees some.
			select {
			case <-r.room:
			case <-time.After(fetchWait):
			case <-r.fetching.Done():
				return
			}
		}
	}
}

// waitRoom waits until the buffer has room for half its messages and half
// its bytes, and returns how many it has room for; false when fetching stops.
func (r *Runner) waitRoom() (n, bytes int, ok bool) {
	for {
		r.mu.Lock()
		// Only fetch sends on msgs, and it is the caller: len is exact.
		n, bytes = r.cfg.PullMessages-len(r.msgs), r.cfg.BufferBytes-r.queuedBytes
		r.mu.Unlock()
		if n >= max(1, r.cfg.PullMessages/2) && bytes >= r.cfg.BufferBytes/2 {
			return n, bytes, true
		}
		select {
		case <-r.room:
		case <-r.fetching.Done():
			return 0, 0, false
		}
	}
}

// admit takes a fetched message in: a redelivery of a message in flight here
// joins it, one settled here lately is acknowledged again, anything else is
// tracked (kept alive until settled) and queued for run.
func (r *Runner) admit(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		r.log.Error("message without metadata", "err", err)
		return
	}
	seq := md.Sequence.Stream
	r.mu.Lock()
	if md.NumDelivered > 1 {
		if first := r.inflight[seq]; first != nil {
			first.joined = append(first.joined, m)
			r.mu.Unlock()
			r.m.joined.Inc()
			return
		}
		if r.settled.has(seq) {
			r.mu.Unlock()
			r.m.skipped.Inc()
			if err := m.Ack(); err != nil {
				r.log.Warn("ack failed; the message will be redelivered", "err", err)
			}
			return
		}
		r.m.rewritten.Inc()
	}
	msg := &message{msg: m, seq: seq, size: len(m.Data()) + 512, stored: md.Timestamp}
	r.inflight[seq] = msg
	r.queuedBytes += msg.size
	r.mu.Unlock()
	// Does not block: waitRoom asked for no more than the buffer holds. Only
	// a message of a pull given up on that comes after all waits for room,
	// or for the end (then JetStream delivers it again).
	select {
	case r.msgs <- msg:
	case <-r.hard.Done():
	}
}

// took releases a message's room in the buffer once run has it.
func (r *Runner) took(m *message) {
	r.mu.Lock()
	r.queuedBytes -= m.size
	r.mu.Unlock()
	select {
	case r.room <- struct{}{}:
	default:
	}
}

// Shutdown stops fetching, delivers what was fetched, and returns. If ctx
// ends first the rest is abandoned (JetStream redelivers it). It does not
// close the sink. It is safe to call more than once.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.once.Do(func() {
		r.stopFetch()
		if !r.started {
			r.hardStop()
			close(r.done)
		}
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

// run turns messages into batches for the workers.
func (r *Runner) run() {
	defer close(r.done)
	defer r.hardStop()
	defer r.workers.Wait()
	defer close(r.batches)
	var (
		batch []Record
		size  int
	)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	lingering := false
	flush := func() bool {
		if lingering {
			linger.Stop()
			lingering = false
		}
		if len(batch) == 0 {
			return true
		}
		select {
		case r.batches <- batch:
		case <-r.hard.Done():
			return false
		}
		batch, size = r.getBatch(), 0
		return true
	}
	batch = r.getBatch()
	add := func(m *message) bool {
		r.took(m)
		for _, rec := range r.records(m) {
			if len(batch) > 0 && (len(batch) >= r.cfg.MaxRecords || size+rec.Size() > r.cfg.MaxBytes) {
				if !flush() {
					return false
				}
			}
			batch = append(batch, rec)
			size += rec.Size()
		}
		if len(batch) >= r.cfg.MaxRecords || size >= r.cfg.MaxBytes {
			return flush()
		}
		if len(batch) > 0 && !lingering {
			linger.Reset(r.cfg.Linger)
			lingering = true
		}
		return true
	}
	for {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				// Fetching stopped and everything fetched is batched.
				if flush() {
					if g, ok := r.sink.(Gatherer); ok {
						g.Flush()
					}
				}
				return
			}
			if !add(m) {
				return
			}
		case <-linger.C:
			lingering = false
			if !flush() {
				return
			}
		case <-r.hard.Done():
			return
		}
	}
}

// records decodes a message into records, each owned by the message. The
// records are in scratch space, valid until the next call.
func (r *Runner) records(msg *message) []Record {
	m := msg.msg
	parts, decoded, err := queue.PartsFromMsg(m, r.parts)
	r.parts = parts
	msg.decoded = decoded
	recs := r.scratch[:0]
	unmatched, resent := 0, 0
	index := 0 // a record's index counts over the whole message
	for _, p := range parts {
		if err != nil {
			break
		}
		unmatch := r.cfg.MatchTag != nil && !r.cfg.MatchTag(p.Tag)
		dup := false
		if !unmatch && p.Key != "" && r.cfg.Seen != nil {
			if dup, err = r.cfg.Seen.Earlier(r.hard, p.Key, msg.seq, msg.stored); err != nil {
				return nil // stopping: the message is redelivered
			}
		}
		first := index
		for off := 0; off < len(p.Entries); index++ {
			var e chunk.Entry
			if e, off, err = chunk.ReadEntry(p.Entries, off); err != nil {
				break
			}
			if !unmatch && !dup {
				recs = append(recs, Record{Tag: p.Tag, Entry: e, Seq: msg.seq, Index: index})
			}
		}
		switch {
		case unmatch:
			unmatched += index - first
		case dup:
			resent += index - first
		}
	}
	if err == nil && unmatched > 0 {
		r.m.filtered.WithLabelValues("match").Add(float64(unmatched))
	}
	if err == nil && resent > 0 {
		r.m.filtered.WithLabelValues("resent").Add(float64(resent))
	}
	if err != nil {
		// Not a chunk sluice wrote, or damaged: it can never be written, so
		// it goes whole to the dead-letter stream instead of being redelivered
		// for ever.
		r.m.undecoded.Inc()
		r.log.Error("queue message cannot be decoded; sending it to the dead-letter stream", "seq", msg.seq, "err", err)
		msg.remaining.Store(1)
		r.bury(r.hard, []Record{{Tag: m.Headers().Get(queue.HeaderTag), Entry: chunk.Entry{Raw: m.Data()}, Seq: msg.seq, owner: msg}},
			fmt.Sprintf("undecodable message: %v", err), 1)
		return nil
	}
	if r.cfg.Transform != nil && len(recs) > 0 {
		recs = r.rewrite(msg, recs, r.cfg.Transform)
	}
	if r.cfg.Keep != nil {
		recs = r.keep(recs)
	}
	if r.cfg.Reshape != nil && len(recs) > 0 {
		recs = r.rewrite(msg, recs, r.cfg.Reshape)
	}
	if len(recs) == 0 {
		r.ack(msg)
		return nil
	}
	msg.remaining.Store(int64(len(recs)))
	for i := range recs {
		recs[i].owner = msg
	}
	r.scratch = recs
	return recs
}

// rewrite rewrites the records of a message with fn into the message's
// arena and leaves out the dropped ones.
func (r *Runner) rewrite(msg *message, recs []Record, fn Transform) []Record {
	arena := msg.arena
	if arena == nil {
		arena = arenas.Get().(*[]byte)
		*arena = (*arena)[:0]
	}
	buf := *arena
	spans := r.spans[:0]
	kept := recs[:0]
	dropped := 0
	for i := range recs {
		start := len(buf)
		var keep bool
		buf, keep = fn(r.hard, buf, &recs[i])
		if !keep {
			buf = buf[:start]
			dropped++
			continue
		}
		spans = append(spans, [2]int{start, len(buf)})
		kept = append(kept, recs[i])
	}
	for i := range kept {
		kept[i].Record = buf[spans[i][0]:spans[i][1]]
	}
	*arena = buf
	msg.arena = arena
	r.spans = spans
	if dropped > 0 {
		r.m.dropped.Add(float64(dropped))
	}
	return kept
}

// keep leaves out the records the sink's condition rejects.
func (r *Runner) keep(recs []Record) []Record {
	kept := recs[:0]
	for _, rec := range recs {
		ok, err := r.cfg.Keep(rec.Tag, rec.Record)
		switch {
		case err != nil:
			r.m.filtered.WithLabelValues("condition_error").Inc()
		case !ok:
			r.m.filtered.WithLabelValues("condition").Inc()
		default:
			kept = append(kept, rec)
		}
	}
	return kept
}

// getBatch returns an empty batch slice, recycled when possible.
func (r *Runner) getBatch() []Record {
	if b, ok := r.batchPool.Get().(*[]Record); ok {
		return (*b)[:0]
	}
	// A batch fills up to MaxRecords: take that room at once rather than
	// growing (and copying) the slice on the way, up to a bound.
	return make([]Record, 0, min(r.cfg.MaxRecords, 16384))
}

// putBatch recycles a delivered batch slice.
func (r *Runner) putBatch(b []Record) {
	clear(b)
	b = b[:0]
	r.batchPool.Put(&b)
}

// keepAlive sends in-progress acks for every message fetched and not yet
// settled, every third of AckWait.
func (r *Runner) keepAlive() {
	t := time.NewTicker(r.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.done:
			return
		}
		r.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(r.inflight))
		for _, m := range r.inflight {
			msgs = append(msgs, m.msg) // JetStream keeps a sequence alive whichever delivery says so
		}
		r.mu.Unlock()
		for _, m := range msgs {
			if m.InProgress() == nil {
				r.m.inProgress.Inc()
			}
		}
	}
}

// work writes batches. Worker 0 gives way to ingest after its batches, the
// others before taking their next one (GiveWay).
func (r *Runner) work(i int) {
	defer r.workers.Done()
	g := &r.cfg.GiveWay
	giving := g.Busy != nil
	first, others := giving && i == 0, giving && i > 0
	var owed time.Duration // worker 0's wait: Ratio times its writes while ingest was busy
	for {
		if others {
			if _, ok := r.giveWay(g.MaxDelay, 5*time.Millisecond); !ok {
				return
			}
		}
		b, ok := <-r.batches
		if !ok {
			return
		}
		if giving && len(b) > 0 && b[0].owner != nil {
			r.lastStored.Store(b[0].owner.stored.UnixNano())
		}
		var start time.Time // worker 0's, giving way
		if first {
			start = time.Now()
		}
		r.deliver(b)
		r.putBatch(b)
		if !first {
			continue
		}
		if !g.Busy() {
			owed = 0
			continue
		}
		// The wait builds up to a millisecond: a timer set for less would
		// wait longer than asked.
		if owed += time.Duration(float64(time.Since(start)) * g.Ratio); owed >= time.Millisecond {
			waited, ok := r.giveWay(owed, time.Millisecond)
			if !ok {
				return
			}
			r.m.gaveWay.Add(waited.Seconds())
			owed = 0 // whatever cut the wait short, it does not carry over
		}
	}
}

// giveWay waits while ingest stores chunks, looking again every step, for
// at most d, and not once the sink's latest batch is MaxDelay old. It
// returns how long it waited, and false when the runner stops.
func (r *Runner) giveWay(d, step time.Duration) (time.Duration, bool) {
	g := &r.cfg.GiveWay
	start := time.Now()
	for {
		now := time.Now()
		left := min(d-now.Sub(start), time.Unix(0, r.lastStored.Load()).Add(g.MaxDelay).Sub(now))
		if left <= 0 || !g.Busy() {
			return now.Sub(start), true
		}
		if !r.sleep(min(left, step)) {
			return 0, false
		}
	}
}

// settle settles records: each one delivered or dead. A message is
// acknowledged when its last record is settled.
func (r *Runner) settle(recs []Record) {
	for i := range recs {
		if m := recs[i].owner; m != nil && m.remaining.Add(-1) == 0 {
			r.ack(m)
		}
	}
}

// ack acknowledges a settled message and the deliveries that joined it, and
// remembers its sequence as settled.
func (r *Runner) ack(m *message) {
	r.mu.Lock()
	delete(r.inflight, m.seq)
	r.settled.add(m.seq)
	joined := m.joined
	m.joined = nil
	r.mu.Unlock()
	for _, j := range joined {
		_ = j.Ack() // the first delivery's ack below settles the sequence
	}
	if m.arena != nil {
		if cap(*m.arena) <= 8<<20 {
			arenas.Put(m.arena)
		}
		m.arena = nil
	}
	if m.decoded != nil {
		bufpool.Put(m.decoded)
		m.decoded = nil
	}
	if err := m.msg.Ack(); err != nil {
		r.log.Warn("ack failed; the message will be redelivered", "err", err)
		return
	}
	if !m.stored.IsZero() {
		r.m.delivery.Observe(time.Since(m.stored).Seconds())
	}
	r.m.acked.Inc()
}

// deliver writes records until each is delivered or dead. It gives up only
// when the runner stops hard, leaving the rest unacknowledged.
func (r *Runner) deliver(recs []Record) {
	if r.cfg.Observe != nil {
		r.cfg.Observe(recs)
	}
	attempt := 0
	for len(recs) > 0 {
		attempt++
		r.m.batchSize.Observe(float64(len(recs)))
		start := time.Now()
		ctx, cancel := r.hard, context.CancelFunc(func() {})
		if r.cfg.WriteTimeout > 0 {
			ctx, cancel = context.WithTimeout(r.hard, r.cfg.WriteTimeout)
		}
		err := r.sink.Write(ctx, recs)
		cancel()
		r.m.latency.Observe(time.Since(start).Seconds())
		if r.hard.Err() != nil {
			return
		}
		if err == nil {
			r.m.delivered.Add(float64(len(recs)))
			r.stats.delivered.Add(int64(len(recs)))
			r.settle(recs)
			return
		}
		r.noteError(err)
		var (
			retry []Record
			dead  = map[string][]Record{}
			delay time.Duration
		)
		classify := func(rec Record, err error) {
			var th *ThrottledError
			switch {
			case IsPermanent(err):
				dead[err.Error()] = append(dead[err.Error()], rec)
			case r.cfg.MaxAttempts > 0 && attempt >= r.cfg.MaxAttempts:
				dead[fmt.Sprintf("gave up after %d attempts: %v", attempt, err)] = append(dead[fmt.Sprintf("gave up after %d attempts: %v", attempt, err)], rec)
			default:
				if errors.As(err, &th) {
					delay = max(delay, th.Delay)
				}
				retry = append(retry, rec)
			}
		}
		var pe *PartialError
		if errors.As(err, &pe) {
			r.m.errors.WithLabelValues("partial").Inc()
			delivered := recs[:0:0]
			for i, rec := range recs {
				if e, failed := pe.Failed[i]; failed && e != nil {
					classify(rec, e)
				} else {
					delivered = append(delivered, rec)
				}
			}
			r.m.delivered.Add(float64(len(delivered)))
			r.stats.delivered.Add(int64(len(delivered)))
			r.settle(delivered)
		} else {
			r.m.errors.WithLabelValues(errKind(err)).Inc()
			for _, rec := range recs {
				classify(rec, err)
			}
		}
		for reason, d := range dead {
			if !r.bury(r.hard, d, reason, attempt) {
				return
			}
		}
		if len(retry) == 0 {
			return
		}
		r.m.retried.Add(float64(len(retry)))
		r.stats.retried.Add(int64(len(retry)))
		wait := max(r.backoff(attempt), delay)
		r.log.Warn("write failed; retrying", "records", len(retry), "attempt", attempt, "retry_in", wait, "err", err)
		if !r.sleep(wait) {
			return
		}
		recs = retry
	}
}

func errKind(err error) string {
	var th *ThrottledError
	switch {
	case IsPermanent(err):
		return "permanent"
	case errors.As(err, &th):
		return "throttle"
	}
	return "retry"
}

// backoff is the wait after the given failed attempt: exponential from
// BackoffMin to BackoffMax, drawn at random from its upper half.
func (r *Runner) backoff(attempt int) time.Duration {
	return Backoff(r.cfg.BackoffMin, r.cfg.BackoffMax, attempt)
}

// Backoff is the wait after the given failed attempt (from 1): exponential
// from min to max, drawn at random from its upper half (jitter). Sinks that
// must retry in place (an S3 object under its key) use it too.
func Backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo << (attempt - 1)
	if attempt > 31 || d <= 0 || d > hi {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}

func (r *Runner) sleep(d time.Duration) bool { return r.sleepUntil(r.hard, d) }

// sleepUntil waits d; false when ctx ends first.
func (r *Runner) sleepUntil(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// bury stores records as dead letters, retrying while the dead-letter stream
// refuses them, and settles them. It returns false when the runner stops
// hard first (the records stay unacknowledged and come back).
func (r *Runner) bury(ctx context.Context, recs []Record, reason string, attempts int) bool {
	if r.dlq == nil {
		r.log.Error("records failed permanently and there is no dead-letter stream; they stay unacknowledged", "records", len(recs), "err", reason)
		return false
	}
	dls := make([]queue.DeadLetter, len(recs))
	for i, rec := range recs {
		entry := rec.Raw
		if r.cfg.Scrub != nil {
			if e, _, err := chunk.ReadEntry(rec.Raw, 0); err == nil {
				entry = r.cfg.Scrub(nil, e)
			}
		}
		dls[i] = queue.DeadLetter{Sink: r.name, Tag: rec.Tag, Seq: rec.Seq, Index: rec.Index,
			Attempts: attempts, Err: reason, Entry: entry}
	}
	for attempt := 1; ; attempt++ {
		err := r.dlq.PutDeadLetters(ctx, dls)
		if err == nil {
			break
		}
		r.log.Error("storing dead letters failed; retrying", "records", len(recs), "err", err)
		if !r.sleep(r.backoff(attempt)) {
			return false
		}
	}
	r.log.Warn("records sent to the dead-letter stream", "records", len(recs), "attempts", attempts, "err", reason)
	r.m.dead.Add(float64(len(recs)))
	r.stats.dead.Add(int64(len(recs)))
	r.settle(recs)
	return true
}

func (r *Runner) noteError(err error) {
	r.stats.mu.Lock()
	r.stats.lastErr, r.stats.lastErrAt = err.Error(), time.Now()
	r.stats.mu.Unlock()
}

// Stats are a runner's counts since it started and its last write error.
type Stats struct {
	Delivered, Dead, Retried int64
	LastError                string
	LastErrorAt              time.Time
}

// Stats returns the runner's counts and last error.
func (r *Runner) Stats() Stats {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return Stats{Delivered: r.stats.delivered.Load(), Dead: r.stats.dead.Load(), Retried: r.stats.retried.Load(),
		LastError: r.stats.lastErr, LastErrorAt: r.stats.lastErrAt}
}

// Name is the sink's name.
func (r *Runner) Name() string { return r.name }

// DeadLetterStore is the dead-letter stream; the queue implements it.
type DeadLetterStore interface {
	DeadLetters
	DeadLetters(ctx context.Context, sink string, from uint64, max int) ([]queue.DeadLetter, error)
	DeleteDeadLetter(ctx context.Context, storedSeq uint64) error
}

// ReplayDeadLetters writes up to max of the sink's dead letters to the sink
// again, oldest first, with the usual retries; a record that fails
// permanently again becomes a new dead letter. Each replayed dead letter is
// deleted once its record is settled. It returns how many were replayed.
// Dead letters that hold no record (a whole undecodable message) are left.
func (r *Runner) ReplayDeadLetters(ctx context.Context, store DeadLetterStore, max int) (int, error) {
	dls, err := store.DeadLetters(ctx, r.name, 0, max)
	if err != nil {
		return 0, err
	}
	replayed := 0
	for start := 0; start < len(dls); start += r.cfg.MaxRecords {
		part := dls[start:min(start+r.cfg.MaxRecords, len(dls))]
		recs := make([]Record, 0, len(part))
		stored := make([]uint64, 0, len(part))
		for _, d := range part {
			e, _, err := chunk.ReadEntry(d.Entry, 0)
			if err != nil {
				continue
			}
			rec := Record{Tag: d.Tag, Entry: e, Seq: d.Seq, Index: d.Index}
			stored = append(stored, d.StoredSeq)
			keep := true
			for _, fn := range []Transform{r.cfg.Transform, r.cfg.Reshape} {
				if fn != nil && keep {
					rec.Record, keep = fn(ctx, nil, &rec)
				}
			}
			if !keep {
				continue // dropped now (e.g. its pod is excluded): settled
			}
			recs = append(recs, rec)
		}
		r.deliver(recs)
		if err := r.hard.Err(); err != nil {
			return replayed, fmt.Errorf("sink %s: replay stopped: %w", r.name, err)
		}
		if err := ctx.Err(); err != nil {
			return replayed, err
		}
		for _, seq := range stored {
			if err := store.DeleteDeadLetter(ctx, seq); err != nil {
				return replayed, err
			}
			replayed++
			r.m.replayed.Inc()
		}
	}
	return replayed, nil
}

// Process runs records through the stages a runner with this configuration
// applies before its sink: MatchTag, Transform, Keep, Reshape, in that order,
// with the same functions. It is for checking a configuration (config tests):
// it allocates freely and counts nothing.
func (c *RunnerConfig) Process(ctx context.Context, recs []Record) []Record {
	var out []Record
	for _, rec := range recs {
		if c.MatchTag != nil && !c.MatchTag(rec.Tag) {
			continue
		}
		keep := true
		if c.Transform != nil {
			var b []byte
			if b, keep = c.Transform(ctx, nil, &rec); keep {
				rec.Record = b
			}
		}
		if keep && c.Keep != nil {
			ok, err := c.Keep(rec.Tag, rec.Record)
			keep = err == nil && ok
		}
		if keep && c.Reshape != nil {
			var b []byte
			if b, keep = c.Reshape(ctx, nil, &rec); keep {
				rec.Record = b
			}
		}
		if keep {
			out = append(out, rec)
		}
	}
	return out
}
