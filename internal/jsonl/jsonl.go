// Package jsonl turns msgpack records into JSON lines by streaming: it walks
// the msgpack bytes in place and appends JSON to a buffer the caller owns and
// reuses, so that a record costs no allocation once the buffer has grown.
//
// Conversion rules:
//
//   - str and bin become JSON strings. Bytes are taken as UTF-8 text; each
//     byte that is not part of valid UTF-8 becomes U+FFFD, as encoding/json
//     does. '"', '\\' and control characters are escaped (\n, \r, \t, else
//     \u00XX), as are U+2028 and U+2029; '<', '>' and '&' are not.
//   - Integers become decimal numbers, including uint64 above MaxInt64.
//   - float32 and float64 become the shortest text that reads back to the same
//     value, formatted as encoding/json formats floats; NaN and ±Inf become
//     null.
//   - nil becomes null, bool true or false, arrays and maps JSON arrays and
//     objects with their order kept.
//   - A map key that is not a str or bin becomes a string holding its JSON
//     text: the integer 5 becomes "5", the array [1] becomes "[1]", nil
//     becomes "null"; an EventTime key becomes its time string.
//   - An EventTime (ext type 0 with 8 bytes) becomes an RFC 3339 UTC string
//     with nine fraction digits; any other ext becomes null.
//
// Duplicate keys inside a record are written as they come.
package jsonl

