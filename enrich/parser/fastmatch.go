package parser

import "bytes"

// A matcher names a hand-written equivalent of one builtin regex: it fills
// loc as regexp.FindSubmatchIndex would (2 entries per group, -1 when
// unmatched) and reports whether the line matched, or that it is not sure
// (a line that would cost it too much backtracking): then the regexp
// decides. FuzzParse checks each against the regexp it replaces. (A switch
// rather than func values keeps loc on the caller's stack.)
type matcher uint8

const (
	matchRegexp matcher = iota // no fast path
	matchCRIKind
	matchNginxKind
	matchApacheKind
)

// Outcomes of a matcher.
const (
	fastNo     = 0
	fastYes    = 1
	fastUnsure = -1
)

func (m matcher) match(line []byte, loc []int) int {
	ok := false
	switch m {
	case matchCRIKind:
		ok = matchCRI(line, loc)
	case matchNginxKind:
		return matchAccess(line, loc, true)
	case matchApacheKind:
		return matchAccess(line, loc, false)
	}
	if ok {
		return fastYes
	}
	return fastNo
}

// maxFastLoc bounds the loc slice of a matcher.
const maxFastLoc = 32

// criRegex is the cri builtin's regex; matchCRI replaces it.
const criRegex = `^(?<time>[^ ]+) (?<stream>stdout|stderr) (?<logtag>[^ ]*) (?<message>.*)$`

// fastMatchers maps builtin regexes (after translateRegex) to matchers.
var fastMatchers = map[string]matcher{
	criRegex:    matchCRIKind,
	nginxRegex:  matchNginxKind,
	apacheRegex: matchApacheKind,
}

// nginxRegex and apacheRegex are the builtins' regexes; matchAccess
// replaces them.
const (
	nginxRegex  = `^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")`
	apacheRegex = `^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$`
)

// reSpace is Go regexp's \s: [\t\n\f\r ].
func reSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

// accessBudget bounds the backtracking steps of matchAccess; past it the
// regexp decides.
const accessBudget = 4096

// matchAccess matches nginxRegex (nginx) or apacheRegex by walking the
// line as the regexp's leftmost-first backtracking would: the three fields
// and the time are fixed by their delimiters; the request ("method path
// protocol") is tried greedy method, greedy spaces, lazy path, greedy
// protocol, as the regexp prefers; the rest (code, size, referer, agent) is
// fixed by its delimiters once the request ends.
func matchAccess(line []byte, loc []int, nginx bool) int {
	for k := range loc {
		loc[k] = -1
	}
	// Group numbers: nginx remote 1, host 2, user 3, time 4, method 5, path
	// 6, code 7, size 8, referer 9, agent 10; apache has no remote.
	g := 0
	if nginx {
		g = 1
	}
	set := func(group, a, b int) { loc[2*group], loc[2*group+1] = a, b }
	i := 0
	for k := 0; k < 3; k++ {
		sp := bytes.IndexByte(line[i:], ' ')
		if sp < 0 {
			return fastNo
		}
		switch {
		case nginx:
			set(k+1, i, i+sp)
		case k == 0:
			set(1, i, i+sp) // host
		case k == 2:
			set(2, i, i+sp) // user
		}
		i += sp + 1
	}
	if i >= len(line) || line[i] != '[' {
		return fastNo
	}
	te := bytes.IndexByte(line[i+1:], ']')
	if te < 0 {
		return fastNo
	}
	te += i + 1
	if te+2 >= len(line) || line[te+1] != ' ' || line[te+2] != '"' {
		return fastNo
	}
	set(g+3, i+1, te) // time
	r := te + 3       // the method starts here
	// tail matches `" (code) (size)` and the referer and agent from pos,
	// and sets their groups; it is fixed by its delimiters.
	tail := func(pos int) bool {
		if pos+1 >= len(line) || line[pos] != '"' || line[pos+1] != ' ' {
			return false
		}
		c := pos + 2
		cs := bytes.IndexByte(line[c:], ' ')
		if cs < 0 {
			return false
		}
		s := c + cs + 1
		se := s
		for se < len(line) && line[se] != ' ' {
			se++
		}
		ref, agent, end := -1, -1, -1
		if se+1 < len(line) && line[se] == ' ' && line[se+1] == '"' {
			ref = se + 2
			if q := bytes.IndexByte(line[ref:], '"'); q >= 0 {
				re := ref + q
				if re+2 < len(line) && line[re+1] == ' ' && line[re+2] == '"' {
					agent = re + 3
					if q2 := bytes.IndexByte(line[agent:], '"'); q2 >= 0 {
						end = agent + q2 + 1
						if !nginx && end != len(line) {
							end = -1
						}
						if end >= 0 {
							set(g+6, c, c+cs)
							set(g+7, s, se)
							set(g+8, ref, re)
							set(g+9, agent, agent+q2)
							loc[0], loc[1] = 0, end
							return true
						}
					}
				}
			}
		}
		if nginx || se != len(line) {
			return false // nginx needs the referer and agent; apache ends here without them
		}
		set(g+6, c, c+cs)
		set(g+7, s, se)
		set(g+8, -1, -1)
		set(g+9, -1, -1)
		loc[0], loc[1] = 0, se
		return true
	}
	steps := 0
	mMax := r
	for mMax < len(line) && !reSpace(line[mMax]) {
		mMax++
	}
	for m := mMax; m > r; m-- {
		set(g+4, r, m) // method
		if m < len(line) && line[m] == ' ' {
			sMax := m
			for sMax < len(line) && line[sMax] == ' ' {
				sMax++
			}
			for s := sMax; s > m; s-- {
				for p := s; p <= len(line); p++ {
					if p > s && line[p-1] == '"' {
						break
					}
					if steps++; steps > accessBudget {
						return fastUnsure
					}
					set(g+5, s, p) // path
					if p < len(line) && line[p] == ' ' {
						tMax := p
						for tMax < len(line) && line[tMax] == ' ' {
							tMax++
						}
						for t := tMax; t > p; t-- {
							uMax := t
							for uMax < len(line) && !reSpace(line[uMax]) {
								uMax++
							}
							for u := uMax; u >= t; u-- {
								if steps++; steps > accessBudget {
									return fastUnsure
								}
								if tail(u) {
									return fastYes
								}
							}
						}
					}
					if tail(p) {
						return fastYes
					}
				}
			}
		}
		set(g+5, -1, -1)
		if tail(m) {
			return fastYes
		}
	}
	for k := range loc {
		loc[k] = -1
	}
	return fastNo
}

// matchCRI matches criRegex: time is the first space-free token, then the
// stream, a space-free tag, and a message without newlines (. and $ in Go
// stop at a newline and at the end of the text).
func matchCRI(line []byte, loc []int) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return false
	}
	s := sp + 1
	if len(line) < s+7 || line[s+6] != ' ' ||
		string(line[s:s+6]) != "stdout" && string(line[s:s+6]) != "stderr" {
		return false
	}
	tag := s + 7
	sp2 := bytes.IndexByte(line[tag:], ' ')
	if sp2 < 0 {
		return false
	}
	msg := tag + sp2 + 1
	if bytes.IndexByte(line[msg:], '\n') >= 0 {
		return false
	}
	loc[0], loc[1] = 0, len(line)
	loc[2], loc[3] = 0, sp
	loc[4], loc[5] = s, s+6
	loc[6], loc[7] = tag, tag+sp2
	loc[8], loc[9] = msg, len(line)
	return true
}
