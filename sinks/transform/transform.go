// Package transform reshapes records: a pipeline of steps (set, add, rename,
// copy, remove, keep, lift, nest, drop, redact), each with an optional
// condition, that sluice runs globally after enrichment and per sink after
// its route. See docs/TRANSFORMS.md.
//
// Steps work on the msgpack record: only the maps a step reaches into are
// opened, everything else is copied as it came, and a pipeline reuses its
// buffers, so that in steady state the steps without expressions allocate
// nothing. A step that fails on one record (an expression error, a
// template whose field is missing, a path through a value that is not a
// map) leaves the record as it was before that step and is counted; the
// pipeline goes on with the next step.
package transform

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
	"gopkg.in/yaml.v3"

	"github.com/sluicelog/sluice/internal/fieldtpl"
	"github.com/sluicelog/sluice/internal/msgp"
	"github.com/sluicelog/sluice/sinks/route"
)

// Metrics are the transform counters, shared by every pipeline.
type Metrics struct {
	errors     *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	redactions *prometheus.CounterVec
}

// NewMetrics registers the transform counters.
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_transform_errors_total",
			Help: "Steps that failed on a record and left it as it was, by pipeline (global or the sink) and step (index:operation)."}, []string{"pipeline", "step"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_transform_dropped_total",
			Help: "Records dropped by a drop step, by pipeline and step."}, []string{"pipeline", "step"}),
		redactions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_transform_redactions_total",
			Help: "Secrets replaced, by pipeline and rule."}, []string{"pipeline", "rule"}),
	}
	if r != nil {
		r.MustRegister(m.errors, m.dropped, m.redactions)
	}
	return m
}

// Pipeline is a compiled list of steps; it is safe for concurrent use.
type Pipeline struct {
	steps []*step
	docs  sync.Pool // of *doc
	redax []*redactor
}

type opKind uint8

const (
	opSet opKind = iota
	opAdd
	opRename
	opCopy
	opRemove
	opKeep
	opLift
	opNest
	opDrop
	opRedact
)

type step struct {
	op     opKind
	cond   *route.Condition
	errors prometheus.Counter
	drops  prometheus.Counter

	values []value    // set, add
	pairs  []pathPair // rename, copy
	paths  []path     // remove, redact fields
	keep   *trie
	lift   path
	prefix []byte
	globs  []string // nest
	under  []byte
	cut    string
	red    *redactor
}

// path is a parsed dotted path; all means it ended in ".*".
type path struct {
	parts [][]byte
	all   bool
}

type pathPair struct{ from, to path }

type value struct {
	path    path
	literal []byte // encoded
	tpl     *fieldtpl.Template
	expr    *route.Expr
}

// Compile compiles steps for the pipeline named name (global or a sink's
// name, a metric label). Errors start with the step's index and field.
// m may be nil (validation only).
func Compile(steps []Step, name string, m *Metrics) (*Pipeline, error) {
	if m == nil {
		m = NewMetrics(nil)
	}
	p := &Pipeline{}
	for i := range steps {
		s, err := compileStep(&steps[i], name, i, m)
		if err != nil {
			return nil, fmt.Errorf("[%d].%w", i, err)
		}
		if s.red != nil {
			p.redax = append(p.redax, s.red)
		}
		p.steps = append(p.steps, s)
	}
	p.docs.New = func() any { return &doc{} }
	return p, nil
}

