// Package tap lets an operator watch live records at a stage of the
// pipeline (as ingest stored them, or as a sink receives them, after
// enrichment, transforms and routing) without slowing it down. Taps sample:
// each has a bounded buffer and an optional rate, and a record that does not
// fit is dropped from the tap and counted, never waited for. With no tap
// open, the pipeline pays one atomic load per chunk or batch.
package tap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/jsonl"
	"github.com/sluicelog/sluice/sinks/route"
)

// StageIngest is the stage of records as ingest stored them (after
// multiline joining); any other stage names a sink.
const StageIngest = "ingest"

// bufferLines is how many lines a tap holds for a slow reader.
const bufferLines = 256

// Query selects what a tap shows.
type Query struct {
	// Stage is StageIngest or a sink's name.
	Stage string
	// Match holds Fluentd tag patterns; empty takes every tag.
	Match []string
	// Condition is an expr expression over the record (level == "error").
	Condition string
	// Limit ends the tap after this many records; 0: no limit.
	Limit int
	// Rate caps the records per second the tap shows; 0: no cap.
	Rate float64
}

// Hub hands records to the open taps.
type Hub struct {
	mu   sync.Mutex
	taps atomic.Pointer[[]*Tap] // copied on change; nil or empty when none

	sessions prometheus.Gauge
	records  *prometheus.CounterVec
}

// NewHub returns a hub whose metrics go to reg.
func NewHub(reg prometheus.Registerer) *Hub {
	h := &Hub{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_tap_sessions", Help: "Taps open."}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_tap_records_total",
			Help: "Records offered to taps: sent, or dropped from the tap because its reader was behind (full) or over its rate (rate)."}, []string{"outcome"}),
	}
	reg.MustRegister(h.sessions, h.records)
	return h
}

// Tap is one open tap: its lines arrive on Lines.
type Tap struct {
	q     Query
	match *route.Matcher
	cond  *route.Condition
	lim   *rate.Limiter
	lines chan []byte
	left  atomic.Int64 // records still to send when q.Limit > 0

	mu  sync.Mutex // guards enc
	enc *jsonl.Encoder
}

// Lines delivers the tap's records, one JSON line each (the file sink's
// format: @timestamp, tag, then the record's fields).
func (t *Tap) Lines() <-chan []byte { return t.lines }

// Open starts a tap. Close it when done.
func (h *Hub) Open(q Query) (*Tap, error) {
	if q.Stage == "" {
		return nil, errors.New("stage: empty (ingest or a sink's name)")
	}
	if q.Limit < 0 || q.Rate < 0 {
		return nil, errors.New("limit and rate must not be negative")
	}
	t := &Tap{q: q, lines: make(chan []byte, bufferLines), enc: jsonl.NewEncoder(jsonl.DefaultOptions())}
	var err error
	if t.match, err = route.Compile(q.Match); err != nil {
		return nil, fmt.Errorf("match: %w", err)
	}
	if q.Condition != "" {
		if t.cond, err = route.CompileCondition(q.Condition); err != nil {
			return nil, fmt.Errorf("condition: %w", err)
		}
	}
	if q.Rate > 0 {
		t.lim = rate.NewLimiter(rate.Limit(q.Rate), max(1, int(q.Rate)))
	}
	t.left.Store(int64(q.Limit))
	h.mu.Lock()
	var taps []*Tap
	if p := h.taps.Load(); p != nil {
		taps = slices.Clone(*p)
	}
	taps = append(taps, t)
	h.taps.Store(&taps)
	h.mu.Unlock()
	h.sessions.Inc()
	return t, nil
}

// Close removes the tap.
func (h *Hub) Close(t *Tap) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.taps.Load()
	if p == nil {
		return
	}
	i := slices.Index(*p, t)
	if i < 0 {
		return
	}
	taps := slices.Delete(slices.Clone(*p), i, i+1)
	h.taps.Store(&taps)
	h.sessions.Dec()
}

// active returns the taps open on stage, nil when none.
func (h *Hub) active(stage string) []*Tap {
	p := h.taps.Load()
	if p == nil || len(*p) == 0 {
		return nil
	}
	var out []*Tap
	for _, t := range *p {
		if t.q.Stage == stage {
			out = append(out, t)
		}
	}
	return out
}

// OfferChunk offers every entry of a chunk seen at stage. It never blocks.
func (h *Hub) OfferChunk(stage string, c *chunk.Chunk) {
	taps := h.active(stage)
	if taps == nil {
		return
	}
	for off := 0; off < len(c.Entries); {
		e, next, err := chunk.ReadEntry(c.Entries, off)
		if err != nil {
			return
		}
		off = next
		for _, t := range taps {
			h.offer(t, c.Tag, e)
		}
	}
}

// Offer offers records seen at stage, each with its tag. It never blocks.
func (h *Hub) Offer(stage string, n int, rec func(i int) (string, chunk.Entry)) {
	taps := h.active(stage)
	if taps == nil {
		return
	}
	for i := range n {
		tag, e := rec(i)
		for _, t := range taps {
			h.offer(t, tag, e)
		}
	}
}

func (h *Hub) offer(t *Tap, tag string, e chunk.Entry) {
	if t.q.Limit > 0 && t.left.Load() <= 0 {
		return
	}
	if !t.match.Match(tag) {
		return
	}
	if t.cond != nil {
		if ok, err := t.cond.Eval(tag, e.Record); err != nil || !ok {
			return
		}
	}
	if t.lim != nil && !t.lim.Allow() {
		h.records.WithLabelValues("rate").Inc()
		return
	}
	t.mu.Lock()
	line, err := t.enc.AppendLine(nil, tag, e)
	t.mu.Unlock()
	if err != nil {
		return
	}
	if t.q.Limit > 0 && t.left.Add(-1) < 0 {
		return
	}
	select {
	case t.lines <- line:
		h.records.WithLabelValues("sent").Inc()
	default:
		if t.q.Limit > 0 {
			t.left.Add(1) // not sent: it does not count toward the limit
		}
		h.records.WithLabelValues("full").Inc()
	}
}

// Stream writes a tap's lines with emit until ctx ends, the limit is
// reached or emit fails (the client went away).
func (t *Tap) Stream(ctx context.Context, emit func([]byte) error) error {
	sent := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case line := <-t.lines:
			if err := emit(line); err != nil {
				return err
			}
			sent++
			if t.q.Limit > 0 && sent >= t.q.Limit {
				return nil
			}
		}
	}
}
