package multiline

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

type kind uint8

const (
	kindRules kind = iota
	kindConcat
	kindDocker
	kindCRI
)

// rule is one compiled rule: a cheap pre-test (may be nil), the regular
// expression and the state it leads to.
type rule struct {
	pre  func(line []byte) bool
	re   *regexp.Regexp
	next int
}

func (r *rule) match(line []byte) bool {
	return (r.pre == nil || r.pre(line)) && r.re.Match(line)
}

// machine decides, line by line, what becomes of a line.
type machine struct {
	kind   kind
	states [][]rule // rules by state; 0 is start_state
	// concat
	start, end, continuous *regexp.Regexp
}

type action uint8

const (
	single    action = iota // no group: store the line as it is
	open                    // begin a group with the line
	join                    // add the line to the group
	joinClose               // add the line and store the group
	closeRedo               // store the group, then decide again without it
)

// decide says what to do with line; inGroup and state describe the stream's
// open group. partial is the partial-line flag (docker, cri).
func (m *machine) decide(inGroup bool, state int, line []byte, partial bool) (action, int) {
	switch m.kind {
	case kindDocker, kindCRI:
		switch {
		case !inGroup && !partial:
			return single, 0
		case !inGroup:
			return open, 0
		case partial:
			return join, 0
		}
		return joinClose, 0
	case kindConcat:
		return m.concat(inGroup, line), 0
	}
	if !inGroup {
		for i := range m.states[0] {
			if r := &m.states[0][i]; r.match(line) {
				return open, r.next
			}
		}
		return single, 0
	}
	if state != 0 {
		for i := range m.states[state] {
			if r := &m.states[state][i]; r.match(line) {
				return join, r.next
			}
		}
	}
	return closeRedo, 0
}

func (m *machine) concat(inGroup bool, line []byte) action {
	if !inGroup {
		switch {
		case m.start != nil && !m.start.Match(line):
			return single
		case m.end != nil && m.end.Match(line) && m.start == nil:
			return single
		}
		return open
	}
	switch {
	case m.start != nil && m.start.Match(line):
		return closeRedo
	case m.continuous != nil && !m.continuous.Match(line):
		return closeRedo
	case m.end != nil && m.end.Match(line):
		return joinClose
	}
	return join
}

// partialJoin says whether the machine joins partial lines (docker, cri).
func (m *machine) partialJoin() bool { return m.kind == kindDocker || m.kind == kindCRI }

// ruleSpec is a rule before compiling: states by name.
type ruleSpec struct {
	states []string
	re     string
	next   string
	pre    func([]byte) bool
}

func build(specs []ruleSpec) (*machine, error) {
	index := map[string]int{"start_state": 0}
	names := []string{"start_state"}
	id := func(s string) int {
		if i, ok := index[s]; ok {
			return i
		}
		index[s] = len(names)
		names = append(names, s)
		return index[s]
	}
	type compiled struct {
		state int
		r     rule
	}
	var all []compiled
	for i, sp := range specs {
		re, err := regexp.Compile(sp.re)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].regex: %w", i, err)
		}
		next := id(sp.next)
		for _, st := range sp.states {
			all = append(all, compiled{id(st), rule{pre: sp.pre, re: re, next: next}})
		}
	}
	m := &machine{kind: kindRules, states: make([][]rule, len(names))}
	for _, c := range all {
		m.states[c.state] = append(m.states[c.state], c.r)
	}
	if len(m.states[0]) == 0 {
		return nil, errors.New("rules: no rule for start_state")
	}
	// A state without rules ends its group at the next line.
	return m, nil
}

