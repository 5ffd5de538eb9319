package parser

import "bytes"

// A matcher names a hand-written equivalent of one builtin regex: it fills
// loc as regexp.FindSubmatchIndex would (2 entries per group, -1 when
// unmatched) and reports whether the line matched. FuzzParse checks each
// against the regexp it replaces. (A switch rather than func values keeps
// loc on the caller's stack.)
type matcher uint8

const (
	matchRegexp matcher = iota // no fast path
	matchCRIKind
)

func (m matcher) match(line []byte, loc []int) bool {
	switch m {
	case matchCRIKind:
		return matchCRI(line, loc)
	}
	return false
}

// maxFastLoc bounds the loc slice of a matcher.
const maxFastLoc = 32

// criRegex is the cri builtin's regex; matchCRI replaces it.
const criRegex = `^(?<time>[^ ]+) (?<stream>stdout|stderr) (?<logtag>[^ ]*) (?<message>.*)$`

// fastMatchers maps builtin regexes (after translateRegex) to matchers.
var fastMatchers = map[string]matcher{
	criRegex: matchCRIKind,
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