func compileStep(c *Step, name string, i int, m *Metrics) (*step, error) {
	op, err := c.op()
	if err != nil {
		return nil, err
	}
	label := fmt.Sprintf("%d:%s", i, op)
	s := &step{errors: m.errors.WithLabelValues(name, label)}
	if c.Condition != "" {
		if s.cond, err = route.CompileCondition(c.Condition); err != nil {
			return nil, fmt.Errorf("condition: %w", err)
		}
	}
	wrap := func(field string, err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("%s.%s: %w", op, field, err)
	}
	switch op {
	case "set", "add":
		s.op = opSet
		fields := c.Set
		if op == "add" {
			s.op, fields = opAdd, c.Add
		}
		if len(fields) == 0 {
			return nil, fmt.Errorf("%s: no fields", op)
		}
		for _, f := range fields {
			v, err := compileValue(f)
			if err != nil {
				return nil, wrap(f.Name, err)
			}
			s.values = append(s.values, v)
		}
	case "rename", "copy":
		s.op = opRename
		pairs := c.Rename
		if op == "copy" {
			s.op, pairs = opCopy, c.Copy
		}
		if len(pairs) == 0 {
			return nil, fmt.Errorf("%s: no fields", op)
		}
		for _, pr := range pairs {
			from, err := parsePath(pr.From, true)
			if err != nil {
				return nil, wrap(pr.From, err)
			}
			to, err := parsePath(pr.To, true)
			if pr.To == "*" {
				to, err = path{all: true}, nil
			}
			if err != nil {
				return nil, wrap(pr.From, err)
			}
			if from.all != to.all {
				return nil, wrap(pr.From, fmt.Errorf("both sides end in .* or neither (%q: %q)", pr.From, pr.To))
			}
			if pr.From == pr.To || strings.HasPrefix(pr.To, strings.TrimSuffix(pr.From, "*")+".") && !from.all {
				return nil, wrap(pr.From, fmt.Errorf("cannot move a field into itself (%q: %q)", pr.From, pr.To))
			}
			s.pairs = append(s.pairs, pathPair{from, to})
		}
	case "remove":
		s.op = opRemove
		if len(c.Remove) == 0 {
			return nil, fmt.Errorf("remove: no fields")
		}
		for _, f := range c.Remove {
			pp, err := parsePath(f, true)
			if err != nil {
				return nil, wrap(f, err)
			}
			s.paths = append(s.paths, pp)
		}
	case "keep":
		s.op = opKeep
		if len(c.Keep) == 0 {
			return nil, fmt.Errorf("keep: no fields (it would empty every record)")
		}
		s.keep = &trie{}
		for _, f := range c.Keep {
			pp, err := parsePath(f, true)
			if err != nil {
				return nil, wrap(f, err)
			}
			s.keep.insert(pp)
		}
	case "lift":
		s.op = opLift
		pp, err := parsePath(c.Lift.Field, false)
		if err != nil {
			return nil, wrap("field", err)
		}
		s.lift, s.prefix = pp, []byte(c.Lift.Prefix)
	case "nest":
		s.op = opNest
		if len(c.Nest.Fields) == 0 {
			return nil, fmt.Errorf("nest.fields: none")
		}
		if c.Nest.Under == "" || strings.Contains(c.Nest.Under, ".") {
			return nil, fmt.Errorf("nest.under: want a top-level field name")
		}
		s.globs, s.under, s.cut = c.Nest.Fields, []byte(c.Nest.Under), c.Nest.RemovePrefix
	case "drop":
		s.op = opDrop
		if s.cond == nil {
			return nil, fmt.Errorf("drop: needs a condition (it would drop every record)")
		}
		s.drops = m.dropped.WithLabelValues(name, label)
	case "redact":
		s.op = opRedact
		for _, f := range c.Redact.Fields {
			pp, err := parsePath(f, false)
			if err != nil {
				return nil, wrap("fields", err)
			}
			s.paths = append(s.paths, pp)
		}
		if s.red, err = newRedactor(c.Redact, name, m); err != nil {
			return nil, fmt.Errorf("redact.%w", err)
		}
	}
	return s, nil
}

func parsePath(p string, star bool) (path, error) {
	all := false
	if star && strings.HasSuffix(p, ".*") {
		p, all = strings.TrimSuffix(p, ".*"), true
	}
	parts, err := splitPath(p)
	if err != nil {
		return path{}, err
	}
	for _, s := range parts {
		if bytes.ContainsRune(s, '*') {
			return path{}, fmt.Errorf("path %q: * only as the last part", p)
		}
	}
	return path{parts: parts, all: all}, nil
}

var hostname = func() string { h, _ := os.Hostname(); return h }()