import (
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// Default key names.
const (
	DefaultTimeKey = "@timestamp"
	DefaultTagKey  = "tag"
)

// ErrNotMap means a record is not a msgpack map.
var ErrNotMap = errors.New("jsonl: record is not a map")

// Options name the keys sluice adds to each line. The two names should
// differ; if they are the same, the line has that key twice.
type Options struct {
	// TimeKey names the event time; "" leaves it out.
	TimeKey string
	// TagKey names the chunk's tag; "" leaves it out.
	TagKey string
}

// DefaultOptions returns the options with the default key names.
func DefaultOptions() Options {
	return Options{TimeKey: DefaultTimeKey, TagKey: DefaultTagKey}
}

// AppendLine appends one JSON object and a '\n' for entry e of a chunk with
// tag. The object holds TimeKey (the event time as RFC 3339 UTC with exactly
// nine fraction digits, e.g. "2026-11-22T07:34:52.000000001Z"), then TagKey,
// then the record's own fields in their order.
//
// If the record itself has a key equal to TimeKey or TagKey, the record's
// value wins and AppendLine does not add its own, so that no line repeats a
// key. Keys are compared as the strings a JSON reader would see.
//
// On error dst is returned truncated to its original length, never holding a
// partial line. Errors are ErrNotMap and those of package msgp (ErrShort,
// ErrMalformed, ErrTooDeep).
//
// An Encoder writes the same lines faster when many share a tag and a
// second, as the records of a chunk do.
func AppendLine(dst []byte, tag string, e chunk.Entry, o Options) ([]byte, error) {
	enc := Encoder{timeKey: newKey(o.TimeKey), tagKey: newKey(o.TagKey)}
	return enc.AppendLine(dst, tag, e)
}

// Encoder is AppendLine with a memory of the last tag and the last whole
// second it wrote: lines that share them, as a chunk's records do, copy
// their text instead of escaping and formatting it again. The zero value
// adds neither key and remembers nothing; NewEncoder takes the key names. An
// Encoder serves one
// goroutine at a time.
type Encoder struct {
	timeKey, tagKey key
	remember        bool // false for the one-off encoder of AppendLine
	// sec's text: `"<time key>":"YYYY-MM-DDTHH:MM:SS.`, valid when secText
	// is not nil.
	sec     int64
	secText []byte
	// tag's text: `"<tag key>":"<tag>",`, valid when tagText is not nil.
	tag     string
	tagText []byte
}

// NewEncoder returns an Encoder that adds the keys named in o.
func NewEncoder(o Options) *Encoder {
	return &Encoder{timeKey: newKey(o.TimeKey), tagKey: newKey(o.TagKey), remember: true}
}

// AppendLine is AppendLine with the encoder's options.
func (enc *Encoder) AppendLine(dst []byte, tag string, e chunk.Entry) ([]byte, error) {
	start := len(dst)
	rec := e.Record
	n, off, err := msgp.ReadMapHeader(rec, 0)
	if err != nil {
		var te *msgp.TypeError
		if errors.As(err, &te) {
			err = ErrNotMap
		}
		return dst[:start], err
	}
	// Every field is written with a trailing comma; the last one becomes
	// the closing brace. The added fields come first, and one is cut out
	// again if the record turns out to have its key.
	dst = append(dst, '{')
	timeAt, tagAt := -1, -1
	if enc.timeKey.name != "" {
		timeAt = len(dst)
		sec, nsec := e.Sec, int(e.Nsec)
		if nsec < 0 || nsec >= 1e9 {
			t := time.Unix(sec, int64(nsec))
			sec, nsec = t.Unix(), t.Nanosecond()
		}
		switch {
		case !enc.remember:
			dst = appendStringText(dst, enc.timeKey.name)
			dst = appendSecond(append(dst, ':'), sec)
		case enc.secText != nil && enc.sec == sec:
			dst = append(dst, enc.secText...)
		default:
			from := len(dst)
			dst = appendStringText(dst, enc.timeKey.name)
			dst = appendSecond(append(dst, ':'), sec)
			enc.secText, enc.sec = append(enc.secText[:0], dst[from:]...), sec
		}
		dst = appendFrac(dst, nsec)
		dst = append(dst, ',')
	}
	if enc.tagKey.name != "" {
		tagAt = len(dst)
		if enc.remember && enc.tagText != nil && enc.tag == tag {
			dst = append(dst, enc.tagText...)
		} else {
			dst = appendStringText(dst, enc.tagKey.name)
			dst = appendStringText(append(dst, ':'), tag)
			dst = append(dst, ',')
			if enc.remember {
				enc.tagText, enc.tag = append(enc.tagText[:0], dst[tagAt:]...), strings.Clone(tag)
			}
		}
	}
	fieldsAt := len(dst)
	hasTime, hasTag := false, false
	for i := 0; i < n; i++ {
		var isTime, isTag bool
		if dst, off, isTime, isTag, err = appendTopKey(dst, rec, off, &enc.timeKey, &enc.tagKey); err != nil {
			return dst[:start], err
		}
		hasTime = hasTime || isTime
		hasTag = hasTag || isTag
		dst = append(dst, ':')
		if dst, off, err = appendValue(dst, rec, off, 1); err != nil {
			return dst[:start], err
		}
		dst = append(dst, ',')
	}
	if hasTag && tagAt >= 0 {
		dst = cut(dst, tagAt, fieldsAt)
		fieldsAt = tagAt
	}
	if hasTime && timeAt >= 0 {
		end := fieldsAt
		if tagAt >= 0 && !hasTag {
			end = tagAt
		}
		dst = cut(dst, timeAt, end)
	}
	if dst[len(dst)-1] == ',' {
		dst[len(dst)-1] = '}'
		return append(dst, '\n'), nil
	}
	return append(dst, '}', '\n'), nil
}

// cut removes dst[i:j].
func cut(dst []byte, i, j int) []byte {
	n := copy(dst[i:], dst[j:])
	return dst[:i+n]
}

// key is a key name that AppendLine adds, prepared for comparisons.
type key struct {
	name string
	// ascii tells that name is all ASCII, so that only a key with the same
	// bytes reads as the same string.
	ascii bool
}

func newKey(name string) key {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return key{name: name}
		}
	}
	return key{name: name, ascii: true}
}

