package queue

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Seen knows the chunk keys of the batch messages of the last two
// duplicate windows (keyRetention), and at which stream sequence each first
// came. JetStream deduplicates a message by its id; a resent chunk stored
// in another batch message than its first copy is caught here instead.
//
// The log stream republishes the headers of every batch message it stores
// (its RePublish setting) into a stream of their own, the keys stream
// (limits retention, kept for two duplicate windows), so that the keys
// outlive the messages, which go once every sink wrote them. Every replica
// reads the keys stream in order from two windows back, so all of them
// agree that the copy at the lower sequence is the one to write.
type Seen struct {
	window time.Duration
	wait   time.Duration // how long Earlier waits for the index to catch up
	from   int64         // Unix ns: the index knows every message stored since
	log    *slog.Logger

	mu sync.Mutex
	// gens hold the keys, oldest first; the last takes new ones. A key is
	// in one of them, the one of its first copy.
	gens    []keyGen
	wake    chan struct{} // closed when last moves
	last    atomic.Uint64 // the highest log stream sequence read
	stalled atomic.Uint64 // last, when a wait for it to move timed out

	cc       jetstream.ConsumeContext
	stop     sync.Once
	timeouts prometheus.Counter
}

type seenAt struct {
	seq    uint64
	stored int64 // Unix ns
}

// keyGen is the keys of the batch messages stored in a stretch of
// window/seenGens: in a map while it takes keys, then in a slice sorted by
// key (32 bytes a key, where a map takes about twice that). A key is two
// digests (of the chunk id, and of the tag and entries): their exclusive or
// is spread evenly even when chunk ids repeat, so sorted is in its order,
// and starts[b] is where the keys whose top bits of it are b begin, so
// that a look-up searches four to eight keys.
type keyGen struct {
	from   int64 // stored time (Unix ns) of its first key
	keys   map[[16]byte]seenAt
	sorted []seenKey
	starts []uint32
	shift  uint
}

// seenKey is a key as two numbers, the exclusive or of its halves and its
// first half, and where it came first.
type seenKey struct {
	mix, hi uint64
	at      seenAt
}

func newSeenKey(k [16]byte, at seenAt) seenKey {
	hi, lo := binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint64(k[8:])
	return seenKey{mix: hi ^ lo, hi: hi, at: at}
}

func compareKeys(a, b seenKey) int {
	if c := cmp.Compare(a.mix, b.mix); c != 0 {
		return c
	}
	return cmp.Compare(a.hi, b.hi)
}

// find looks k up in g.
func (g *keyGen) find(k [16]byte) (seenAt, bool) {
	if g.keys != nil {
		at, ok := g.keys[k]
		return at, ok
	}
	want := newSeenKey(k, seenAt{})
	b := want.mix >> g.shift
	from, to := g.starts[b], g.starts[b+1]
	i, ok := slices.BinarySearchFunc(g.sorted[from:to], want, compareKeys)
	if !ok {
		return seenAt{}, false
	}
	return g.sorted[int(from)+i].at, true
}

// sortedGen is the closed form of a generation of keys.
func sortedGen(keys map[[16]byte]seenAt) (sorted []seenKey, starts []uint32, shift uint) {
	sorted = make([]seenKey, 0, len(keys))
	for k, at := range keys {
		sorted = append(sorted, newSeenKey(k, at))
	}
	slices.SortFunc(sorted, compareKeys)
	n := max(bits.Len(uint(len(sorted)/8)), 1)
	shift = uint(64 - n)
	starts = make([]uint32, 1<<n+1)
	i := 0
	for b := range starts {
		for i < len(sorted) && sorted[i].mix>>shift < uint64(b) {
			i++
		}
		starts[b] = uint32(i)
	}
	return sorted, starts, shift
}

// seenGens is how many generations a window's keys take. A generation goes
// once the next one began two windows before the newest key: every key of
// the last two windows is kept, so that a sink up to a window behind the
// index still tells resends (keyRetention). (Stored times that jump ahead
// by more than that, a clock set forward, drop every closed generation at
// once: resends of the keys before are then written again, never lost.)
// For the heap it takes, see BenchmarkSeenMemory.
const seenGens = 4

