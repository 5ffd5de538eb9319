// Package parser turns one log line (a string field of a record, such as
// log) into fields, appended as msgpack key/value pairs without building Go
// maps. Parsers are named and configured like Fluent Bit's [PARSER] sections
// (format json, regex or logfmt; time key, time format, time keep; types),
// and the builtins are Fluent Bit's conf/parsers.conf definitions.
//
// A Parser is immutable after New and safe for concurrent use. Parse never
// drops anything: a line it cannot parse is reported with ErrNoMatch and the
// caller keeps the record unparsed (and counts it).
package parser

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/sluicelog/sluice/internal/jsonmp"
	"github.com/sluicelog/sluice/internal/msgp"
)

// ErrNoMatch means the line is not in the parser's format; nothing was
// appended.
var ErrNoMatch = errors.New("parser: line does not match")

// The formats a Config may name.
const (
	FormatJSON   = "json"
	FormatRegex  = "regex"
	FormatLogfmt = "logfmt"
)

// Config describes one parser, as a Fluent Bit [PARSER] section does.
type Config struct {
	Name   string `yaml:"name"`
	Format string `yaml:"format"` // json, regex or logfmt
	// Regex is for format regex: its named groups become fields. Fluent Bit
	// (Onigmo, Ruby syntax) patterns are accepted: (?<name>...), \< and \>
	// for < and >, and an enclosing /.../ with optional i and m flags.
	Regex string `yaml:"regex"`
	// TimeKey is the field holding the event time. It defaults to "time" for
	// format regex and for any format with a TimeFormat; a json or logfmt
	// parser with neither has no time handling.
	TimeKey string `yaml:"time_key"`
	// TimeFormat is strptime-style as in Fluent Bit (see timeFormat); empty
	// means RFC 3339.
	TimeFormat string `yaml:"time_format"`
	// TimeKeep keeps the time field in the output after it was parsed.
	TimeKeep bool `yaml:"time_keep"`
	// Types converts fields: "code:integer size:integer ratio:float ok:bool
	// id:hex name:string". A value that does not convert stays a string.
	Types string `yaml:"types"`
}

// Validate reports the first problem, naming the field: "format: ...",
// "regex: ...", "time_format: ...", "types: ...".
func (c Config) Validate() error {
	_, err := New(c)
	return err
}

// Parser parses lines in one format.
type Parser struct {
	name     string
	format   string
	re       *regexp.Regexp
	match    matcher // a faster equivalent of re, or matchRegexp
	groups   []group
	timeKey  string
	tf       *timeFormat
	timeKeep bool
	types    []typeRule
	// now is the clock for formats without a year.
	now func() time.Time
}

// group is a named group of a regex parser.
type group struct {
	name   string
	idx    int
	kind   valueKind
	isTime bool
}

// New compiles c.
func New(c Config) (*Parser, error) {
	if c.Name == "" {
		return nil, errors.New("name: required")
	}
	p := &Parser{name: c.Name, format: c.Format, timeKeep: c.TimeKeep, now: time.Now}
	switch c.Format {
	case FormatJSON, FormatLogfmt:
		if c.Regex != "" {
			return nil, fmt.Errorf("regex: only for format regex, not %s", c.Format)
		}
	case FormatRegex:
		if c.Regex == "" {
			return nil, errors.New("regex: required for format regex")
		}
	case "":
		return nil, errors.New("format: required (json, regex or logfmt)")
	default:
		return nil, fmt.Errorf("format: unknown %q (want json, regex or logfmt)", c.Format)
	}
	types, err := parseTypes(c.Types)
	if err != nil {
		return nil, fmt.Errorf("types: %w", err)
	}
	p.types = types
	p.timeKey = c.TimeKey
	if p.timeKey == "" && (c.Format == FormatRegex || c.TimeFormat != "") {
		p.timeKey = "time"
	}
	if p.timeKey != "" {
		p.tf = rfc3339Format
		if c.TimeFormat != "" {
			if p.tf, err = compileTimeFormat(c.TimeFormat); err != nil {
				return nil, fmt.Errorf("time_format: %w", err)
			}
		}
	}
	if c.Format == FormatRegex {
		expr, err := translateRegex(c.Regex)
		if err != nil {
			return nil, fmt.Errorf("regex: %w", err)
		}
		if p.re, err = regexp.Compile(expr); err != nil {
			return nil, fmt.Errorf("regex: %w", err)
		}
		p.match = fastMatchers[expr]
		for i, name := range p.re.SubexpNames() {
			if name == "" {
				continue
			}
			p.groups = append(p.groups, group{name: name, idx: i, kind: p.kindOf([]byte(name)), isTime: name == p.timeKey})
		}
		if len(p.groups) == 0 {
			return nil, errors.New("regex: no named groups (?<name>...)")
		}
	}
	return p, nil
}

