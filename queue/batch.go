package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/sluicelog/sluice/internal/bufpool"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
	"github.com/sluicelog/sluice/internal/units"
)

// A batch message holds several small chunks, of any tags, gathered for a
// moment (BatchConfig.Linger) so that a fleet of forwarders sending small
// chunks costs JetStream one message for many of them: a message stored,
// delivered, acknowledged and removed is the fleet's main cost per chunk.
//
// Its subject is BatchSubject, which no tag escapes to. Its body (before
// compression) is, for each chunk, a msgpack array [tag, count, key,
// entries], key being the chunk's deduplication key (MsgID). JetStream
// deduplicates messages, not the chunks inside them, so the keys are also
// in the HeaderChunkKeys header, where every replica's Seen index reads
// them: a chunk whose key is in an earlier batch message of the duplicate
// window is a forwarder's resend, and sinks skip it.
const (
	// EncodingChunks is the encoding header of a batch message.
	EncodingChunks = "forward-chunks"
	// EncodingChunksS2 is that of a batch message compressed with S2.
	EncodingChunksS2 = EncodingChunks + "+s2"
	// HeaderChunkKeys lists the keys of a batch message's chunks, separated
	// by spaces.
	HeaderChunkKeys = "Sluice-Chunk-Keys"

	// batchToken is the subject token of batch messages: Subject escapes
	// every '%' of a tag to %25 and writes a lone '%' only before a dot or
	// at the end, so no tag's subject has a token "%chunks".
	batchToken = "%chunks"
	// maxBatchChunks bounds the chunks in one batch message (and the keys
	// header: 23 bytes a chunk).
	maxBatchChunks = 1024
)

// BatchConfig configures the gathering of small chunks into batch messages.
type BatchConfig struct {
	// Enabled gathers small chunks (the default); off, every chunk is a
	// message of its own.
	Enabled *bool `yaml:"enabled"`
	// Linger is how long the first chunk of a batch waits for others.
	// Every acknowledgement of a batched chunk waits up to this long.
	Linger time.Duration `yaml:"linger"`
	// MaxBytes ends a batch early once its chunks' entries reach it.
	MaxBytes units.ByteSize `yaml:"max_bytes"`
	// MaxChunkBytes is the largest chunk gathered; a larger one is a message
	// of its own, as is a chunk without a forwarder chunk id.
	MaxChunkBytes units.ByteSize `yaml:"max_chunk_bytes"`
	// MaxPending bounds the batch messages that exist at once: the one
	// being gathered and those awaiting their PubAck. Each holds up to
	// MaxBytes of entries and their compressed copy. A chunk that needs a
	// new batch while all are taken waits (up to the publish timeout), and
	// so does its connection.
	MaxPending int `yaml:"max_pending"`
}

func (c *BatchConfig) setDefaults() {
	if c.Enabled == nil {
		on := true
		c.Enabled = &on
	}
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 256 << 10
	}
	if c.MaxChunkBytes == 0 {
		c.MaxChunkBytes = 64 << 10
	}
	if c.MaxPending == 0 {
		c.MaxPending = 16
	}
}

func (c *BatchConfig) validate(add func(field, msg string), maxMsg, maxPublishes int) {
	if c.Linger < 0 || c.Linger > time.Second {
		add("batch.linger", "must be between 0 and 1s")
	}
	if c.MaxBytes < 1<<10 || int(c.MaxBytes) > maxMsg {
		add("batch.max_bytes", fmt.Sprintf("must be between 1KiB and %d", maxMsg))
	}
	if c.MaxChunkBytes < 1 || c.MaxChunkBytes > c.MaxBytes {
		add("batch.max_chunk_bytes", "must be positive and at most batch.max_bytes")
	}
	if c.MaxPending < 1 || c.MaxPending > maxPublishes {
		add("batch.max_pending", fmt.Sprintf("must be between 1 and max_pending_publishes (%d)", maxPublishes))
	}
}

// BatchSubject is the subject of batch messages.
func (q *Queue) BatchSubject() string { return q.cfg.Stream.SubjectPrefix + "." + batchToken }

