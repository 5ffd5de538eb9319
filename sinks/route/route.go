// Package route decides which records a sink takes: tag patterns in
// Fluentd's syntax, and an optional condition over the record's fields
// written in expr (github.com/expr-lang/expr).
//
// # Tag patterns
//
// Tags are dot-separated parts. In a pattern, "*" matches within one part
// (kube.* matches kube.a, not kube or kube.a.b; app-* matches app-web), "**"
// as a whole part matches zero or more parts (kube.** matches kube, kube.a
// and kube.a.b), and {a,b} matches any of its comma-separated patterns
// ({app,sys}.** or kube.{web,api}). A sink with several patterns takes a
// tag that any of them matches; "**" matches every tag.
//
// # Conditions
//
// A condition is an expr expression that must be true: level == "error",
// kubernetes.namespace_name in ["shop", "pay"], log contains "panic",
// status >= 500. Its variables are the record's top-level fields (a missing
// one is nil), with nested maps reached by dots; tag is the chunk's tag and
// record the whole record, for fields whose names are not identifiers
// (record["log.level"]).
package route

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/vmihailenco/msgpack/v5"
)

// Matcher matches tags against Fluentd-style patterns. It is safe for
// concurrent use and remembers its answers for the tags it has seen.
type Matcher struct {
	alts [][]string // every pattern after brace expansion, split in parts
	all  bool

	mu    sync.Mutex
	cache map[string]bool
}

// maxCachedTags bounds the remembered answers.
const maxCachedTags = 4096

// Compile compiles tag patterns; none means every tag.
func Compile(patterns []string) (*Matcher, error) {
	m := &Matcher{cache: map[string]bool{}}
	if len(patterns) == 0 {
		m.all = true
	}
	for _, p := range patterns {
		if strings.TrimSpace(p) == "" {
			return nil, errors.New("empty pattern")
		}
		alts, err := expand(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		for _, a := range alts {
			if a == "**" {
				m.all = true
			}
			m.alts = append(m.alts, strings.Split(a, "."))
		}
	}
	return m, nil
}

// expand does brace expansion: a.{b,c}.d becomes a.b.d and a.c.d; braces
// nest.
func expand(p string) ([]string, error) {
	open := strings.IndexByte(p, '{')
	if open < 0 {
		if strings.ContainsAny(p, "},") {
			return nil, errors.New("unbalanced } or , outside braces")
		}
		return []string{p}, nil
	}
	depth, end := 0, -1
	var commas []int
	for i := open; i < len(p) && end < 0; i++ {
		switch p[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				end = i
			}
		case ',':
			if depth == 1 {
				commas = append(commas, i)
			}
		}
	}
	if end < 0 {
		return nil, errors.New("unclosed {")
	}
	var choices []string
	prev := open + 1
	for _, c := range append(commas, end) {
		choices = append(choices, p[prev:c])
		prev = c + 1
	}
	var out []string
	for _, c := range choices {
		rest, err := expand(p[:open] + c + p[end+1:])
		if err != nil {
			return nil, err
		}
		out = append(out, rest...)
	}
	return out, nil
}

// Match reports whether any pattern matches the tag.
func (m *Matcher) Match(tag string) bool {
	if m == nil || m.all {
		return true
	}
	m.mu.Lock()
	v, ok := m.cache[tag]
	m.mu.Unlock()
	if ok {
		return v
	}
	parts := strings.Split(tag, ".")
	v = false
	for _, a := range m.alts {
		if matchParts(a, parts) {
			v = true
			break
		}
	}
	m.mu.Lock()
	if len(m.cache) >= maxCachedTags {
		clear(m.cache)
	}
	m.cache[tag] = v
	m.mu.Unlock()
	return v
}

func matchParts(pat, tag []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for skip := 0; skip <= len(tag); skip++ {
				if matchParts(pat[1:], tag[skip:]) {
					return true
				}
			}
			return false
		}
		if len(tag) == 0 || !glob(pat[0], tag[0]) {
			return false
		}
		pat, tag = pat[1:], tag[1:]
	}
	return len(tag) == 0
}

// glob matches one part, where * is any run of characters.
func glob(pat, s string) bool {
	star := strings.IndexByte(pat, '*')
	if star < 0 {
		return pat == s
	}
	if !strings.HasPrefix(s, pat[:star]) {
		return false
	}
	rest := pat[star+1:]
	s = s[star:]
	for i := 0; i <= len(s); i++ {
		if glob(rest, s[i:]) {
			return true
		}
	}
	return false
}

// Condition is a compiled condition; it is safe for concurrent use.
type Condition struct {
	src     string
	program *vm.Program
}

// CompileCondition compiles an expr expression that must give a boolean.
func CompileCondition(src string) (*Condition, error) {
	p, err := expr.Compile(src, expr.AsBool(), expr.AllowUndefinedVariables())
	if err != nil {
		return nil, err
	}
	return &Condition{src: src, program: p}, nil
}

// String returns the condition's source.
func (c *Condition) String() string { return c.src }

// Eval evaluates the condition for a msgpack record with its tag.
func (c *Condition) Eval(tag string, record []byte) (bool, error) {
	out, err := run(c.program, tag, record)
	if err != nil {
		return false, err
	}
	v, _ := out.(bool)
	return v, nil
}

// Expr is a compiled expression that computes a value from a record (the
// same variables as a condition); it is safe for concurrent use.
type Expr struct {
	src     string
	program *vm.Program
}

// CompileExpr compiles an expr expression of any type.
func CompileExpr(src string) (*Expr, error) {
	p, err := expr.Compile(src, expr.AllowUndefinedVariables())
	if err != nil {
		return nil, err
	}
	return &Expr{src: src, program: p}, nil
}

// String returns the expression's source.
func (e *Expr) String() string { return e.src }

// Eval computes the expression for a msgpack record with its tag.
func (e *Expr) Eval(tag string, record []byte) (any, error) { return run(e.program, tag, record) }

// run runs a program with the record's fields, tag and record as variables.
func run(p *vm.Program, tag string, record []byte) (any, error) {
	var fields map[string]any
	if err := msgpack.Unmarshal(record, &fields); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	env := make(map[string]any, len(fields)+2)
	for k, v := range fields {
		env[k] = v
	}
	env["tag"] = tag
	env["record"] = fields
	return expr.Run(p, env)
}