// is reports whether the key text k reads as the same JSON string as the
// name, where each byte of invalid UTF-8 reads as U+FFFD.
func (w *key) is(k []byte) bool {
	if w == nil || w.name == "" {
		return false
	}
	if string(k) == w.name {
		return true
	}
	if w.ascii {
		// An invalid byte reads as U+FFFD, which is not ASCII.
		return false
	}
	want := w.name
	for len(k) > 0 && len(want) > 0 {
		r1, n1 := utf8.DecodeRune(k)
		r2, n2 := utf8.DecodeRuneInString(want)
		if r1 != r2 {
			return false
		}
		k, want = k[n1:], want[n2:]
	}
	return len(k) == 0 && len(want) == 0
}

// appendTopKey appends a key of the record map like appendKey and reports
// whether it reads as the time key or the tag key.
func appendTopKey(dst, b []byte, off int, timeKey, tagKey *key) (_ []byte, next int, isTime, isTag bool, err error) {
	if off >= len(b) {
		return dst, off, false, false, msgp.ErrShort
	}
	c := b[off]
	var k []byte
	if c >= 0xa0 && c <= 0xbf {
		next = off + 1 + int(c&0x1f)
		if next > len(b) {
			return dst, off, false, false, msgp.ErrShort
		}
		k = b[off+1 : next]
	} else if t := msgp.TypeOf(c); t == msgp.TypeStr || t == msgp.TypeBin {
		if k, next, err = msgp.ReadBytes(b, off); err != nil {
			return dst, off, false, false, err
		}
	} else {
		return appendOtherKey(dst, b, off, 1, timeKey, tagKey)
	}
	return appendString(dst, k), next, timeKey.is(k), tagKey.is(k), nil
}

// AppendValue appends the JSON for the single msgpack value at b[off:],
// returning the new dst and the offset just past the value. On error dst is
// returned with its original length. Errors are those of package msgp:
// ErrShort, ErrMalformed, ErrTooDeep when arrays and maps nest deeper than
// msgp.MaxDepth (as msgp.Skip counts), so any value msgp.Skip accepts
// converts.
func AppendValue(dst, b []byte, off int) ([]byte, int, error) {
	start := len(dst)
	dst, next, err := appendValue(dst, b, off, 0)
	if err != nil {
		return dst[:start], off, err
	}
	return dst, next, nil
}

// appendValue appends the value at off, which depth non-empty arrays and maps
// enclose.
func appendValue(dst, b []byte, off, depth int) ([]byte, int, error) {
	if off >= len(b) {
		return dst, off, msgp.ErrShort
	}
	c := b[off]
	switch {
	case c <= 0x7f:
		if c < 10 {
			return append(dst, '0'+c), off + 1, nil
		}
		return strconv.AppendUint(dst, uint64(c), 10), off + 1, nil
	case c >= 0xe0:
		return strconv.AppendInt(dst, int64(int8(c)), 10), off + 1, nil
	case c >= 0xa0 && c <= 0xbf:
		end := off + 1 + int(c&0x1f)
		if end > len(b) {
			return dst, off, msgp.ErrShort
		}
		return appendString(dst, b[off+1:end]), end, nil
	case c <= 0x8f:
		return appendMap(dst, b, off+1, int(c&0x0f), depth)
	case c <= 0x9f:
		return appendArray(dst, b, off+1, int(c&0x0f), depth)
	}
	switch c {
	case 0xc0:
		return append(dst, "null"...), off + 1, nil
	case 0xc2:
		return append(dst, "false"...), off + 1, nil
	case 0xc3:
		return append(dst, "true"...), off + 1, nil
	case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb:
		v, next, err := msgp.ReadBytes(b, off)
		if err != nil {
			return dst, off, err
		}
		return appendString(dst, v), next, nil
	case 0xca, 0xcb:
		f, next, err := msgp.ReadFloat(b, off)
		if err != nil {
			return dst, off, err
		}
		bits := 64
		if c == 0xca {
			bits = 32
		}
		return appendFloat(dst, f, bits), next, nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		v, next, err := msgp.ReadUint64(b, off)
		if err != nil {
			return dst, off, err
		}
		return strconv.AppendUint(dst, v, 10), next, nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		v, next, err := msgp.ReadInt(b, off)
		if err != nil {
			return dst, off, err
		}
		return strconv.AppendInt(dst, v, 10), next, nil
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		typ, data, next, err := msgp.ReadExt(b, off)
		if err != nil {
			return dst, off, err
		}
		if typ == 0 && len(data) == 8 {
			sec := uint32(data[0])<<24 | uint32(data[1])<<16 | uint32(data[2])<<8 | uint32(data[3])
			nsec := uint32(data[4])<<24 | uint32(data[5])<<16 | uint32(data[6])<<8 | uint32(data[7])
			return appendTime(dst, int64(sec), int64(nsec)), next, nil
		}
		return append(dst, "null"...), next, nil
	case 0xdc, 0xdd:
		n, next, err := msgp.ReadArrayHeader(b, off)
		if err != nil {
			return dst, off, err
		}
		return appendArray(dst, b, next, n, depth)
	case 0xde, 0xdf:
		n, next, err := msgp.ReadMapHeader(b, off)
		if err != nil {
			return dst, off, err
		}
		return appendMap(dst, b, next, n, depth)
	}
	return dst, off, msgp.ErrMalformed
}