// batcher gathers chunks into batch messages.
type batcher struct {
	q        *Queue
	linger   time.Duration
	maxBytes int // a batch body's
	maxChunk int // a gathered chunk's section
	timeout  time.Duration
	// slots holds a token for each batch that exists (MaxPending).
	slots chan struct{}
	mu    sync.Mutex
	cur   *batch
	// inFlight counts the batches taken out to be sent and not settled
	// (mu held).
	inFlight int
}

// batch is one batch message being gathered, then awaiting its PubAck.
type batch struct {
	body   []byte         // pooled; the sections
	chunks []*chunk.Chunk // gathered, their Entries in body; nil once settled
	keys   []byte         // the keys header
	count  int            // records
	timer  *time.Timer
	eager  bool      // holds an eager chunk: sent once no other batch is in flight
	msg    *nats.Msg // once sent; its body and headers dropped once settled (letGo)
	start  time.Time
	done   chan struct{} // closed once err is set
	err    error
}

// add gathers c into the current batch, which is sent when its linger ends
// or it is full. An eager chunk has it sent at once when no other batch is
// in flight, else as soon as none is (a sender that waits for each ack
// gets its chunks stored without the linger, and many such senders still
// share messages). A new batch takes a slot; while none is free, add waits
// for one, up to the publish timeout. The caller checked that c fits
// (fits).
func (b *batcher) add(c *chunk.Chunk) (chunk.Pending, error) {
	key := MsgID(c.ID, c.Tag, c.Entries)
	slot := false // this call took a slot it has not used yet
	for {
		var full *batch // sent here, outside the lock
		b.mu.Lock()
		bt := b.cur
		if bt != nil && len(bt.body)+sectionBytes(c) > b.maxBytes {
			full, bt = bt, nil
			b.takeOut(full)
		}
		now := c.Eager && b.inFlight == 0
		if bt == nil && !slot {
			select {
			case b.slots <- struct{}{}:
				slot = true
			default:
			}
		}
		if bt == nil && slot {
			slot = false
			room := b.maxBytes
			if now {
				room = sectionBytes(c) // it goes alone, at once
			}
			bt = &batch{body: bufpool.Get(room)[:0], start: time.Now(), done: make(chan struct{})}
			b.cur = bt
			if !now { // else it is sent below, in this call
				bt.timer = time.AfterFunc(b.linger, func() { b.seal(bt) })
			}
		}
		if bt == nil {
			b.mu.Unlock()
			if full != nil {
				b.send(full, sealFull)
			}
			if err := b.waitSlot(); err != nil {
				return nil, err
			}
			slot = true
			continue
		}
		bt.body = appendSection(bt.body, c.Tag, uint64(c.Count), key, c.Entries)
		// The body never grows past its room (full batches are sent first),
		// so this copy stays put: the caller's bytes are free
		// (chunk.Copied), and a republish after a failure reads the copy,
		// which a failed batch keeps.
		c.Entries = bt.body[len(bt.body)-len(c.Entries) : len(bt.body) : len(bt.body)]
		if len(bt.chunks) > 0 {
			bt.keys = append(bt.keys, ' ')
		}
		bt.keys = append(bt.keys, key...)
		bt.chunks = append(bt.chunks, c)
		bt.count += c.Count
		seal := ""
		switch {
		case len(bt.chunks) >= maxBatchChunks:
			seal = sealFull
		case now:
			seal = sealEager
		case c.Eager:
			bt.eager = true // landed sends it
		}
		if seal != "" {
			b.takeOut(bt)
		}
		b.mu.Unlock()
		if slot {
			<-b.slots // another call started a batch while this one waited
		}
		if full != nil {
			b.send(full, sealFull)
		}
		if seal != "" {
			b.send(bt, seal)
		}
		return bt, nil
	}
}

// ErrBatchesPending means every batch slot stayed taken for the publish
// timeout: JetStream is not answering.
var ErrBatchesPending = errors.New("queue: every batch message awaits its PubAck")

// waitSlot takes a batch slot, waiting up to the publish timeout.
func (b *batcher) waitSlot() error {
	t := time.NewTimer(b.timeout)
	defer t.Stop()
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-t.C:
		b.q.metrics.publishErrs.WithLabelValues(reasonBatchesPending).Inc()
		return ErrBatchesPending
	}
}

