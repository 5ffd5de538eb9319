package parser

import (
	"time"
	"unicode/utf8"

	"github.com/sluicelog/sluice/internal/msgp"
)

// parseLogfmt parses key=value pairs separated by white space. A value is
// bare (up to the next white space; it may contain '=') or double-quoted
// with backslash escapes (\" \\ \n \t \r \/ \b \f \uXXXX; others are kept
// as written). A bare key without '=' is true, and key= is an empty string.
// Values are strings unless Types converts them.
//
// Fluent Bit's logfmt skips any garbage; this one is stricter so that a line
// that is not logfmt comes back as ErrNoMatch: a key may not contain '"',
// a quoted value must be closed and followed by white space, and at least
// one key must have '='.
func (p *Parser) parseLogfmt(dst, line []byte) ([]byte, int, time.Time, bool, error) {
	out := dst
	pairs := 0
	var t time.Time
	hasTime := false
	sawEquals := false
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		ks := i
		for i < len(line) && line[i] > ' ' && line[i] != '=' && line[i] != '"' {
			i++
		}
		if i == ks || i < len(line) && line[i] == '"' {
			return dst, 0, time.Time{}, false, ErrNoMatch
		}
		key := line[ks:i]
		if i == len(line) || isSpace(line[i]) {
			// A bare key.
			out = msgp.AppendStrBytes(out, key)
			out = msgp.AppendBool(out, true)
			pairs++
			continue
		}
		i++ // '='
		sawEquals = true
		var raw []byte
		escaped := false
		if i < len(line) && line[i] == '"' {
			i++
			vs := i
			for i < len(line) && line[i] != '"' {
				if line[i] == '\\' {
					escaped = true
					i++
				}
				i++
			}
			if i >= len(line) {
				return dst, 0, time.Time{}, false, ErrNoMatch // unterminated
			}
			raw = line[vs:i]
			i++
			if i < len(line) && !isSpace(line[i]) {
				return dst, 0, time.Time{}, false, ErrNoMatch
			}
		} else {
			vs := i
			for i < len(line) && !isSpace(line[i]) {
				if line[i] == '"' {
					return dst, 0, time.Time{}, false, ErrNoMatch
				}
				i++
			}
			raw = line[vs:i]
		}
		if !hasTime && p.timeKey != "" && string(key) == p.timeKey && !escaped {
			if tt, ok := p.tf.parse(raw, p.now); ok {
				t, hasTime = tt, true
				if !p.timeKeep {
					continue
				}
			}
		}
		out = msgp.AppendStrBytes(out, key)
		switch {
		case escaped:
			out = appendUnescaped(out, raw)
		default:
			out = appendValue(out, raw, p.kindOf(key))
		}
		pairs++
	}
	if !sawEquals {
		return dst, 0, time.Time{}, false, ErrNoMatch
	}
	return out, pairs, t, hasTime, nil
}

// appendUnescaped appends raw, a quoted logfmt value with escapes, as a str.
func appendUnescaped(dst, raw []byte) []byte {
	h := len(dst)
	hdr := msgp.StrHeaderLen(len(raw)) // unescaping never lengthens
	dst = append(dst, make([]byte, hdr)...)
	body := len(dst)
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 == len(raw) {
			dst = append(dst, c)
			continue
		}
		i++
		switch e := raw[i]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			if r, ok := hexRune(raw[i+1:]); ok {
				dst = utf8.AppendRune(dst, r)
				i += 4
				break
			}
			dst = append(dst, '\\', e)
		default:
			dst = append(dst, '\\', e)
		}
	}
	n := len(dst) - body
	if need := msgp.StrHeaderLen(n); need != hdr {
		copy(dst[h+need:], dst[body:])
		dst = dst[:h+need+n]
	}
	var hb [5]byte
	copy(dst[h:], msgp.AppendStrHeader(hb[:0], n))
	return dst
}

func hexRune(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