// appendArray appends the n elements that start at off as a JSON array.
func appendArray(dst, b []byte, off, n, depth int) ([]byte, int, error) {
	if n > 0 && depth >= msgp.MaxDepth {
		return dst, off, msgp.ErrTooDeep
	}
	dst = append(dst, '[')
	var err error
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, off, err = appendValue(dst, b, off, depth+1); err != nil {
			return dst, off, err
		}
	}
	return append(dst, ']'), off, nil
}

// appendMap appends the n pairs that start at off as a JSON object.
func appendMap(dst, b []byte, off, n, depth int) ([]byte, int, error) {
	if n > 0 && depth >= msgp.MaxDepth {
		return dst, off, msgp.ErrTooDeep
	}
	dst = append(dst, '{')
	var err error
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, off, err = appendKey(dst, b, off, depth+1); err != nil {
			return dst, off, err
		}
		dst = append(dst, ':')
		if dst, off, err = appendValue(dst, b, off, depth+1); err != nil {
			return dst, off, err
		}
	}
	return append(dst, '}'), off, nil
}

// appendKey appends the map key at off as a JSON string: a str or bin as
// text, any other value as appendOtherKey does.
func appendKey(dst, b []byte, off, depth int) ([]byte, int, error) {
	if off >= len(b) {
		return dst, off, msgp.ErrShort
	}
	c := b[off]
	if c >= 0xa0 && c <= 0xbf {
		end := off + 1 + int(c&0x1f)
		if end > len(b) {
			return dst, off, msgp.ErrShort
		}
		return appendString(dst, b[off+1:end]), end, nil
	}
	if t := msgp.TypeOf(c); t == msgp.TypeStr || t == msgp.TypeBin {
		v, next, err := msgp.ReadBytes(b, off)
		if err != nil {
			return dst, off, err
		}
		return appendString(dst, v), next, nil
	}
	dst, next, _, _, err := appendOtherKey(dst, b, off, depth, nil, nil)
	return dst, next, err
}

// appendOtherKey appends a map key that is not a str or bin as a JSON
// string of its JSON text, or for an EventTime as its time string, and
// reports whether that string is the time key or the tag key (either may be
// nil). The value at off is depth deep.
func appendOtherKey(dst, b []byte, off, depth int, timeKey, tagKey *key) (_ []byte, next int, isTime, isTag bool, err error) {
	p := len(dst)
	if dst, next, err = appendValue(dst, b, off, depth); err != nil {
		return dst, off, false, false, err
	}
	q := len(dst)
	if dst[p] == '"' {
		// An EventTime, whose text has nothing to escape.
		text := dst[p+1 : q-1]
		return dst, next, timeKey.is(text), tagKey.is(text), nil
	}
	isTime, isTag = timeKey.is(dst[p:q]), tagKey.is(dst[p:q])
	// Append the text again as a JSON string and move that over it.
	dst = appendString(dst, dst[p:q])
	n := copy(dst[p:], dst[q:])
	return dst[:p+n], next, isTime, isTag, nil
}