// keyRetention is how many windows of keys the index keeps.
const keyRetention = 2

// KeysStream is the name of the stream of batch messages' keys.
func (q *Queue) KeysStream() string { return q.cfg.Stream.Name + "_KEYS" }

// keysSubject is where the log stream republishes batch messages' headers.
func (q *Queue) keysSubject() string { return q.cfg.Stream.SubjectPrefix + "-keys.batch" }

// keysRepublish is the log stream's RePublish setting that feeds the keys
// stream.
func (q *Queue) keysRepublish() *jetstream.RePublish {
	return &jetstream.RePublish{Source: q.BatchSubject(), Destination: q.keysSubject(), HeadersOnly: true}
}

// createKeysStream creates or updates the keys stream. It must exist before
// the first batch message: a republish with no stream to take it is lost.
func (q *Queue) createKeysStream(ctx context.Context) error {
	_, err := q.createStream(ctx, jetstream.StreamConfig{
		Name:        q.KeysStream(),
		Description: "sluice: chunk keys of batch messages, to tell resent chunks (republished by the log stream)",
		Subjects:    []string{q.keysSubject()},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      keyRetention * q.cfg.Stream.DuplicateWindow,
		MaxBytes:    keysStreamBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Stream.Replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: create stream %s: %w%s", q.KeysStream(), err, storageHint(err))
	}
	return nil
}

// keysStreamBytes bounds the keys stream: about 1 KB a batch message, so
// 256 MiB holds two windows of 2 minutes at over 1,000 batches a second.
const keysStreamBytes = 256 << 20

// Seen returns the queue's index of batch messages' chunk keys.
func (q *Queue) Seen() *Seen { return q.seen }

// startSeen starts reading the keys of the batch messages stored in the
// last keyRetention duplicate windows and of every one after. Stop ends it.
func (q *Queue) startSeen(ctx context.Context) (*Seen, error) {
	s := newSeenIndex(q.cfg.Stream.DuplicateWindow)
	s.log = q.set.Logger
	now := time.Now()
	s.from = now.Add(-keyRetention * s.window).UnixNano()
	// A second earlier: a republish is stored a moment after its message.
	start := now.Add(-keyRetention*s.window - time.Second)
	cons, err := q.js.OrderedConsumer(ctx, q.KeysStream(), jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		HeadersOnly:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: chunk key index: %w", err)
	}
	if s.cc, err = cons.Consume(s.add); err != nil {
		return nil, fmt.Errorf("queue: chunk key index: %w", err)
	}
	if err := q.set.Registerer.Register(s.timeouts); err != nil {
		s.cc.Stop()
		return nil, fmt.Errorf("queue: chunk key index metrics: %w", err)
	}
	return s, nil
}

// newSeenIndex is an index that has read no key yet.
func newSeenIndex(window time.Duration) *Seen {
	return &Seen{
		window: window,
		wait:   10 * time.Second,
		log:    slog.Default(),
		gens:   []keyGen{{keys: make(map[[16]byte]seenAt)}},
		wake:   make(chan struct{}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_seen_wait_timeouts_total",
			Help: "Batch messages written without a resend check because the key index did not catch up in time.",
		}),
	}
}

// Stop ends the reading; it may be called more than once.
func (s *Seen) Stop() { s.stop.Do(s.cc.Stop) }

// add takes in the keys of one batch message, republished with its log
// stream sequence and time.
func (s *Seen) add(m jetstream.Msg) {
	h := m.Headers()
	seq, err := strconv.ParseUint(h.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return
	}
	ts, err := time.Parse(time.RFC3339Nano, h.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return
	}
	s.addKeys(seq, ts, h.Get(HeaderChunkKeys))
}

