// Package multiline joins the lines of one event (a stack trace, a panic, a
// line the runtime split) into one record, at ingest, per connection and
// stream, as Fluentd's concat filter and Fluent Bit's multiline parsers do.
//
// A Joiner is pure: entries in, entries out, no goroutines and no clock of
// its own. It keeps the open groups of one connection between chunks and
// tells which chunks still have lines in an open group, so that the caller
// acknowledges a chunk only once every one of its lines is stored.
package multiline

import (
	"bytes"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// Flush reasons, metric label values.
const (
	ReasonEnded   = "ended"   // the parser saw the group end
	ReasonTimeout = "timeout" // flush_interval
	ReasonLines   = "lines"   // max_lines
	ReasonBytes   = "bytes"   // max_bytes
	ReasonMemory  = "memory"  // max_open_bytes of the connection
	ReasonClose   = "close"   // the connection ended, or shutdown
)

// Metrics are the joining counters, shared by every connection.
type Metrics struct {
	groups *prometheus.CounterVec
	lines  prometheus.Counter
}

// NewMetrics registers the counters (r may be nil).
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		groups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_multiline_groups_total",
			Help: "Joined groups stored, by why they were stored: ended, timeout (flush_interval), lines or bytes (the group's bounds), memory (the connection's max_open_bytes), close (connection end or shutdown)."}, []string{"reason"}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_multiline_lines_joined_total",
			Help: "Lines that went into joined groups."}),
	}
	for _, r := range []string{ReasonEnded, ReasonTimeout, ReasonLines, ReasonBytes, ReasonMemory, ReasonClose} {
		m.groups.WithLabelValues(r)
	}
	if r != nil {
		r.MustRegister(m.groups, m.lines)
	}
	return m
}

// Flushed is a chunk of groups stored outside Add (by time, memory or at
// the end): one tag, its entries, and an id for deduplication.
type Flushed struct {
	Tag     string
	ID      string
	Entries []byte
	Count   int
}

type group struct {
	tag    string
	stream []byte // the stream keys' encoded values
	raw    []byte // the first entry, copied
	text   []byte // the joined text so far
	lines  int
	lastNL bool // the last line ended with a newline
	state  int
	opened time.Time
	refs   []uint64
	id     string // the chunk id where the group began
}

// Joiner joins the lines of one connection. It is not safe for concurrent
// use.
type Joiner struct {
	cfg        *Config
	m          *machine
	met        *Metrics
	key        []byte
	streamKeys [][]byte
	sep        []byte
	groups     []*group // open, oldest first
	// names are the fields scan looks for: the key, the stream keys, then
	// _p and logtag; vals their values in the entry scanned last.
	names     [][]byte
	vals      [][]byte
	asIs      bool // the last Add handed out every entry as it came
	openBytes int
	holds     map[uint64]int
	released  []uint64
	stream    []byte // scratch
}

// New returns a joiner; cfg must be valid (Validate) with defaults set.
func New(cfg *Config, met *Metrics) (*Joiner, error) {
	m, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	if met == nil {
		met = NewMetrics(nil)
	}
	j := &Joiner{cfg: cfg, m: m, met: met, key: []byte(cfg.Key), sep: []byte(*cfg.Separator), holds: map[uint64]int{}}
	for _, k := range cfg.StreamKeys {
		j.streamKeys = append(j.streamKeys, []byte(k))
	}
	if m.partialJoin() {
		j.sep = nil
	}
	j.names = append(append([][]byte{j.key}, j.streamKeys...), []byte("_p"), []byte("logtag"))
	j.vals = make([][]byte, len(j.names))
	return j, nil
}

// scan reads the entry at off in one pass over its record's top-level
// fields (the entries were validated at ingest): it fills j.vals with the
// encoded values of the key, the stream keys and the partial-line flags
// (_p, logtag), nil for the missing ones, and returns the whole entry.
func (j *Joiner) scan(b []byte, off int) (raw []byte, next int, err error) {
	clear(j.vals)
	n, p, err := msgp.ReadArrayHeader(b, off)
	if err != nil || n != 2 {
		return nil, 0, fmt.Errorf("multiline: entry at %d: not [time, record]", off)
	}
	if p, err = msgp.Skip(b, p); err != nil { // the time, or [time, meta]
		return nil, 0, err
	}
	cnt, p, err := msgp.ReadMapHeader(b, p)
	if err != nil {
		return nil, 0, fmt.Errorf("multiline: entry at %d: record is not a map", off)
	}
	for i := 0; i < cnt; i++ {
		k, v, err := msgp.ReadBytes(b, p)
		if err != nil {
			return nil, 0, err
		}
		end, err := msgp.Skip(b, v)
		if err != nil {
			return nil, 0, err
		}
		for x, name := range j.names {
			if j.vals[x] == nil && bytes.Equal(k, name) {
				j.vals[x] = b[v:end]
			}
		}
		p = end
	}
	return b[off:p], p, nil
}

