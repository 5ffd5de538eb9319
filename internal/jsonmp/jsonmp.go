// Package jsonmp converts JSON text straight into msgpack, in one pass and
// without building Go values, for the parsers and Merge_Log on the hot path.
//
// The conversion follows encoding/json where the two could differ: strings are
// unescaped (\uXXXX with surrogate pairs; a lone surrogate becomes U+FFFD) and
// invalid UTF-8 is replaced by U+FFFD; integers that fit int64 or uint64 stay
// integers, every other number is a float64 (out-of-range numbers become ±Inf,
// which encoding/json refuses to decode into a float64).
package jsonmp

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/sluicelog/sluice/internal/msgp"
)

// ErrSyntax means the input is not a JSON object.
var ErrSyntax = errors.New("jsonmp: invalid JSON")

// ErrNotObject means the input is valid JSON but not an object.
var ErrNotObject = errors.New("jsonmp: JSON value is not an object")

// ErrTooDeep means the input nests objects and arrays beyond msgp.MaxDepth.
var ErrTooDeep = errors.New("jsonmp: JSON nests too deeply")

// AppendObject converts the JSON object in src into msgpack key/value pairs
// appended to dst (no map header) and returns them with the number of pairs.
// Anything but one object (with optional surrounding whitespace) is an error
// and dst is returned unchanged. The top-level object counts as one level of
// nesting; containers nested deeper than msgp.MaxDepth are ErrTooDeep.
func AppendObject(dst, src []byte) (out []byte, pairs int, err error) {
	out, pairs, _, err = AppendObjectFind(dst, src, "")
	return out, pairs, err
}

// AppendObjectFind is AppendObject that also returns the offset in out of
// the value of the first top-level member named key, or -1 when there is
// none (or key is empty). The member's key precedes that offset.
func AppendObjectFind(dst, src []byte, key string) (out []byte, pairs int, valueOff int, err error) {
	d := decoder{src: src, key: key, found: -1}
	d.skipSpace()
	if d.pos >= len(src) {
		return dst, 0, -1, ErrSyntax
	}
	if src[d.pos] != '{' {
		// Tell a valid non-object from garbage for a clearer error.
		save := d.pos
		if _, err := d.value(nil, 1); err == nil {
			d.skipSpace()
			if d.pos == len(src) {
				return dst, 0, -1, ErrNotObject
			}
		}
		d.pos = save
		return dst, 0, -1, ErrSyntax
	}
	d.pos++
	out, pairs, err = d.members(dst, 1)
	if err != nil {
		return dst, 0, -1, err
	}
	d.skipSpace()
	if d.pos != len(src) {
		return dst, 0, -1, ErrSyntax
	}
	return out, pairs, d.found, nil
}

// AppendObjectPrefix converts the JSON object at the start of src (after
// white space) like AppendObject, but lets more input follow it: it also
// returns the number of bytes of src it used. When spans is not nil, the
// source offsets of each top-level member's value (start, end) are appended
// to it, two per pair, so that a caller can read a value's exact text.
func AppendObjectPrefix(dst, src []byte, spans *[]int) (out []byte, pairs int, n int, err error) {
	d := decoder{src: src, found: -1, spans: spans}
	d.skipSpace()
	if d.pos >= len(src) || src[d.pos] != '{' {
		return dst, 0, 0, ErrNotObject
	}
	d.pos++
	out, pairs, err = d.members(dst, 1)
	if err != nil {
		return dst, 0, 0, err
	}
	return out, pairs, d.pos, nil
}

type decoder struct {
	src   []byte
	pos   int
	key   string // top-level member to find
	found int    // offset of its value in dst, or -1
	spans *[]int // when set, the source spans of top-level values
}

// isSpace reports JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *decoder) skipSpace() {
	for d.pos < len(d.src) && isSpace(d.src[d.pos]) {
		d.pos++
	}
}

// members reads the members of an object whose '{' has been consumed, up to
// and including the closing '}', appending key/value pairs to dst.
func (d *decoder) members(dst []byte, depth int) ([]byte, int, error) {
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == '}' {
		d.pos++
		return dst, 0, nil
	}
	n := 0
	var err error
	for {
		d.skipSpace()
		if d.pos >= len(d.src) || d.src[d.pos] != '"' {
			return dst, 0, ErrSyntax
		}
		d.pos++
		k := len(dst)
		if dst, err = d.str(dst); err != nil {
			return dst, 0, err
		}
		d.skipSpace()
		if d.pos >= len(d.src) || d.src[d.pos] != ':' {
			return dst, 0, ErrSyntax
		}
		d.pos++
		if depth == 1 && d.found < 0 && len(d.key) > 0 && d.isKey(dst[k:]) {
			d.skipSpace()
			d.found = len(dst)
		}
		d.skipSpace()
		vs := d.pos
		if dst, err = d.value(dst, depth); err != nil {
			return dst, 0, err
		}
		if depth == 1 && d.spans != nil {
			*d.spans = append(*d.spans, vs, d.pos)
		}
		n++
		d.skipSpace()
		if d.pos >= len(d.src) {
			return dst, 0, ErrSyntax
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return dst, n, nil
		default:
			return dst, 0, ErrSyntax
		}
	}
}