func (s *Seen) addKeys(seq uint64, stored time.Time, keys string) {
	at := seenAt{seq: seq, stored: stored.UnixNano()}
	s.mu.Lock()
	closing := -1
	if at.stored-s.gens[len(s.gens)-1].from >= int64(s.window)/seenGens {
		closing = s.nextGenLocked(at.stored)
	}
	cur := s.gens[len(s.gens)-1].keys
	for _, key := range strings.Fields(keys) {
		k, ok := keyBytes(key)
		if !ok {
			continue
		}
		if _, ok := s.firstLocked(k); !ok {
			cur[k] = at
		}
	}
	if at.seq > s.last.Load() {
		s.last.Store(at.seq)
		close(s.wake)
		s.wake = make(chan struct{})
	}
	s.mu.Unlock()
	if closing >= 0 {
		s.closeGen(closing)
	}
}

// closeGen sorts generation i, which takes no more keys, into its closed
// form. Only addKeys changes gens and their maps, on one goroutine (the
// keys stream's consumer), so the map is read here without s.mu while
// Earlier reads it under s.mu, and only the swap holds s.mu: sorting a
// quarter window of keys does not stop the sinks' look-ups.
func (s *Seen) closeGen(i int) {
	sorted, starts, shift := sortedGen(s.gens[i].keys)
	s.mu.Lock()
	g := &s.gens[i]
	g.sorted, g.starts, g.shift, g.keys = sorted, starts, shift, nil
	s.mu.Unlock()
}

// nextGenLocked starts a generation at stored time now, drops those whose
// keys are all keyRetention windows older than now (keys come in stored
// order), and returns the index of the one that took keys until now, for
// closeGen; s.mu is held.
func (s *Seen) nextGenLocked(now int64) int {
	drop := 0
	for drop+1 < len(s.gens) && s.gens[drop+1].from <= now-keyRetention*int64(s.window) {
		drop++
	}
	n := copy(s.gens, s.gens[drop:])
	clear(s.gens[n:])
	s.gens = append(s.gens[:n], keyGen{from: now, keys: make(map[[16]byte]seenAt)})
	return n - 1
}

// firstLocked is where key k came first, if the index holds it; s.mu is
// held.
func (s *Seen) firstLocked(k [16]byte) (seenAt, bool) {
	for i := len(s.gens) - 1; i >= 0; i-- {
		if at, ok := s.gens[i].find(k); ok {
			return at, true
		}
	}
	return seenAt{}, false
}

// keyBytes decodes a key (MsgID: 16 bytes in unpadded URL base64).
func keyBytes(key string) (k [16]byte, ok bool) {
	if base64.RawURLEncoding.DecodedLen(len(key)) != len(k) {
		return k, false
	}
	n, err := base64.RawURLEncoding.Decode(k[:], []byte(key))
	return k, err == nil && n == len(k)
}

// Earlier reports whether the chunk with key, in the batch message at seq
// stored at stored, is a resend: its key came first in a message at a
// lower sequence within the duplicate window. It waits until the index has
// read up to seq, or ctx ends. If the index does not move for 10 s it
// answers false (a duplicate is better than a stall), and does not wait
// again until the index moves.
func (s *Seen) Earlier(ctx context.Context, key string, seq uint64, stored time.Time) (bool, error) {
	if stored.UnixNano() >= s.from && s.last.Load() < seq {
		if err := s.waitFor(ctx, seq); err != nil {
			return false, err
		}
	}
	k, ok := keyBytes(key)
	if !ok {
		return false, nil
	}
	s.mu.Lock()
	at, found := s.firstLocked(k)
	s.mu.Unlock()
	return found && at.seq < seq && stored.UnixNano()-at.stored <= int64(s.window), nil
}

// waitFor waits until the index read seq, or timed out.
func (s *Seen) waitFor(ctx context.Context, seq uint64) error {
	last := s.last.Load()
	if last != 0 && s.stalled.Load() == last {
		return nil // timed out before, and has not moved since
	}
	timer := time.NewTimer(s.wait)
	defer timer.Stop()
	for s.last.Load() < seq {
		s.mu.Lock()
		wake := s.wake
		s.mu.Unlock()
		if s.last.Load() >= seq {
			break
		}
		select {
		case <-wake:
		case <-timer.C:
			s.timeouts.Inc()
			if s.stalled.Swap(s.last.Load()) != s.last.Load() {
				s.log.Warn("the chunk key index is behind; writing batch messages without telling resent chunks",
					"index_at", s.last.Load(), "message", seq)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