func str(v []byte) ([]byte, bool) {
	s, _, err := msgp.ReadBytes(v, 0)
	return s, err == nil
}

// Add runs one chunk's entries through the joiner and appends to out what
// is to be stored now: lines in no group, and the groups that ended. ref
// identifies the chunk for Held and Released; id is its chunk id.
func (j *Joiner) Add(out []byte, tag, id string, entries []byte, ref uint64, now time.Time) (_ []byte, n int, err error) {
	j.asIs = true
	for off := 0; off < len(entries); {
		raw, next, err := j.scan(entries, off)
		if err != nil {
			return out, n, err
		}
		off = next
		line, isStr := str(j.vals[0])
		if j.vals[0] == nil || !isStr {
			out = append(out, raw...) // not a line: stored as it is
			n++
			continue
		}
		j.stream = j.stream[:0]
		for k := range j.streamKeys {
			j.stream = append(append(j.stream, j.vals[1+k]...), 0)
		}
		text, nl := trimNewline(line)
		partial := false
		switch j.m.kind {
		case kindDocker:
			partial = !nl
		case kindCRI:
			p := j.vals[len(j.vals)-2]
			if p == nil {
				p = j.vals[len(j.vals)-1]
			}
			ps, _ := str(p)
			partial = len(ps) == 1 && ps[0] == 'P'
		}
		gi := j.find(tag, j.stream)
		for {
			var g *group
			state := 0
			if gi >= 0 {
				g = j.groups[gi]
				state = g.state
			}
			act, nextState := j.m.decide(g != nil, state, text, partial)
			if act != single {
				j.asIs = false
			}
			switch act {
			case single:
				out = append(out, raw...)
				n++
			case open:
				g = j.begin(tag, id, raw, now)
				j.addLine(g, line, nl, ref)
				g.state = nextState
				gi = len(j.groups) - 1
				out, n = j.bounded(out, n, gi)
			case join:
				j.addLine(g, line, nl, ref)
				g.state = nextState
				out, n = j.bounded(out, n, gi)
			case joinClose:
				j.addLine(g, line, nl, ref)
				out, n = j.emit(out, n, gi, ReasonEnded)
			case closeRedo:
				out, n = j.emit(out, n, gi, ReasonEnded)
				gi = -1
				continue
			}
			break
		}
	}
	return out, n, nil
}

// trimNewline takes one trailing "\n" (or "\r\n") off a line.
func trimNewline(line []byte) ([]byte, bool) {
	if l := len(line); l > 0 && line[l-1] == '\n' {
		line = line[:l-1]
		if l := len(line); l > 0 && line[l-1] == '\r' {
			line = line[:l-1]
		}
		return line, true
	}
	return line, false
}

func (j *Joiner) find(tag string, stream []byte) int {
	for i, g := range j.groups {
		if g.tag == tag && bytes.Equal(g.stream, stream) {
			return i
		}
	}
	return -1
}

func (j *Joiner) begin(tag, id string, raw []byte, now time.Time) *group {
	g := &group{tag: tag, stream: append([]byte(nil), j.stream...), raw: append([]byte(nil), raw...), opened: now, id: id}
	j.groups = append(j.groups, g)
	return g
}

func (j *Joiner) addLine(g *group, line []byte, nl bool, ref uint64) {
	before := len(g.text)
	if j.sep == nil {
		g.text = append(g.text, line...) // partial lines: as they are
	} else {
		if g.lines > 0 {
			g.text = append(g.text, j.sep...)
		}
		t, _ := trimNewline(line)
		g.text = append(g.text, t...)
	}
	g.lastNL = nl
	g.lines++
	j.openBytes += len(g.text) - before
	if len(g.refs) == 0 || g.refs[len(g.refs)-1] != ref {
		g.refs = append(g.refs, ref)
		j.holds[ref]++
	}
	j.met.lines.Inc()
}