// isKey reports whether the msgpack str b is d.key.
func (d *decoder) isKey(b []byte) bool {
	h := msgp.StrHeaderLen(len(d.key))
	return len(b) == h+len(d.key) && string(b[h:]) == d.key
}

// elements reads the elements of an array whose '[' has been consumed.
func (d *decoder) elements(dst []byte, depth int) ([]byte, int, error) {
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == ']' {
		d.pos++
		return dst, 0, nil
	}
	n := 0
	var err error
	for {
		d.skipSpace()
		vs := d.pos
		if dst, err = d.value(dst, depth); err != nil {
			return dst, 0, err
		}
		if depth == 1 && d.spans != nil {
			*d.spans = append(*d.spans, vs, d.pos)
		}
		n++
		d.skipSpace()
		if d.pos >= len(d.src) {
			return dst, 0, ErrSyntax
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return dst, n, nil
		default:
			return dst, 0, ErrSyntax
		}
	}
}

// value reads one JSON value (after optional whitespace) at the given
// nesting depth of its container and appends it to dst.
func (d *decoder) value(dst []byte, depth int) ([]byte, error) {
	d.skipSpace()
	if d.pos >= len(d.src) {
		return dst, ErrSyntax
	}
	switch c := d.src[d.pos]; c {
	case '"':
		d.pos++
		return d.str(dst)
	case '{', '[':
		if depth >= msgp.MaxDepth {
			return dst, ErrTooDeep
		}
		d.pos++
		// Reserve a one-byte header; widen it afterwards if needed.
		h := len(dst)
		dst = append(dst, 0)
		var n int
		var err error
		if c == '{' {
			dst, n, err = d.members(dst, depth+1)
		} else {
			dst, n, err = d.elements(dst, depth+1)
		}
		if err != nil {
			return dst, err
		}
		return fixHeader(dst, h, n, c == '{'), nil
	case 't':
		if d.literal("true") {
			return append(dst, 0xc3), nil
		}
	case 'f':
		if d.literal("false") {
			return append(dst, 0xc2), nil
		}
	case 'n':
		if d.literal("null") {
			return append(dst, 0xc0), nil
		}
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return d.number(dst)
		}
	}
	return dst, ErrSyntax
}

// fixHeader writes the header of a container of n entries whose content
// starts at h+1, where one byte was reserved at h.
func fixHeader(dst []byte, h, n int, isMap bool) []byte {
	if n < 16 {
		if isMap {
			dst[h] = 0x80 | byte(n)
		} else {
			dst[h] = 0x90 | byte(n)
		}
		return dst
	}
	var hdr [5]byte
	var hb []byte
	if isMap {
		hb = msgp.AppendMapHeader(hdr[:0], n)
	} else {
		hb = msgp.AppendArrayHeader(hdr[:0], n)
	}
	extra := len(hb) - 1
	end := len(dst)
	dst = append(dst, hb[:extra]...) // grow by extra bytes
	copy(dst[h+len(hb):], dst[h+1:end])
	copy(dst[h:], hb)
	return dst
}

func (d *decoder) literal(s string) bool {
	if len(d.src)-d.pos >= len(s) && string(d.src[d.pos:d.pos+len(s)]) == s {
		d.pos += len(s)
		return true
	}
	return false
}

// number reads a JSON number at d.pos.
func (d *decoder) number(dst []byte) ([]byte, error) {
	s := d.src
	start := d.pos
	p := d.pos
	neg := false
	if s[p] == '-' {
		neg = true
		p++
	}
	if p >= len(s) {
		return dst, ErrSyntax
	}
	isInt := true
	var u uint64
	overflow := false
	switch {
	case s[p] == '0':
		p++
	case s[p] >= '1' && s[p] <= '9':
		for p < len(s) && s[p] >= '0' && s[p] <= '9' {
			dgt := uint64(s[p] - '0')
			if u > (1<<64-1-dgt)/10 {
				overflow = true
			} else {
				u = u*10 + dgt
			}
			p++
		}
	default:
		return dst, ErrSyntax
	}
	if p < len(s) && s[p] == '.' {
		isInt = false
		p++
		q := p
		for p < len(s) && s[p] >= '0' && s[p] <= '9' {
			p++
		}
		if p == q {
			return dst, ErrSyntax
		}
	}
	if p < len(s) && (s[p] == 'e' || s[p] == 'E') {
		isInt = false
		p++
		if p < len(s) && (s[p] == '+' || s[p] == '-') {
			p++
		}
		q := p
		for p < len(s) && s[p] >= '0' && s[p] <= '9' {
			p++
		}
		if p == q {
			return dst, ErrSyntax
		}
	}
	d.pos = p
	if isInt && !overflow {
		if !neg {
			return msgp.AppendUint(dst, u), nil
		}
		if u <= 1<<63 {
			// -u wraps to the magnitude's two's complement, MinInt64 included.
			return msgp.AppendInt(dst, int64(-u)), nil
		}
	}
	// The number text is short and ParseFloat does not keep it, so the
	// conversion does not allocate for numbers up to 32 bytes.
	f, err := strconv.ParseFloat(string(s[start:p]), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return dst, ErrSyntax
	}
	return msgp.AppendFloat(dst, f), nil
}