// appendSection appends a chunk's section of a batch body.
func appendSection(body []byte, tag string, count uint64, key string, entries []byte) []byte {
	body = msgp.AppendArrayHeader(body, 4)
	body = msgp.AppendStr(body, tag)
	body = msgp.AppendUint(body, count)
	body = msgp.AppendStr(body, key)
	return msgp.AppendBin(body, entries)
}

// sectionBytes bounds the bytes c takes in a batch body.
func sectionBytes(c *chunk.Chunk) int { return len(c.Entries) + len(c.Tag) + 48 }

// fits reports whether c is gathered: a chunk with a forwarder chunk id
// (a resend of it is recognised) and at most MaxChunkBytes.
func (b *batcher) fits(c *chunk.Chunk) bool {
	return c.ID != "" && sectionBytes(c) <= b.maxChunk
}

// seal sends bt once its linger is over, unless it was sent full.
func (b *batcher) seal(bt *batch) {
	b.mu.Lock()
	if b.cur != bt {
		b.mu.Unlock()
		return
	}
	b.takeOut(bt)
	b.mu.Unlock()
	b.send(bt, sealLinger)
}

// takeOut makes the current batch, bt, one to send, counted in flight from
// now on; b.mu is held.
func (b *batcher) takeOut(bt *batch) {
	b.cur = nil
	if bt.timer != nil {
		bt.timer.Stop()
	}
	b.inFlight++
}

// Why a batch is sent (sluice_queue_batches_sealed_total).
const (
	sealLinger = "linger"
	sealFull   = "full"
	sealEager  = "eager"
)

// send publishes bt, taken out for reason, and settles it when its PubAck
// (or failure) comes.
func (b *batcher) send(bt *batch, reason string) {
	q := b.q
	q.metrics.sealed.WithLabelValues(reason).Inc()
	data, encoding := bt.body, EncodingChunks
	z := q.compress(bt.body)
	if z != nil {
		data, encoding = z, EncodingChunksS2
	}
	id := nuid.Next()
	if len(bt.chunks) == 1 {
		id = string(bt.keys) // a lone chunk: JetStream deduplicates it too
	}
	h := nats.Header{
		HeaderTag:             {bt.chunks[0].Tag},
		HeaderCount:           {countString(bt.count)},
		HeaderEncoding:        {encoding},
		HeaderChunkKeys:       {string(bt.keys)},
		jetstream.MsgIDHeader: {id},
	}
	// Without the expected-stream check of other messages: the log stream
	// republishes these headers into the keys stream, which would refuse
	// them for naming the log stream.
	bt.msg = &nats.Msg{Subject: q.BatchSubject(), Header: h, Data: data}
	f, err := q.js.PublishMsgAsync(bt.msg)
	body := bt.body // settle lets go of it
	if err != nil {
		q.metrics.publishErrs.WithLabelValues(errReason(err)).Inc()
		b.settle(bt, fmt.Errorf("queue: publish: %w", err))
		bufpool.Put(z) // not sent
		bufpool.Put(body)
		return
	}
	go func() {
		select {
		case <-f.Ok():
			q.metrics.published.Inc()
			q.metrics.batched.Add(float64(len(bt.chunks)))
			q.metrics.latency.Observe(time.Since(bt.start).Seconds())
			b.settle(bt, nil)
			bufpool.Put(z)
			bufpool.Put(body)
		case err := <-f.Err():
			q.metrics.publishErrs.WithLabelValues(errReason(err)).Inc()
			b.settle(bt, fmt.Errorf("queue: store chunk: %w", err))
			// The client may still hold the message: the compressed copy,
			// or the body itself when it was sent uncompressed.
			if z != nil {
				bufpool.Put(body)
			}
		}
	}()
}