// appendFloat appends f as encoding/json does for a float of the given bits;
// NaN and infinities become null.
func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendTime appends the time sec, nsec as a JSON string in RFC 3339 UTC with
// nine fraction digits. Years outside 0000–9999, which RFC 3339 cannot
// express, are written as time.Time.Format writes them: a minus sign before
// negative years, more than four digits for years after 9999.
func appendTime(dst []byte, sec, nsec int64) []byte {
	// Normalise nsec into [0, 1e9) as time.Unix does.
	t := time.Unix(sec, nsec)
	return appendFrac(appendSecond(dst, t.Unix()), t.Nanosecond())
}

// appendSecond appends the opening quote and the whole second sec of an
// appendTime string, up to and including the decimal point.
func appendSecond(dst []byte, sec int64) []byte {
	// time.Unix and the date fields do not allocate.
	t := time.Unix(sec, 0).UTC()
	year, month, day := t.Date()
	hour, minute, second := t.Clock()
	dst = append(dst, '"')
	if year < 0 {
		dst = append(dst, '-')
		year = -year
	}
	if year <= 9999 {
		dst = append(dst, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10))
	} else {
		dst = strconv.AppendInt(dst, int64(year), 10)
	}
	return append(dst, '-', byte('0'+month/10), byte('0'+month%10),
		'-', byte('0'+day/10), byte('0'+day%10),
		'T', byte('0'+hour/10), byte('0'+hour%10),
		':', byte('0'+minute/10), byte('0'+minute%10),
		':', byte('0'+second/10), byte('0'+second%10), '.')
}

// appendFrac appends ns < 1e9 as nine digits, then Z and the closing quote.
func appendFrac(dst []byte, ns int) []byte {
	var frac [11]byte
	frac[9], frac[10] = 'Z', '"'
	// Two digits a division: every record's time passes here.
	for i := 8; i > 0; i -= 2 {
		q := ns / 100
		d := 2 * (ns - 100*q)
		frac[i-1], frac[i] = digitPairs[d], digitPairs[d+1]
		ns = q
	}
	frac[0] = byte('0' + ns)
	return append(dst, frac[:]...)
}

// digitPairs holds "00" to "99".
const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

const hexDigits = "0123456789abcdef"

// plainASCII marks the ASCII bytes that a JSON string holds as they are.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// specialBytes returns a word with the high bit set in the byte of w that
// comes first in memory (little-endian: the lowest) among those that are not
// plain ASCII: a control character, '"', '\\' or a byte of a multi-byte
// sequence; zero when all eight are plain. Bits above the lowest may be set
// falsely (a borrow runs upwards), so only the lowest one counts.
func specialBytes(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// Each test sets the high bit of a byte sought; bytes with their own
	// high bit set are caught by w.
	ctl := (w - 0x20*ones) &^ w
	q := w ^ '"'*ones
	quote := (q - ones) &^ q
	bs := w ^ '\\'*ones
	backslash := (bs - ones) &^ bs
	return (ctl | quote | backslash | w) & highs
}

// appendStringText appends s as a JSON string.
func appendStringText(dst []byte, s string) []byte {
	// The bytes are only read.
	return appendString(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// appendString appends s as a JSON string. s may alias dst[:len(dst)].
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip eight plain ASCII bytes at a time, then to the first byte
		// that is not.
		for i+8 <= len(s) {
			if m := specialBytes(binary.LittleEndian.Uint64(s[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if n := len(s) - i; n > 0 && n < 8 && cap(s)-i >= 8 {
			// The tail, read as one word with the bytes that follow it in
			// memory and masked to its own: short keys and values are most
			// of a record's strings. The bytes past the tail cannot change
			// the bits of the tail's, which come first.
			m := specialBytes(binary.LittleEndian.Uint64(s[i : i+8])) // within cap(s)
			if m &= 1<<(8*n) - 1; m == 0 {
				break
			}
			i += bits.TrailingZeros64(m) >> 3
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if plainASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