// bounded stores group gi if it reached max_lines or max_bytes.
func (j *Joiner) bounded(out []byte, n, gi int) ([]byte, int) {
	g := j.groups[gi]
	switch {
	case g.lines >= j.cfg.MaxLines:
		return j.emit(out, n, gi, ReasonLines)
	case len(g.text) >= int(j.cfg.MaxBytes):
		return j.emit(out, n, gi, ReasonBytes)
	}
	return out, n
}

// emit appends group gi as one entry, closes it and releases its chunks.
func (j *Joiner) emit(out []byte, n, gi int, reason string) ([]byte, int) {
	g := j.groups[gi]
	j.groups = append(j.groups[:gi], j.groups[gi+1:]...)
	j.openBytes -= len(g.text)
	out = j.appendEntry(out, g)
	for _, ref := range g.refs {
		if j.holds[ref]--; j.holds[ref] <= 0 {
			delete(j.holds, ref)
			j.released = append(j.released, ref)
		}
	}
	j.met.groups.WithLabelValues(reason).Inc()
	return out, n + 1
}

// appendEntry appends the group's entry: the first line's entry as it came
// when the group has one line, else its time and record with the key set
// to the joined text.
func (j *Joiner) appendEntry(out []byte, g *group) []byte {
	e, _, err := chunk.ReadEntry(g.raw, 0)
	if err != nil || g.lines == 1 {
		return append(out, g.raw...)
	}
	text := g.text
	if j.sep != nil && g.lastNL {
		text = append(text, '\n')
	}
	out = chunk.AppendEntryHead(out, e)
	cnt, off, _ := msgp.ReadMapHeader(e.Record, 0)
	out = msgp.AppendMapHeader(out, cnt)
	for i := 0; i < cnt; i++ {
		k, v, _ := msgp.ReadBytes(e.Record, off)
		end, _ := msgp.Skip(e.Record, v)
		out = append(out, e.Record[off:v]...)
		if bytes.Equal(k, j.key) {
			out = msgp.AppendStrBytes(out, text)
		} else {
			out = append(out, e.Record[v:end]...)
		}
		off = end
	}
	return out
}

// AsIs reports whether the last Add handed out its chunk's entries exactly
// as they came (no line went into a group), so that the caller may store the
// chunk itself instead of the copy.
func (j *Joiner) AsIs() bool { return j.asIs }

// Held reports whether an open group holds lines of chunk ref.
func (j *Joiner) Held(ref uint64) bool { return j.holds[ref] > 0 }

// Released returns the chunks whose last open group was stored since the
// last call (their lines are all in entries handed out now).
func (j *Joiner) Released() []uint64 {
	r := j.released
	j.released = nil
	return r
}

// Open is the number of open groups and the bytes they hold.
func (j *Joiner) Open() (groups, bytes int) { return len(j.groups), j.openBytes }

// Expired stores the groups open for flush_interval or longer at now, and
// with all, every group (the connection ends); over max_open_bytes it also
// stores the oldest groups until the rest fit.
func (j *Joiner) Expired(now time.Time, all bool) []Flushed {
	var out []Flushed
	add := func(gi int, reason string) {
		g := j.groups[gi]
		k := -1
		for i := range out {
			if out[i].Tag == g.tag {
				k = i
			}
		}
		if k < 0 {
			out = append(out, Flushed{Tag: g.tag, ID: g.id})
			k = len(out) - 1
		}
		out[k].Entries, out[k].Count = j.emit(out[k].Entries, out[k].Count, gi, reason)
	}
	for gi := 0; gi < len(j.groups); {
		switch {
		case all:
			add(gi, ReasonClose)
		case now.Sub(j.groups[gi].opened) >= j.cfg.FlushInterval:
			add(gi, ReasonTimeout)
		default:
			gi++
		}
	}
	for len(j.groups) > 0 && j.openBytes > int(j.cfg.MaxOpenBytes) {
		add(0, ReasonMemory)
	}
	for i := range out {
		if out[i].ID != "" {
			out[i].ID += "/ml"
		}
	}
	return out
}