// settle ends the batch with err and frees its slot. The batch lets go of
// its body and its message's (letGo), which the chunks' connections would
// otherwise keep through their Pending until they are done, and after a
// failure each chunk gets a copy of its entries of its own, which its
// republish reads: a full stream refuses batch after batch, and the
// connections hold each refused batch until their chunks are stored at
// last, so a body of 256 KiB kept for them would pin thousands.
func (b *batcher) settle(bt *batch, err error) {
	if err != nil {
		bt.err = err
		for _, c := range bt.chunks {
			c.Entries = bytes.Clone(c.Entries)
		}
	}
	bt.chunks, bt.body, bt.keys = nil, nil, nil
	letGo(bt.msg)
	close(bt.done)
	<-b.slots
	b.landed()
}

// landed counts a batch settled. Once none is in flight, the current batch
// goes if it holds an eager chunk.
func (b *batcher) landed() {
	b.mu.Lock()
	b.inFlight--
	bt := b.cur
	if b.inFlight != 0 || bt == nil || !bt.eager {
		b.mu.Unlock()
		return
	}
	b.takeOut(bt)
	b.mu.Unlock()
	b.send(bt, sealEager)
}

// Copied says the chunk's entries were copied into the batch (chunk.Copied).
func (bt *batch) Copied() {}

// Wait waits until the batch is stored (chunk.Pending).
func (bt *batch) Wait(ctx context.Context) error {
	select {
	case <-bt.done:
		return bt.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Part is one chunk of a message with its deduplication key: "" for a
// message of one chunk, which JetStream deduplicates by its message id.
type Part struct {
	chunk.Chunk
	Key string
}

// ErrBadBatch means a batch message's body is not what sluice writes.
var ErrBadBatch = errors.New("queue: malformed batch message")

// PartsFromMsg returns the chunks a message carries: one for a message of
// one chunk (ChunkFromMsg), each of a batch message's otherwise. Entries
// alias the message data or decoded, a buffer from package bufpool (nil
// when the message was not compressed) that the caller may give back once
// it no longer needs the parts. parts is reused: pass the last result.
func PartsFromMsg(m jetstream.Msg, parts []Part) (_ []Part, decoded []byte, err error) {
	parts = parts[:0]
	h := m.Headers()
	enc := h.Get(HeaderEncoding)
	if enc != EncodingChunks && enc != EncodingChunksS2 {
		c, pooled, err := ChunkFromMsg(m)
		if err != nil {
			return parts, nil, err
		}
		if pooled {
			decoded = c.Entries
		}
		return append(parts, Part{Chunk: *c}), decoded, nil
	}
	body := m.Data()
	if enc == EncodingChunksS2 {
		if body, err = decompress(body); err != nil {
			return parts, nil, err
		}
		decoded = body
	}
	parts, err = readParts(body, parts)
	return parts, decoded, err
}

// readParts reads a batch body's sections.
func readParts(body []byte, parts []Part) ([]Part, error) {
	for off := 0; off < len(body); {
		p, next, err := readSection(body, off)
		if err != nil {
			return parts, fmt.Errorf("%w: section at %d: %v", ErrBadBatch, off, err)
		}
		parts = append(parts, p)
		off = next
	}
	if len(parts) == 0 {
		return parts, fmt.Errorf("%w: no chunks", ErrBadBatch)
	}
	return parts, nil
}

// readSection reads the section [tag, count, key, entries] at off.
func readSection(body []byte, off int) (p Part, next int, err error) {
	n, next, err := msgp.ReadArrayHeader(body, off)
	if err == nil && n != 4 {
		err = fmt.Errorf("%d fields, want [tag, count, key, entries]", n)
	}
	var tag, key []byte
	var count uint64
	if err == nil {
		tag, next, err = msgp.ReadStr(body, next)
	}
	if err == nil {
		count, next, err = msgp.ReadUint64(body, next)
	}
	if err == nil {
		key, next, err = msgp.ReadStr(body, next)
	}
	if err == nil {
		p.Entries, next, err = msgp.ReadBytes(body, next)
	}
	if err == nil && count > uint64(len(p.Entries)) {
		err = fmt.Errorf("%d records in %d bytes", count, len(p.Entries))
	}
	if err != nil {
		return p, off, err
	}
	p.Tag, p.Count, p.Key = string(tag), int(count), string(key)
	return p, next, nil
}