// Name returns the parser's name.
func (p *Parser) Name() string { return p.name }

// Parse parses line and appends its fields to dst as msgpack key/value pairs
// (no map header), returning the extended slice, the number of pairs, and
// the event time when the time field was found and parsed (hasTime). When
// the time parses and TimeKeep is off, the time field is left out. A time
// that does not parse stays a string field and hasTime is false.
//
// A line the parser cannot parse returns ErrNoMatch and dst unchanged (the
// bytes past len(dst) may have been written). One trailing "\n" or "\r\n"
// is ignored by the regex and logfmt formats, as Onigmo's $ does.
func (p *Parser) Parse(dst, line []byte) (out []byte, pairs int, t time.Time, hasTime bool, err error) {
	switch p.format {
	case FormatJSON:
		return p.parseJSON(dst, line)
	case FormatLogfmt:
		return p.parseLogfmt(dst, trimNewline(line))
	}
	return p.parseRegex(dst, trimNewline(line))
}

func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n > 1 && b[n-2] == '\r' {
			b = b[:n-2]
		}
	}
	return b
}

func (p *Parser) parseRegex(dst, line []byte) ([]byte, int, time.Time, bool, error) {
	var loc []int
	var fast [maxFastLoc]int
	if p.match != matchRegexp && 2*p.re.NumSubexp()+2 <= len(fast) {
		loc = fast[:2*p.re.NumSubexp()+2]
		switch p.match.match(line, loc) {
		case fastNo:
			loc = nil
		case fastUnsure:
			loc = p.re.FindSubmatchIndex(line)
		}
	} else {
		loc = p.re.FindSubmatchIndex(line)
	}
	if loc == nil {
		return dst, 0, time.Time{}, false, ErrNoMatch
	}
	out := dst
	pairs := 0
	var t time.Time
	hasTime := false
	for _, g := range p.groups {
		a, b := loc[2*g.idx], loc[2*g.idx+1]
		if a < 0 || a == b {
			continue // unmatched or empty: Fluent Bit leaves it out
		}
		v := line[a:b]
		if g.isTime && !hasTime {
			if tt, ok := p.tf.parse(v, p.now); ok {
				t, hasTime = tt, true
				if !p.timeKeep {
					continue
				}
			}
		}
		out = msgp.AppendStr(out, g.name)
		out = appendValue(out, v, g.kind)
		pairs++
	}
	return out, pairs, t, hasTime, nil
}

func (p *Parser) parseJSON(dst, line []byte) ([]byte, int, time.Time, bool, error) {
	start := len(dst)
	out, pairs, vOff, err := jsonmp.AppendObjectFind(dst, line, p.timeKey)
	if err != nil {
		return dst, 0, time.Time{}, false, ErrNoMatch
	}
	var t time.Time
	hasTime := false
	if vOff >= 0 {
		if v, _, err := msgp.ReadStr(out, vOff); err == nil {
			if t, hasTime = p.tf.parse(v, p.now); hasTime && !p.timeKeep {
				ve, err := skipValue(out, vOff)
				if err != nil {
					return dst, 0, time.Time{}, false, ErrNoMatch // cannot happen: jsonmp wrote it
				}
				ks := vOff - msgp.StrHeaderLen(len(p.timeKey)) - len(p.timeKey)
				out = append(out[:ks], out[ve:]...)
				pairs--
			}
		}
	}
	if len(p.types) == 0 {
		return out, pairs, t, hasTime, nil
	}
	// Walk the top-level pairs for typed fields.
	off := start
	var scratch [16]byte
	for i := 0; i < pairs; i++ {
		key, vs, err := msgp.ReadStr(out, off)
		if err != nil {
			return dst, 0, time.Time{}, false, ErrNoMatch // cannot happen: jsonmp writes str keys
		}
		ve, err := skipValue(out, vs)
		if err != nil {
			return dst, 0, time.Time{}, false, ErrNoMatch
		}
		if kind := p.kindOf(key); kind != kindString {
			if v, _, err := msgp.ReadStr(out, vs); err == nil {
				if r, ok := convert(scratch[:0], v, kind); ok {
					out = splice(out, vs, ve, r)
					ve = vs + len(r)
				}
			}
		}
		off = ve
	}
	return out, pairs, t, hasTime, nil
}