// compileValue compiles a set/add value: {expr: ...}, text with ${...}
// references, or a literal.
func compileValue(f Field) (value, error) {
	pp, err := parsePath(f.Name, false)
	if err != nil {
		return value{}, err
	}
	v := value{path: pp}
	n := &f.Value
	switch {
	case n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "expr":
		if v.expr, err = route.CompileExpr(n.Content[1].Value); err != nil {
			return value{}, fmt.Errorf("expr: %w", err)
		}
		return v, nil
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str" && strings.Contains(n.Value, "${"):
		text := strings.ReplaceAll(n.Value, "${hostname}", strings.ReplaceAll(hostname, "$", "$$"))
		t, err := fieldtpl.Parse(text)
		if err != nil {
			return value{}, err
		}
		if s, ok := t.Static(); ok {
			v.literal = msgp.AppendStr(nil, s)
		} else {
			v.tpl = t
		}
		return v, nil
	}
	var lit any
	if err := n.Decode(&lit); err != nil {
		return value{}, err
	}
	if v.literal, err = msgpack.Marshal(lit); err != nil {
		return value{}, err
	}
	return v, nil
}

// Len is the number of steps.
func (p *Pipeline) Len() int {
	if p == nil {
		return 0
	}
	return len(p.steps)
}

// Apply runs the pipeline on a msgpack record and appends the result to
// dst; keep false means a drop step dropped it. A record that is not a map
// is appended unchanged.
func (p *Pipeline) Apply(dst []byte, tag string, rec []byte) (out []byte, keep bool) {
	if p == nil || len(p.steps) == 0 {
		return append(dst, rec...), true
	}
	d := p.docs.Get().(*doc)
	defer p.docs.Put(d)
	if !d.reset(tag, rec) {
		return append(dst, rec...), true
	}
	for _, s := range p.steps {
		if s.cond != nil {
			ok, err := s.cond.Eval(tag, d.record())
			if err != nil {
				s.errors.Inc()
				continue
			}
			if !ok {
				continue
			}
		}
		if s.op == opDrop {
			s.drops.Inc()
			return dst, false
		}
		if !s.apply(d) {
			s.errors.Inc()
		}
	}
	if !d.changed {
		return append(dst, rec...), true
	}
	return d.encode(dst, root), true
}

// apply runs one step; false when it failed on this record (it then changed
// nothing that matters: failures are found before the first change, or the
// change was already complete for the fields before the failure).
func (s *step) apply(d *doc) bool {
	switch s.op {
	case opSet, opAdd:
		return s.setValues(d)
	case opRename, opCopy:
		ok := true
		for _, pr := range s.pairs {
			ok = move(d, pr, s.op == opRename) && ok
		}
		return ok
	case opRemove:
		for _, pp := range s.paths {
			i := d.find(pp.parts, false)
			switch {
			case i < 0:
			case pp.all:
				if d.open(i) {
					for c := d.nodes[i].first; c >= 0; c = d.nodes[c].next {
						if !d.nodes[c].dead {
							d.remove(c)
						}
					}
				}
			default:
				d.remove(i)
			}
		}
		return true
	case opKeep:
		s.keep.apply(d, root)
		return true
	case opLift:
		return lift(d, s.lift, s.prefix)
	case opNest:
		return nest(d, s.globs, s.under, s.cut)
	case opRedact:
		return s.redact(d)
	}
	return true
}

func (s *step) setValues(d *doc) bool {
	ok := true
	for k := range s.values {
		v := &s.values[k]
		if s.op == opAdd && d.find(v.path.parts, false) >= 0 {
			continue
		}
		var enc []byte
		switch {
		case v.literal != nil:
			enc = v.literal
		case v.tpl != nil:
			text, good := v.tpl.Append(d.text[:0], d.tag, d.record())
			d.text = text
			if !good {
				ok = false
				continue
			}
			start := len(d.scratch)
			d.scratch = msgp.AppendStrBytes(d.scratch, text)
			enc = d.scratch[start:]
		default:
			out, err := v.expr.Eval(d.tag, d.record())
			if err != nil {
				ok = false
				continue
			}
			b, err := msgpack.Marshal(out)
			if err != nil {
				ok = false
				continue
			}
			enc = b
		}
		i := d.find(v.path.parts, true)
		if i < 0 {
			ok = false
			continue
		}
		d.set(i, enc)
	}
	return ok
}

// move renames (or copies) a field, or with .* every key of a map.
func move(d *doc, pr pathPair, rename bool) bool {
	if !pr.from.all {
		i := d.find(pr.from.parts, false)
		if i < 0 {
			return true // nothing to move
		}
		v := d.value(i)
		j := d.find(pr.to.parts, true)
		if j < 0 {
			return false
		}
		d.set(j, v)
		if rename {
			d.remove(i)
		}
		return true
	}
	i := d.find(pr.from.parts, false)
	if i < 0 || !d.open(i) {
		return i < 0
	}
	to := int32(root)
	if len(pr.to.parts) > 0 {
		if to = d.find(pr.to.parts, true); to < 0 || !d.open(to) {
			return false
		}
	}
	for c := d.nodes[i].first; c >= 0; c = d.nodes[c].next {
		if d.nodes[c].dead || c == to {
			continue
		}
		put(d, to, d.nodes[c].key, d.value(c))
		if rename {
			d.remove(c)
		}
	}
	return true
}

// put sets field name of map node m, adding it when missing.
func put(d *doc, m int32, name, val []byte) {
	if c := d.child(m, name); c >= 0 {
		d.set(c, val)
		return
	}
	d.add(m, name, val)
	d.changed = true
}

// lift moves the keys of the map at p to the top level with a prefix.
func lift(d *doc, p path, prefix []byte) bool {
	i := d.find(p.parts, false)
	if i < 0 {
		return true
	}
	if !d.open(i) {
		return false
	}
	for c := d.nodes[i].first; c >= 0; c = d.nodes[c].next {
		if d.nodes[c].dead {
			continue
		}
		name := d.nodes[c].key
		if len(prefix) > 0 {
			start := len(d.scratch)
			d.scratch = append(append(d.scratch, prefix...), name...)
			name = d.scratch[start:]
		}
		put(d, root, name, d.value(c))
	}
	d.remove(i)
	return true
}

// nest moves the top-level fields matching globs under a key.
func nest(d *doc, globs []string, under []byte, cut string) bool {
	u := d.child(root, under)
	for c := d.nodes[root].first; c >= 0; c = d.nodes[c].next {
		n := &d.nodes[c]
		if n.dead || c == u || !matchAny(globs, n.key) {
			continue
		}
		if u < 0 {
			u = d.add(root, under, nil)
			d.changed = true
		} else if !d.open(u) {
			return false
		}
		name := d.nodes[c].key
		if cut != "" && bytes.HasPrefix(name, []byte(cut)) && len(name) > len(cut) {
			name = name[len(cut):]
		}
		put(d, u, name, d.value(c))
		d.remove(c)
	}
	return true
}

// matchAny reports whether name matches a glob (* is any run of characters).
func matchAny(globs []string, name []byte) bool {
	for _, g := range globs {
		if glob(g, name) {
			return true
		}
	}
	return false
}

func glob(pat string, s []byte) bool {
	star := strings.IndexByte(pat, '*')
	if star < 0 {
		return string(s) == pat
	}
	if len(s) < star || string(s[:star]) != pat[:star] {
		return false
	}
	rest, s := pat[star+1:], s[star:]
	for i := 0; i <= len(s); i++ {
		if glob(rest, s[i:]) {
			return true
		}
	}
	return false
}

// trie is a compiled keep list.
type trie struct {
	name  []byte
	whole bool // keep this field whole
	kids  []*trie
}

func (t *trie) insert(p path) {
	at := t
	for _, part := range p.parts {
		var next *trie
		for _, k := range at.kids {
			if bytes.Equal(k.name, part) {
				next = k
			}
		}
		if next == nil {
			next = &trie{name: part}
			at.kids = append(at.kids, next)
		}
		at = next
	}
	at.whole = true
}

// apply removes the children of map node m that the trie does not keep.
func (t *trie) apply(d *doc, m int32) {
	for c := d.nodes[m].first; c >= 0; c = d.nodes[c].next {
		if d.nodes[c].dead {
			continue
		}
		var k *trie
		for _, kid := range t.kids {
			if bytes.Equal(kid.name, d.nodes[c].key) {
				k = kid
				break
			}
		}
		switch {
		case k == nil:
			d.remove(c)
		case k.whole:
		case d.open(c):
			k.apply(d, c)
		default:
			d.remove(c) // a value where the list names fields inside it
		}
	}
}
