package queue

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/bufpool"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/mono"
	"github.com/sluicelog/sluice/internal/msgp"
)

// EncodingS2 is the encoding header of a message whose body is the entries
// compressed with S2 (block format); see StreamConfig.Compression.
const EncodingS2 = chunk.Encoding + "+s2"

// maxDecodedBytes bounds the entries a compressed message may expand to:
// NATS's own largest payload, above any message sluice stores.
const maxDecodedBytes = 64 << 20

type metrics struct {
	published   prometheus.Counter
	entryBytes  prometheus.Counter // entries published
	storedBytes prometheus.Counter // message bodies published
	batched     prometheus.Counter // chunks published in batch messages
	sealed      *prometheus.CounterVec
	publishErrs *prometheus.CounterVec
	latency     prometheus.Histogram
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_published_messages_total",
			Help: "Messages stored in the log stream (PubAck received).",
		}),
		batched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_batched_chunks_total",
			Help: "Chunks stored in batch messages, several small chunks to a message (nats.batch).",
		}),
		sealed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_batches_sealed_total",
			Help: "Batch messages sealed and published, by why: linger (its first chunk waited nats.batch.linger), full, or eager (a chunk whose sender waits for each ack before sending more).",
		}, []string{"reason"}),
		publishErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_publish_errors_total",
			Help: "Publishes that failed, by reason.",
		}, []string{"reason"}),
		entryBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_entry_bytes_total",
			Help: "Bytes of Forward entries published to the log stream, before compression.",
		}),
		storedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_stored_bytes_total",
			Help: "Bytes of message bodies published to the log stream, after compression (stream.compression).",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_queue_publish_seconds",
			Help:    "Time from publish to PubAck.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	for _, reason := range []string{sealLinger, sealFull, sealEager} {
		m.sealed.WithLabelValues(reason)
	}
	// The reasons errReason gives (but JetStream's API error codes) and the
	// batches' own are there at 0 from the start: a page without them means
	// another binary, not a clean run.
	for _, reason := range publishErrorReasons {
		m.publishErrs.WithLabelValues(reason)
	}
	r.MustRegister(m.published, m.batched, m.sealed, m.publishErrs, m.entryBytes, m.storedBytes, m.latency)
	return m
}

// subjectCache maps tags to subjects, computed once per distinct tag. It is
// bounded: past maxSubjects entries it starts over.
type subjectCache struct {
	prefix string
	mu     sync.RWMutex
	m      map[string]string
}

const maxSubjects = 1 << 16

func newSubjectCache(prefix string) *subjectCache {
	return &subjectCache{prefix: prefix, m: make(map[string]string)}
}

func (c *subjectCache) get(tag string) string {
	c.mu.RLock()
	s, ok := c.m[tag]
	c.mu.RUnlock()
	if ok {
		return s
	}
	s = Subject(c.prefix, tag)
	c.mu.Lock()
	if len(c.m) >= maxSubjects {
		c.m = make(map[string]string)
	}
	c.m[tag] = s
	c.mu.Unlock()
	return s
}

// ErrEntryTooLarge means one entry alone is above the message size limit.
var ErrEntryTooLarge = errors.New("queue: one entry is larger than the message size limit")