// strClass marks bytes that end the fast scan of a string: '"', '\\',
// control bytes and non-ASCII bytes.
var strClass = func() (t [256]bool) {
	for i := 0; i < 0x20; i++ {
		t[i] = true
	}
	t['"'] = true
	t['\\'] = true
	for i := 0x80; i < 0x100; i++ {
		t[i] = true
	}
	return t
}()

// str reads a string whose opening quote has been consumed and appends it
// as a msgpack str.
func (d *decoder) str(dst []byte) ([]byte, error) {
	s := d.src
	start := d.pos
	p := start
	// Fast path: plain ASCII and valid UTF-8 with no escapes.
	for p < len(s) {
		c := s[p]
		if !strClass[c] {
			p++
			continue
		}
		if c == '"' {
			d.pos = p + 1
			dst = msgp.AppendStrHeader(dst, p-start)
			return append(dst, s[start:p]...), nil
		}
		if c >= 0x80 {
			r, size := utf8.DecodeRune(s[p:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			p += size
			continue
		}
		break // escape or control byte
	}
	if p >= len(s) || s[p] < 0x20 {
		return dst, ErrSyntax
	}
	return d.strSlow(dst, start, p)
}

// strSlow handles a string with escapes or invalid UTF-8. The bytes from
// start to p need no change.
func (d *decoder) strSlow(dst []byte, start, p int) ([]byte, error) {
	s := d.src
	// Find the closing quote to size the header from the raw length.
	q := p
	for q < len(s) && s[q] != '"' {
		if s[q] == '\\' {
			q++
		}
		q++
	}
	if q >= len(s) {
		return dst, ErrSyntax
	}
	h := len(dst)
	hdrLen := msgp.StrHeaderLen(q - start)
	dst = append(dst, make([]byte, hdrLen)...)
	body := len(dst)
	dst = append(dst, s[start:p]...)
	for p < q {
		c := s[p]
		switch {
		case c == '\\':
			p++
			var err error
			if dst, p, err = unescape(dst, s, p); err != nil {
				return dst, err
			}
		case c < 0x20:
			return dst, ErrSyntax
		case c < 0x80:
			dst = append(dst, c)
			p++
		default:
			r, size := utf8.DecodeRune(s[p:q])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, s[p:p+size]...)
			}
			p += size
		}
	}
	d.pos = q + 1
	n := len(dst) - body
	if need := msgp.StrHeaderLen(n); need != hdrLen {
		// Unescaping changed the length class: move the body.
		end := len(dst)
		if need > hdrLen {
			dst = append(dst, make([]byte, need-hdrLen)...)
			copy(dst[h+need:], dst[body:end])
		} else {
			copy(dst[h+need:], dst[body:end])
			dst = dst[:h+need+n]
		}
	}
	var hdr [5]byte
	copy(dst[h:], msgp.AppendStrHeader(hdr[:0], n))
	return dst, nil
}

// unescape decodes the escape whose backslash precedes s[p].
func unescape(dst []byte, s []byte, p int) ([]byte, int, error) {
	if p >= len(s) {
		return dst, p, ErrSyntax
	}
	switch s[p] {
	case '"', '\\', '/':
		return append(dst, s[p]), p + 1, nil
	case 'b':
		return append(dst, '\b'), p + 1, nil
	case 'f':
		return append(dst, '\f'), p + 1, nil
	case 'n':
		return append(dst, '\n'), p + 1, nil
	case 'r':
		return append(dst, '\r'), p + 1, nil
	case 't':
		return append(dst, '\t'), p + 1, nil
	case 'u':
		r := hex4(s, p+1)
		if r < 0 {
			return dst, p, ErrSyntax
		}
		p += 5
		if r >= 0xd800 && r < 0xe000 {
			// A high surrogate followed by an escaped low one is a pair;
			// anything else is a lone surrogate, replaced like encoding/json.
			if r < 0xdc00 && p+1 < len(s) && s[p] == '\\' && s[p+1] == 'u' {
				if r2 := hex4(s, p+2); r2 >= 0xdc00 && r2 < 0xe000 {
					r = 0x10000 + (r-0xd800)<<10 + (r2 - 0xdc00)
					return utf8.AppendRune(dst, r), p + 6, nil
				}
			}
			r = utf8.RuneError
		}
		return utf8.AppendRune(dst, r), p, nil
	}
	return dst, p, ErrSyntax
}

// hex4 decodes the four hex digits at s[p:], or returns -1.
func hex4(s []byte, p int) rune {
	if p+4 > len(s) {
		return -1
	}
	var r rune
	for _, c := range s[p : p+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