// skipValue is msgp.Skip with a fast path for the scalars and short
// strings of a log record: msgp.Skip zeroes a 2 KiB depth stack per call.
func skipValue(b []byte, off int) (int, error) {
	if off < len(b) {
		switch c := b[off]; {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
			return off + 1, nil
		case c >= 0xa0 && c <= 0xbf, c >= 0xd9 && c <= 0xdb:
			_, next, err := msgp.ReadStr(b, off)
			return next, err
		case c == 0xcb:
			if off+9 <= len(b) {
				return off + 9, nil
			}
		}
	}
	return msgp.Skip(b, off)
}

// splice replaces b[from:to] with r.
func splice(b []byte, from, to int, r []byte) []byte {
	d := len(r) - (to - from)
	switch {
	case d > 0:
		end := len(b)
		b = append(b, r[:d]...) // grow by d
		copy(b[to+d:], b[to:end])
	case d < 0:
		copy(b[from+len(r):], b[to:])
		b = b[:len(b)+d]
	}
	copy(b[from:], r)
	return b
}

// translateRegex turns a Fluent Bit (Onigmo, Ruby syntax) pattern into Go
// syntax: an enclosing /.../flags is removed (i and m become (?i) and (?s)),
// and the escapes \< and \>, which Go rejects, become < and >.
func translateRegex(s string) (string, error) {
	prefix := ""
	if len(s) >= 2 && s[0] == '/' {
		if end := strings.LastIndexByte(s, '/'); end > 0 {
			flags := s[end+1:]
			if strings.Trim(flags, "imx") == "" {
				s = s[1:end]
				for _, f := range flags {
					switch f {
					case 'i':
						prefix += "(?i)"
					case 'm':
						prefix += "(?s)"
					case 'x':
						return "", errors.New("extended (x) patterns are not supported")
					}
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if n := s[i+1]; n == '<' || n == '>' {
				b.WriteByte(n)
				i++
				continue
			}
			b.WriteByte(c)
			b.WriteByte(s[i+1])
			i++
			continue
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// Registry holds parsers by name.
type Registry struct {
	parsers map[string]*Parser
}

// NewRegistry returns the builtins plus custom parsers; a custom parser
// with a builtin's name replaces it. Errors name the parser:
// "parsers[2] (myapp): regex: ...".
func NewRegistry(custom []Config) (*Registry, error) {
	r := &Registry{parsers: make(map[string]*Parser)}
	for _, c := range Builtins() {
		p, err := New(c)
		if err != nil {
			return nil, fmt.Errorf("builtin parser %s: %w", c.Name, err)
		}
		r.parsers[c.Name] = p
	}
	seen := make(map[string]int)
	for i, c := range custom {
		if j, dup := seen[c.Name]; dup && c.Name != "" {
			return nil, fmt.Errorf("parsers[%d] (%s): name: duplicate of parsers[%d]", i, c.Name, j)
		}
		seen[c.Name] = i
		p, err := New(c)
		if err != nil {
			return nil, fmt.Errorf("parsers[%d] (%s): %w", i, c.Name, err)
		}
		r.parsers[c.Name] = p
	}
	return r, nil
}

// Get returns the parser named name.
func (r *Registry) Get(name string) (*Parser, bool) {
	p, ok := r.parsers[name]
	return p, ok
}