func rulesMachine(rules []Rule) (*machine, error) {
	specs := make([]ruleSpec, len(rules))
	for i, r := range rules {
		if r.State == "" || r.Next == "" {
			return nil, fmt.Errorf("rules[%d]: state and next must be set", i)
		}
		re := r.Regex
		if len(re) >= 2 && strings.HasPrefix(re, "/") && strings.HasSuffix(re, "/") {
			re = re[1 : len(re)-1] // Fluent Bit writes /regex/
		}
		specs[i] = ruleSpec{states: []string{r.State}, re: re, next: r.Next}
	}
	return build(specs)
}

func containsAny(subs ...string) func([]byte) bool {
	bs := make([][]byte, len(subs))
	for i, s := range subs {
		bs[i] = []byte(s)
	}
	return func(line []byte) bool {
		for _, b := range bs {
			if bytes.Contains(line, b) {
				return true
			}
		}
		return false
	}
}

func indented(line []byte) bool { return len(line) > 0 && (line[0] == ' ' || line[0] == '\t') }

// builtins are Fluent Bit's built-in multiline parsers, with the same rules.
var builtins = map[string]func() *machine{
	"docker": func() *machine { return &machine{kind: kindDocker} },
	"cri":    func() *machine { return &machine{kind: kindCRI} },
	"java": func() *machine {
		after := []string{"java_after_exception"}
		return must(build([]ruleSpec{
			{states: []string{"start_state"}, re: `(?:Exception|Error|Throwable|V8 errors stack trace)[:\r\n]|(?:Exception|Error|Throwable)$`, next: "java_after_exception",
				pre: containsAny("Exception", "Error", "Throwable", "V8 errors")},
			{states: after, re: `^[\t ]*nested exception is:[\t ]*`, next: "java_after_exception"},
			{states: after, re: `^[\r\n]*$`, next: "java_after_exception"},
			{states: after, re: `^[\t ]+(?:eval )?at `, next: "java_after_exception", pre: indented},
			{states: after, re: `^[\t ]+--- End of inner exception stack trace ---$`, next: "java_after_exception", pre: indented},
			{states: after, re: `^--- End of stack trace from previous location where exception was thrown ---$`, next: "java_after_exception"},
			{states: after, re: `^[\t ]*(?:Caused by|Suppressed):`, next: "java_after_exception"},
			{states: after, re: `^[\t ]*\.\.\. \d+ (?:more|common frames omitted)`, next: "java_after_exception"},
		}))
	},
	"python": func() *machine {
		return must(build([]ruleSpec{
			{states: []string{"start_state"}, re: `^Traceback \(most recent call last\):$`, next: "python", pre: containsAny("Traceback")},
			{states: []string{"python"}, re: `^[\t ]+File `, next: "python_code", pre: indented},
			{states: []string{"python_code"}, re: `[^\t ]`, next: "python"},
			{states: []string{"python"}, re: `^(?:[^\s.():]+\.)*[^\s.():]+:`, next: "start_state"},
		}))
	},
	"go": func() *machine {
		return must(build([]ruleSpec{
			{states: []string{"start_state"}, re: `\bpanic: `, next: "go_after_panic", pre: containsAny("panic: ")},
			{states: []string{"start_state"}, re: `http: panic serving`, next: "go_goroutine", pre: containsAny("http: panic")},
			{states: []string{"go_after_panic"}, re: `^$`, next: "go_goroutine"},
			{states: []string{"go_after_panic", "go_after_signal", "go_frame_1"}, re: `^$`, next: "go_goroutine"},
			{states: []string{"go_after_panic"}, re: `^\[signal `, next: "go_after_signal"},
			{states: []string{"go_goroutine"}, re: `^goroutine \d+ \[[^\]]+\]:$`, next: "go_frame_1"},
			{states: []string{"go_frame_1"}, re: `^(?:[^\s.:]+\.)*[^\s.():]+\(|^created by `, next: "go_frame_2"},
			{states: []string{"go_frame_2"}, re: `^\s`, next: "go_frame_1"},
		}))
	},
}

func must(m *machine, err error) *machine {
	if err != nil {
		panic(err) // the built-in rules are fixed and tested
	}
	return m
}