// MsgID returns the deduplication id of a message: a digest of the
// forwarder's chunk id beside a digest of the tag and the payload, so that a
// forwarder that resends a chunk is deduplicated while one that reuses an id
// for other data never loses any. Without a chunk id every publish is
// unique. Ids are 22 characters whatever the chunk id: the stream leader
// holds every id of its duplicate window in memory.
func MsgID(chunkID, tag string, entries []byte) string {
	if chunkID == "" {
		return nuid.Next()
	}
	h := xxhash.New()
	_, _ = h.WriteString(tag)
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(entries)
	var sum [16]byte
	binary.BigEndian.PutUint64(sum[:8], xxhash.Sum64String(chunkID))
	binary.BigEndian.PutUint64(sum[8:], h.Sum64())
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Publish starts storing c in the stream and returns at once, unless too many
// publishes await their PubAck, when it blocks (up to the publish timeout).
// The returned Pending reports when every message of the chunk is stored.
// c.Entries must stay unchanged until then, unless the Pending is a
// chunk.Copied (a chunk gathered into a batch message). Publishing the same
// chunk again after a failure is safe: the message ids deduplicate it (they
// are taken over the entries, before compression; a chunk without an ID
// keeps the nonce Publish gives it), and in a batch message its key does
// (Seen).
func (q *Queue) Publish(c *chunk.Chunk) (chunk.Pending, error) {
	q.lastPublish.Store(mono.Now())
	if q.batcher != nil && q.batcher.fits(c) {
		return q.batcher.add(c)
	}
	parts, err := q.split(c.Entries, c.Count)
	if err != nil {
		return nil, err
	}
	p := &pending{q: q, start: time.Now()}
	p.futs = p.one[:0]
	if len(parts) > 1 {
		p.futs = make([]jetstream.PubAckFuture, 0, len(parts))
	}
	subject := q.subjectFor.get(c.Tag)
	for i, part := range parts {
		data, encoding := part.data, chunk.Encoding
		if z := q.compress(part.data); z != nil {
			data, encoding = z, EncodingS2
			p.bufs = append(p.bufs, z)
		}
		// One allocation for the header values: every message of every
		// chunk pays for these.
		vals := make([]string, 5)
		vals[0], vals[1], vals[2] = c.Tag, countString(part.count), encoding
		h := make(nats.Header, 5)
		h[HeaderTag], h[HeaderCount], h[HeaderEncoding] = vals[0:1:1], vals[1:2:2], vals[2:3:3]
		if c.ID != "" {
			vals[3] = c.ID
			h[HeaderChunkID] = vals[3:4:4]
			vals[4] = MsgID(partID(c.ID, i, len(parts)), c.Tag, part.data)
		} else {
			if c.Nonce == "" {
				c.Nonce = MsgID("", c.Tag, part.data) // unique
			}
			vals[4] = partID(c.Nonce, i, len(parts))
		}
		h[jetstream.MsgIDHeader] = vals[4:5:5]
		f, err := q.js.PublishMsgAsync(&nats.Msg{Subject: subject, Header: h, Data: data}, q.expectStream)
		if err != nil {
			q.metrics.publishErrs.WithLabelValues(errReason(err)).Inc()
			return nil, fmt.Errorf("queue: publish: %w", err)
		}
		p.futs = append(p.futs, f)
	}
	return p, nil
}

// compress returns b compressed with S2 in a buffer from package bufpool,
// or nil when the stream stores messages uncompressed or b would not
// shrink; it counts the bytes before and as stored.
func (q *Queue) compress(b []byte) []byte {
	var z []byte
	if q.cfg.Stream.Compression == CompressionS2 {
		buf := bufpool.Get(s2.MaxEncodedLen(len(b)))
		if z = s2.Encode(buf[:cap(buf)], b); len(z) >= len(b) {
			bufpool.Put(buf)
			z = nil
		}
	}
	stored := len(b)
	if z != nil {
		stored = len(z)
	}
	q.metrics.entryBytes.Add(float64(len(b)))
	q.metrics.storedBytes.Add(float64(stored))
	return z
}

// partID is the id of part i of a chunk cut into n messages.
func partID(id string, i, n int) string {
	if n == 1 {
		return id
	}
	return id + "/" + strconv.Itoa(i)
}

// counts are the decimal texts of small record counts, made once.
var counts = func() (s [1025]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// countString is n in decimal, without an allocation up to 1024.
func countString(n int) string {
	if n >= 0 && n < len(counts) {
		return counts[n]
	}
	return strconv.Itoa(n)
}

type part struct {
	data  []byte
	count int
}

// split cuts entries at entry boundaries into parts below the message size.
func (q *Queue) split(entries []byte, count int) ([]part, error) {
	if len(entries) <= q.maxMsg {
		return []part{{entries, count}}, nil
	}
	var parts []part
	start, n := 0, 0
	for off := 0; off < len(entries); {
		next, err := msgp.Skip(entries, off)
		if err != nil {
			return nil, fmt.Errorf("queue: split chunk: %w", err)
		}
		if next-off > q.maxMsg {
			return nil, ErrEntryTooLarge
		}
		if next-start > q.maxMsg {
			parts = append(parts, part{entries[start:off], n})
			start, n = off, 0
		}
		off = next
		n++
	}
	return append(parts, part{entries[start:], n}), nil
}

type pending struct {
	q     *Queue
	start time.Time
	futs  []jetstream.PubAckFuture
	one   [1]jetstream.PubAckFuture // futs' room for the usual chunk of one message
	// bufs hold compressed bodies. The client may send a body again until
	// its PubAck, so they go back to the pool only once every message of
	// the chunk is stored; after a failure they are left to the collector.
	bufs [][]byte
}

// Wait waits for the PubAck of every message of the chunk.
func (p *pending) Wait(ctx context.Context) error {
	for _, f := range p.futs {
		select {
		case <-f.Ok():
			letGo(f.Msg())
		case err := <-f.Err():
			letGo(f.Msg())
			p.q.metrics.publishErrs.WithLabelValues(errReason(err)).Inc()
			return fmt.Errorf("queue: store chunk: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.q.metrics.published.Add(float64(len(p.futs)))
	p.q.metrics.latency.Observe(time.Since(p.start).Seconds())
	for _, b := range p.bufs {
		bufpool.Put(b)
	}
	p.bufs = nil
	return nil
}

// letGo drops a published message's body and headers once its PubAck, or
// its failure, has come. nats.go starts a timer for every async publish
// (publish_timeout) whose function holds the message, and the Go runtime
// keeps a stopped timer, and all it holds, in its heap until the time it
// was set for (or until such timers are a quarter of the heap, which
// thousands of connections' own timers keep them from being). Without
// this, every message's body stayed reachable for publish_timeout after it
// was stored or refused: a full stream refusing batch after batch pinned a
// new compressed copy of up to 512 KiB for each, and 2,000 forwarders into
// a 16 MiB stream peaked at 264-333 MB instead of 182-204 MB.
func letGo(m *nats.Msg) {
	if m != nil {
		m.Data, m.Header = nil, nil
	}
}

// errCodeStoreFailed is nats-server's JSStreamStoreFailedF, returned when the
// stream is full (discard-new) or the store cannot write.
const errCodeStoreFailed = 10077

// Why a publish failed (sluice_queue_publish_errors_total); JetStream API
// errors but these are api_<code>.
const (
	reasonStoreFailed    = "store_failed"
	reasonUnavailable    = "unavailable"
	reasonStalled        = "stalled"
	reasonTimeout        = "timeout"
	reasonNoResponders   = "no_responders"
	reasonClosed         = "closed"
	reasonOther          = "other"
	reasonBatchesPending = "batches_pending"
)

// publishErrorReasons are the reasons on /metrics at 0 from the start.
var publishErrorReasons = []string{reasonStoreFailed, reasonUnavailable, reasonStalled, reasonTimeout,
	reasonNoResponders, reasonClosed, reasonOther, reasonBatchesPending}

// errReason names a publish error for the metrics.
func errReason(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed:
		// e.g. "maximum bytes exceeded": the stream is full
		return reasonStoreFailed
	case errors.As(err, &apiErr):
		if apiErr.Code == 503 {
			return reasonUnavailable
		}
		return "api_" + strconv.Itoa(int(apiErr.ErrorCode))
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return reasonStalled
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrTimeout):
		return reasonTimeout
	case errors.Is(err, nats.ErrNoResponders):
		return reasonNoResponders
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		return reasonClosed
	}
	return reasonOther
}

// ChunkFromMsg rebuilds the chunk a message carries. The chunk's Entries
// alias the message data, or, for a compressed message, are a buffer from
// package bufpool that the caller may give back (bufpool.Put) once it no
// longer needs the chunk; pooled tells which.
func ChunkFromMsg(m jetstream.Msg) (c *chunk.Chunk, pooled bool, err error) {
	h := m.Headers()
	count, err := strconv.Atoi(h.Get(HeaderCount))
	if err != nil || count < 0 {
		return nil, false, fmt.Errorf("queue: message has a bad %s header %q", HeaderCount, h.Get(HeaderCount))
	}
	c = &chunk.Chunk{Tag: h.Get(HeaderTag), ID: h.Get(HeaderChunkID), Count: count, Entries: m.Data()}
	switch enc := h.Get(HeaderEncoding); enc {
	case chunk.Encoding:
		return c, false, nil
	case EncodingS2:
		if c.Entries, err = decompress(m.Data()); err != nil {
			return nil, false, err
		}
		return c, true, nil
	default:
		return nil, false, fmt.Errorf("queue: message has encoding %q, want %q or %q", enc, chunk.Encoding, EncodingS2)
	}
}

// decompress inflates an S2 block into a pooled buffer, refusing one that
// claims more than maxDecodedBytes.
func decompress(z []byte) ([]byte, error) {
	n, err := s2.DecodedLen(z)
	if err != nil {
		return nil, fmt.Errorf("queue: compressed message: %w", err)
	}
	if n > maxDecodedBytes {
		return nil, fmt.Errorf("queue: compressed message expands to %d bytes, above %d", n, maxDecodedBytes)
	}
	buf := bufpool.Get(n)
	out, err := s2.Decode(buf[:n], z)
	if err != nil {
		bufpool.Put(buf)
		return nil, fmt.Errorf("queue: compressed message: %w", err)
	}
	return out, nil
}

// ConsumerConfig configures a sink's durable consumer.
type ConsumerConfig struct {
	// MaxAckPending bounds the messages delivered and not yet acknowledged.
	MaxAckPending int
	// AckWait is how long a delivered message may stay unacknowledged before
	// JetStream redelivers it.
	AckWait time.Duration
}

// ConsumerName returns the durable consumer name of a sink.
func ConsumerName(sink string) string { return "sink_" + sink }

// Consumer creates or updates the durable pull consumer of a sink. It must
// exist before ingest starts: with interest retention, messages published
// while no consumer exists are not kept.
func (q *Queue) Consumer(ctx context.Context, sink string, cc ConsumerConfig) (jetstream.Consumer, error) {
	if cc.MaxAckPending <= 0 {
		cc.MaxAckPending = 256
	}
	if cc.AckWait <= 0 {
		cc.AckWait = 30 * time.Second
	}
	c, err := q.js.CreateOrUpdateConsumer(ctx, q.cfg.Stream.Name, jetstream.ConsumerConfig{
		Durable:       ConsumerName(sink),
		Description:   "sluice sink " + sink,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cc.AckWait,
		MaxAckPending: cc.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: q.cfg.Stream.SubjectPrefix + ".>",
	})
	if err != nil {
		return nil, fmt.Errorf("queue: consumer for sink %s: %w", sink, err)
	}
	return c, nil
}

// MaxMessageBytes is the largest message payload the queue publishes.
func (q *Queue) MaxMessageBytes() int { return q.maxMsg }

// Storing reports whether a chunk awaits storage (a batch message being
// gathered, a message awaiting its PubAck: dead letters count too) or was
// published within the last quiet (defaultQuiet), so that the gaps between a
// burst's chunks do not count as the end of it.
func (q *Queue) Storing() bool {
	if last := q.lastPublish.Load(); last != 0 && mono.Since(last) < q.quiet {
		return true
	}
	return q.batcher != nil && len(q.batcher.slots) > 0 || q.js.PublishAsyncPending() > 0
}
