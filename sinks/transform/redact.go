package transform

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// rule finds secrets in a string.
type rule struct {
	name    string
	re      *regexp.Regexp
	maybe   func(s []byte) bool // a cheap test that must pass before the regexp runs
	valid   func(secret []byte) bool
	counter prometheus.Counter
}

type redactor struct {
	rules []*rule
	mask  []byte
	key   []byte // non-nil: replace by a keyed hash
}

// Built-in rules. Each has a cheap pre-test so that a string with no
// candidate costs a byte scan, not a regexp run.
var builtins = map[string]func() *rule{
	"credit_card": func() *rule {
		return &rule{re: regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`), maybe: digitRun(13), valid: luhn}
	},
	"email": func() *rule {
		return &rule{re: regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`),
			maybe: func(s []byte) bool { return bytes.IndexByte(s, '@') > 0 }}
	},
	"bearer_token": func() *rule {
		return &rule{re: regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)`),
			maybe: func(s []byte) bool { return bytes.Contains(s, []byte("earer")) || bytes.Contains(s, []byte("EARER")) }}
	},
	"aws_access_key_id": func() *rule {
		return &rule{re: regexp.MustCompile(`\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b`),
			maybe: func(s []byte) bool {
				for _, p := range awsKeyPrefixes {
					if bytes.Contains(s, p) {
						return true
					}
				}
				return false
			}}
	},
}

var awsKeyPrefixes = [][]byte{[]byte("AKIA"), []byte("ASIA"), []byte("ABIA"), []byte("ACCA")}

// digitRun reports whether s has n digits with at most single spaces or
// dashes between them.
func digitRun(n int) func([]byte) bool {
	return func(s []byte) bool {
		run := 0
		for i, c := range s {
			switch {
			case c >= '0' && c <= '9':
				if run++; run >= n {
					return true
				}
			case (c == ' ' || c == '-') && i > 0 && s[i-1] >= '0' && s[i-1] <= '9':
			default:
				run = 0
			}
		}
		return false
	}
}

// luhn checks a card number's digits (separators ignored).
func luhn(s []byte) bool {
	sum, n := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if n%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
	}
	return n >= 13 && n <= 19 && sum%10 == 0
}

func newRedactor(c *Redact, pipeline string, m *Metrics) (*redactor, error) {
	r := &redactor{mask: []byte(c.Mask)}
	if c.Mask == "" {
		r.mask = []byte("[REDACTED]")
	}
	switch c.With {
	case "", "mask":
	case "hash":
		if c.HashKey == "" {
			return nil, errors.New("hash_key: must be set with with: hash")
		}
		r.key = []byte(c.HashKey)
	default:
		return nil, fmt.Errorf("with: %q is not one of mask, hash", c.With)
	}
	for _, name := range c.Patterns {
		mk, ok := builtins[name]
		if !ok {
			return nil, fmt.Errorf("patterns: %q is not one of credit_card, email, bearer_token, aws_access_key_id", name)
		}
		ru := mk()
		ru.name = name
		r.rules = append(r.rules, ru)
	}
	for i, rc := range c.Rules {
		if rc.Name == "" {
			return nil, fmt.Errorf("rules[%d].name: must be set", i)
		}
		re, err := regexp.Compile(rc.Regex)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].regex: %w", i, err)
		}
		if re.NumSubexp() > 1 {
			return nil, fmt.Errorf("rules[%d].regex: at most one capture group (the part replaced)", i)
		}
		ru := &rule{name: rc.Name, re: re}
		if lit, _ := re.LiteralPrefix(); lit != "" {
			l := []byte(lit)
			ru.maybe = func(s []byte) bool { return bytes.Contains(s, l) }
		}
		r.rules = append(r.rules, ru)
	}
	if len(r.rules) == 0 {
		return nil, errors.New("patterns: no patterns and no rules")
	}
	for _, ru := range r.rules {
		ru.counter = m.redactions.WithLabelValues(pipeline, ru.name)
	}
	return r, nil
}

// str redacts one string: the result goes to dst; changed false leaves dst
// as it was.
func (r *redactor) str(dst, s []byte) (_ []byte, changed bool) {
	cur := s
	start := len(dst)
	for _, ru := range r.rules {
		if ru.maybe != nil && !ru.maybe(cur) {
			continue
		}
		locs := ru.re.FindAllSubmatchIndex(cur, -1)
		if locs == nil {
			continue
		}
		out := dst[:start]
		if changed {
			// cur is in dst from a previous rule: work from a copy.
			cur = append([]byte(nil), cur...)
		}
		last, hits := 0, 0
		for _, loc := range locs {
			a, b := loc[0], loc[1]
			if len(loc) >= 4 && loc[2] >= 0 {
				a, b = loc[2], loc[3]
			}
			if ru.valid != nil && !ru.valid(cur[a:b]) {
				continue
			}
			out = append(out, cur[last:a]...)
			out = r.replace(out, cur[a:b])
			last = b
			hits++
		}
		if hits == 0 {
			continue
		}
		out = append(out, cur[last:]...)
		ru.counter.Add(float64(hits))
		dst, cur, changed = out, out[start:], true
	}
	if !changed {
		return dst[:start], false
	}
	return dst, true
}

func (r *redactor) replace(dst, secret []byte) []byte {
	if r.key == nil {
		return append(dst, r.mask...)
	}
	h := hmac.New(sha256.New, r.key)
	h.Write(secret)
	var sum [sha256.Size]byte
	dst = append(dst, "[hmac:"...)
	dst = hex.AppendEncode(dst, h.Sum(sum[:0])[:8])
	return append(dst, ']')
}

// value redacts every string in an encoded value (map keys excepted) and
// appends the result to dst; changed false leaves dst as it was.
func (r *redactor) value(dst, v []byte) (_ []byte, changed bool, err error) {
	start := len(dst)
	dst, changed, _, err = r.walk(dst, v, 0)
	if err != nil || !changed {
		return dst[:start], false, err
	}
	return dst, true, nil
}

// walk copies the value at off to dst, redacting strings, and returns the
// offset after it.
func (r *redactor) walk(dst, b []byte, off int) (_ []byte, changed bool, next int, err error) {
	t, err := msgp.Peek(b, off)
	if err != nil {
		return dst, false, 0, err
	}
	switch t {
	case msgp.TypeStr:
		s, next, err := msgp.ReadStr(b, off)
		if err != nil {
			return dst, false, 0, err
		}
		mark := len(dst)
		var tmp []byte
		tmp, changed = r.str(dst, s)
		if !changed {
			return append(dst[:mark], b[off:next]...), false, next, nil
		}
		// tmp[mark:] is the new text: move it behind its header.
		text := append([]byte(nil), tmp[mark:]...)
		dst = msgp.AppendStrBytes(tmp[:mark], text)
		return dst, true, next, nil
	case msgp.TypeMap:
		n, next, err := msgp.ReadMapHeader(b, off)
		if err != nil {
			return dst, false, 0, err
		}
		dst = msgp.AppendMapHeader(dst, n)
		for i := 0; i < n; i++ {
			k, err := msgp.Skip(b, next)
			if err != nil {
				return dst, false, 0, err
			}
			dst = append(dst, b[next:k]...)
			var c bool
			if dst, c, next, err = r.walk(dst, b, k); err != nil {
				return dst, false, 0, err
			}
			changed = changed || c
		}
		return dst, changed, next, nil
	case msgp.TypeArray:
		n, next, err := msgp.ReadArrayHeader(b, off)
		if err != nil {
			return dst, false, 0, err
		}
		dst = msgp.AppendArrayHeader(dst, n)
		for i := 0; i < n; i++ {
			var c bool
			if dst, c, next, err = r.walk(dst, b, next); err != nil {
				return dst, false, 0, err
			}
			changed = changed || c
		}
		return dst, changed, next, nil
	}
	next, err = msgp.Skip(b, off)
	if err != nil {
		return dst, false, 0, err
	}
	return append(dst, b[off:next]...), false, next, nil
}

// redact applies the step's redactor to its fields, or to every string.
func (s *step) redact(d *doc) bool {
	if len(s.paths) == 0 {
		out, changed, err := s.red.value(d.spare[:0], d.record())
		if err != nil {
			return false
		}
		d.spare = out
		if changed {
			// The doc starts over from the redacted record; the buffer it
			// leaves is the next one's.
			d.spare, d.whole = d.whole, out
			d.reset(d.tag, d.whole)
			d.changed = true
		}
		return true
	}
	ok := true
	for _, pp := range s.paths {
		i := d.find(pp.parts, false)
		if i < 0 {
			continue
		}
		start := len(d.scratch)
		out, changed, err := s.red.value(d.scratch, d.value(i))
		if err != nil {
			ok = false
			continue
		}
		d.scratch = out // as grown: its capacity is kept for the next record
		if changed {
			d.set(i, d.scratch[start:])
		}
	}
	return ok
}

// Scrub applies every redact step of the pipelines to every string of a
// record (map keys excepted), whatever fields the steps name: what is
// stored outside the sinks' pipelines (dead letters) keeps no secret that
// any rule would find. It appends the result, or the record unchanged, to
// dst.
func Scrub(dst, rec []byte, pipelines ...*Pipeline) []byte {
	cur := rec
	for _, p := range pipelines {
		if p == nil {
			continue
		}
		for _, r := range p.redax {
			out, changed, err := r.value(nil, cur)
			if err != nil {
				return append(dst, cur...)
			}
			if changed {
				cur = out
			}
		}
	}
	return append(dst, cur...)
}

// Redacts reports whether the pipeline has a redact step.
func (p *Pipeline) Redacts() bool { return p != nil && len(p.redax) > 0 }

// ScrubEntry appends a [time, record] entry (with Fluent Bit's metadata
// when e has it) whose record is e's after Scrub.
func ScrubEntry(dst []byte, e chunk.Entry, pipelines ...*Pipeline) []byte {
	return Scrub(chunk.AppendEntryHead(dst, e), e.Record, pipelines...)
}
