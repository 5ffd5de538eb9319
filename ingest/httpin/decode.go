// Package httpin is sluice's HTTP ingest: a pure decoder that turns request
// bodies of Fluentd in_http and Fluent Bit out_http into chunk entries, and
// an http.Handler that stores them in JetStream before it answers.
//
// Bodies (Decode):
//   - JSON (Fluentd in_http, Fluent Bit `format json`, `json_lines`,
//     `json_stream`): any sequence of JSON values separated by optional
//     whitespace, each an object (one record) or an array of objects. A single
//     object, an array, NDJSON and concatenated objects are all such
//     sequences, so the JSON formats share one decoder.
//   - msgpack (Fluentd `msgpack=`, `application/msgpack`, Fluent Bit
//     `format msgpack`): a stream of values, each a map (one record), a
//     Forward entry `[time, record]` or `[[time, metadata], record]` (Fluent
//     Bit sends its chunk of entries as it is), or an array of maps and
//     entries.
//
// JSON is converted to msgpack by streaming tokens: key order is kept,
// integers stay integers (int64, or uint64 above it), other numbers become
// float64, strings stay msgpack str. No Go maps are built.
//
// Times: a fixed time (Options.Time, e.g. Fluentd's ?time=) applies to every
// record and leaves the records unchanged. Otherwise the first top-level key
// of a record that is one of Options.TimeKeys (Fluent Bit's json_date_key
// "date", Fluentd's "time") and holds a usable time sets the record's time,
// and that key is removed from the record, as Fluentd does and as Fluent Bit
// means it (its date key is the event time, not a field). Usable times are
// numbers of epoch seconds (integer or fractional; integers too large for
// seconds are read as milliseconds, microseconds or nanoseconds, which is
// what Fluent Bit's epoch_ms sends), EventTime (msgpack), and strings in
// RFC 3339 / ISO 8601 form with optional fraction and zone (Fluent Bit's
// iso8601 and java_sql_timestamp; no zone means UTC). A key holding anything
// else stays in the record. Records without a time get Options.Now. Forward
// entries keep their own time.
package httpin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/jsonmp"
	"github.com/sluicelog/sluice/internal/msgp"
)

// Format is the encoding of a request body.
type Format uint8

// The body formats. The JSON ones decode alike (see the package comment);
// they are kept apart for configuration and documentation.
const (
	FormatJSON       Format = iota + 1 // a JSON object or array of objects
	FormatNDJSON                       // json_lines: one object per line
	FormatJSONStream                   // json_stream: concatenated objects
	FormatMsgpack                      // maps, Forward entries or arrays of them
)

var formatNames = map[string]Format{
	"json": FormatJSON, "json_lines": FormatNDJSON, "ndjson": FormatNDJSON, "jsonl": FormatNDJSON,
	"json_stream": FormatJSONStream, "msgpack": FormatMsgpack,
}

// ParseFormat returns the format named as in Fluent Bit's `format` option:
// json, json_lines (also ndjson, jsonl), json_stream or msgpack.
func ParseFormat(s string) (Format, bool) {
	f, ok := formatNames[strings.ToLower(s)]
	return f, ok
}

func (f Format) String() string {
	switch f {
	case FormatJSON:
		return "json"
	case FormatNDJSON:
		return "json_lines"
	case FormatJSONStream:
		return "json_stream"
	case FormatMsgpack:
		return "msgpack"
	}
	return "unknown"
}

// Defaults of Options.
const (
	DefaultMaxRecords     = 100000
	DefaultMaxRecordBytes = 1 << 20
)

// DefaultTimeKeys are Fluent Bit's json_date_key default and Fluentd's
// in_http time key.
var DefaultTimeKeys = []string{"date", "time"}

// Options steer Decode.
type Options struct {
	// Time, when not zero, is the time of every record (Fluentd's ?time=);
	// TimeKeys are then not looked at.
	Time time.Time
	// Now is the time of records that carry none; zero means time.Now().
	Now time.Time
	// TimeKeys are the top-level record keys that may hold the record's time.
	// Nil means none.
	TimeKeys []string
	// MaxRecords caps the records of one body (0: DefaultMaxRecords).
	MaxRecords int
	// MaxRecordBytes caps one entry in msgpack (0: DefaultMaxRecordBytes);
	// an entry must fit in one JetStream message.
	MaxRecordBytes int
}

// Reasons a body is rejected; they are metric label values.
const (
	ReasonJSON           = "bad_json"         // not JSON
	ReasonMsgpack        = "bad_msgpack"      // not msgpack, or truncated
	ReasonRecord         = "bad_record"       // a record is not an object/map
	ReasonEntry          = "bad_entry"        // a Forward entry is not [time, record]
	ReasonTime           = "bad_time"         // a Forward entry's time is unusable
	ReasonNumber         = "bad_number"       // a JSON number out of range
	ReasonTooDeep        = "too_deep"         // nesting beyond msgp.MaxDepth
	ReasonTooMany        = "too_many_records" // more than MaxRecords
	ReasonRecordTooLarge = "record_too_large" // an entry above MaxRecordBytes
)

// Error is a rejected body. Nothing of the body may be stored.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func reject(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Decode turns a body into a msgpack stream of entries (the Entries of a
// chunk.Chunk) and returns it with the number of entries. Records become
// `[EventTime, record]`; Forward entries in msgpack bodies are kept as they
// came. It fails with an *Error naming the problem and, where there is one,
// the index of the record (counted from 0 across the body). It does not
// retain or change body.
func Decode(body []byte, f Format, opts Options) (entries []byte, count int, err error) {
	return AppendDecode(nil, body, f, opts)
}

// AppendDecode is Decode appending to dst; on error it returns dst unchanged
// in length.
func AppendDecode(dst, body []byte, f Format, opts Options) ([]byte, int, error) {
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.MaxRecordBytes <= 0 {
		opts.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	d := decoder{o: &opts, out: dst}
	var err error
	switch f {
	case FormatJSON, FormatNDJSON, FormatJSONStream:
		if !d.fastJSON(body) {
			err = d.json(body)
		}
	case FormatMsgpack:
		err = d.msgpack(body)
	default:
		err = reject(ReasonRecord, "unknown body format %d", f)
	}
	if err != nil {
		return dst, 0, err
	}
	return d.out, d.n, nil
}

type decoder struct {
	o   *Options
	out []byte
	n   int // records decoded

	// Per JSON record: the containers in the order of their headers, and
	// the open ones.
	hdrs  []container
	stack []frame
	// tmp holds one record's fields on the fast path, spans the source
	// spans of its top-level values.
	tmp   []byte
	spans []int
}

type container struct {
	pos   int // offset of the 5-byte placeholder header in out
	isMap bool
	count int
}

type frame struct {
	hdr int // index in hdrs
	n   int // values read (for maps: keys and values)
}

// headerSize is the size of the placeholder header written for each JSON
// object and array, the largest msgpack header; it is shrunk once the
// record is complete.
const headerSize = 5

func (d *decoder) next() error {
	if d.n >= d.o.MaxRecords {
		return reject(ReasonTooMany, "body has more than %d records", d.o.MaxRecords)
	}
	return nil
}

// fastJSON converts a body of objects (or arrays of objects) with
// jsonmp, a single pass with no allocation. It gives up, leaving d as it
// was, on anything the full decoder below must judge: bad JSON, non-objects,
// limits, a float time (whose exact digits matter) or an infinite number;
// the full decoder then produces the same result or the precise error.
func (d *decoder) fastJSON(body []byte) bool {
	out0, n0 := len(d.out), d.n
	fail := func() bool { d.out, d.n = d.out[:out0], n0; return false }
	pos := 0
	skip := func() {
		for pos < len(body) && (body[pos] == ' ' || body[pos] == '\t' || body[pos] == '\n' || body[pos] == '\r') {
			pos++
		}
	}
	for {
		skip()
		if pos == len(body) {
			return true
		}
		switch body[pos] {
		case '{':
			used, ok := d.fastRecord(body[pos:])
			if !ok {
				return fail()
			}
			pos += used
		case '[':
			pos++
			skip()
			if pos < len(body) && body[pos] == ']' {
				pos++
				continue
			}
			for {
				skip()
				if pos == len(body) || body[pos] != '{' {
					return fail()
				}
				used, ok := d.fastRecord(body[pos:])
				if !ok {
					return fail()
				}
				pos += used
				skip()
				if pos == len(body) {
					return fail()
				}
				if body[pos] == ',' {
					pos++
					continue
				}
				if body[pos] != ']' {
					return fail()
				}
				pos++
				break
			}
		default:
			return fail()
		}
	}
}

var (
	posInf = []byte{0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0}
	negInf = []byte{0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0}
)

// fastRecord converts the object at the start of src into an entry and
// returns the bytes used; false hands the body to the full decoder.
func (d *decoder) fastRecord(src []byte) (int, bool) {
	if d.n >= d.o.MaxRecords {
		return 0, false
	}
	d.spans = d.spans[:0]
	tmp, pairs, used, err := jsonmp.AppendObjectPrefix(d.tmp[:0], src, &d.spans)
	if err != nil {
		return 0, false
	}
	d.tmp = tmp
	if bytes.Contains(tmp, posInf) || bytes.Contains(tmp, negInf) {
		return 0, false // possibly a number out of range: the full decoder says which
	}
	var sec, nsec uint32
	found := false
	if d.o.Time.IsZero() && len(d.o.TimeKeys) > 0 {
		for i, off := 0, 0; i < pairs; i++ {
			k, voff, err := msgp.ReadBytes(tmp, off)
			if err != nil {
				return 0, false
			}
			end, err := msgp.Skip(tmp, voff)
			if err != nil {
				return 0, false
			}
			if slices.Contains(d.o.TimeKeys, string(k)) {
				switch t, _ := msgp.Peek(tmp, voff); t {
				case msgp.TypeFloat, msgp.TypeInt, msgp.TypeUint:
					// The exact digits, as the full decoder reads them.
					sec, nsec, found = numberTime(string(src[d.spans[2*i]:d.spans[2*i+1]]))
				case msgp.TypeStr:
					if v, _, err := msgp.ReadStr(tmp, voff); err == nil {
						sec, nsec, found = stringTime(string(v))
					}
				}
				if found { // drop the pair
					tmp = append(tmp[:off], tmp[end:]...)
					pairs--
					break
				}
			}
			off = end
		}
		d.tmp = tmp
	}
	if !found {
		sec, nsec = d.defaultTime()
	}
	start := len(d.out)
	d.out = append(d.out, 0x92)
	d.out = msgp.AppendEventTime(d.out, sec, nsec)
	d.out = msgp.AppendMapHeader(d.out, pairs)
	d.out = append(d.out, tmp...)
	if len(d.out)-start > d.o.MaxRecordBytes {
		d.out = d.out[:start]
		return 0, false
	}
	if end, err := msgp.Skip(d.out, start); err != nil || end != len(d.out) {
		d.out = d.out[:start]
		return 0, false // e.g. nested too deep for an entry
	}
	d.n++
	return used, true
}

func (d *decoder) json(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return d.jsonErr(dec, err)
		}
		switch tok {
		case json.Delim('{'):
			if err := d.jsonRecord(dec); err != nil {
				return err
			}
		case json.Delim('['):
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return d.jsonErr(dec, err)
				}
				if tok != json.Delim('{') {
					return reject(ReasonRecord, "record %d is %s, want an object", d.n, jsonKind(tok))
				}
				if err := d.jsonRecord(dec); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return d.jsonErr(dec, err)
			}
		default:
			return reject(ReasonRecord, "record %d is %s, want an object", d.n, jsonKind(tok))
		}
	}
}

func (d *decoder) jsonErr(dec *json.Decoder, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return reject(ReasonJSON, "invalid JSON at byte %d (record %d): %v", se.Offset, d.n, se)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return reject(ReasonJSON, "invalid JSON: body ends inside record %d (byte %d)", d.n, dec.InputOffset())
	}
	return reject(ReasonJSON, "invalid JSON at byte %d (record %d): %v", dec.InputOffset(), d.n, err)
}

func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

// jsonRecord converts one object whose '{' was read into an entry.
func (d *decoder) jsonRecord(dec *json.Decoder) error {
	if err := d.next(); err != nil {
		return err
	}
	start := len(d.out)
	d.out = append(d.out, 0x92)
	timeAt := len(d.out)
	d.out = msgp.AppendEventTime(d.out, 0, 0)
	recStart := len(d.out)
	d.hdrs, d.stack = d.hdrs[:0], d.stack[:0]
	d.open(true)
	findTime := d.o.Time.IsZero() && len(d.o.TimeKeys) > 0
	var sec, nsec uint32
	found := false
	for len(d.stack) > 0 {
		tok, err := dec.Token()
		if err != nil {
			d.out = d.out[:start]
			return d.jsonErr(dec, err)
		}
		f := &d.stack[len(d.stack)-1]
		if tok == json.Delim('}') || tok == json.Delim(']') {
			c := &d.hdrs[f.hdr]
			c.count = f.n
			if c.isMap {
				c.count /= 2
			}
			d.stack = d.stack[:len(d.stack)-1]
			continue
		}
		if d.hdrs[f.hdr].isMap && f.n%2 == 0 {
			key := tok.(string) // the decoder returns object keys as strings
			if findTime && !found && len(d.stack) == 1 && slices.Contains(d.o.TimeKeys, key) {
				v, err := dec.Token()
				if err != nil {
					d.out = d.out[:start]
					return d.jsonErr(dec, err)
				}
				if s, ns, ok := jsonTime(v); ok {
					sec, nsec, found = s, ns, true
					continue // the pair is dropped
				}
				d.out = msgp.AppendStr(d.out, key)
				f.n++
				tok = v
			} else {
				d.out = msgp.AppendStr(d.out, key)
				f.n++
				continue
			}
		}
		f.n++
		if err := d.jsonValue(tok); err != nil {
			d.out = d.out[:start]
			return err
		}
	}
	d.compact(recStart)
	if !found {
		sec, nsec = d.defaultTime()
	}
	msgp.AppendEventTime(d.out[timeAt:timeAt], sec, nsec)
	if len(d.out)-start > d.o.MaxRecordBytes {
		n := len(d.out) - start
		d.out = d.out[:start]
		return reject(ReasonRecordTooLarge, "record %d is %d bytes in msgpack, above the limit of %d", d.n, n, d.o.MaxRecordBytes)
	}
	d.n++
	return nil
}

// open appends a placeholder header for an object or array.
func (d *decoder) open(isMap bool) {
	d.hdrs = append(d.hdrs, container{pos: len(d.out), isMap: isMap})
	d.stack = append(d.stack, frame{hdr: len(d.hdrs) - 1})
	d.out = append(d.out, 0, 0, 0, 0, 0)
}

func (d *decoder) jsonValue(tok json.Token) error {
	switch v := tok.(type) {
	case json.Delim:
		// A record is nested in an entry array; keep the whole entry within
		// msgp.MaxDepth so that every later walk accepts it.
		if len(d.stack) >= msgp.MaxDepth-1 {
			return reject(ReasonTooDeep, "record %d nests deeper than %d levels", d.n, msgp.MaxDepth-1)
		}
		d.open(v == '{')
	case string:
		d.out = msgp.AppendStr(d.out, v)
	case json.Number:
		var err error
		if d.out, err = appendNumber(d.out, string(v)); err != nil {
			return reject(ReasonNumber, "record %d: %v", d.n, err)
		}
	case bool:
		if v {
			d.out = append(d.out, 0xc3)
		} else {
			d.out = append(d.out, 0xc2)
		}
	case nil:
		d.out = append(d.out, 0xc0)
	default:
		return reject(ReasonJSON, "record %d: unexpected token %v", d.n, tok)
	}
	return nil
}

// compact rewrites the placeholder headers of the record that starts at
// from with the shortest headers, in one pass: headers only shrink, so the
// write position never passes the read position.
func (d *decoder) compact(from int) {
	b := d.out
	w, r := from, from
	var tmp [headerSize]byte
	for _, c := range d.hdrs {
		w += copy(b[w:], b[r:c.pos])
		var h []byte
		if c.isMap {
			h = msgp.AppendMapHeader(tmp[:0], c.count)
		} else {
			h = msgp.AppendArrayHeader(tmp[:0], c.count)
		}
		w += copy(b[w:], h)
		r = c.pos + headerSize
	}
	w += copy(b[w:], b[r:])
	d.out = b[:w]
}

func (d *decoder) defaultTime() (uint32, uint32) {
	t := d.o.Time
	if t.IsZero() {
		t = d.o.Now
	}
	if s, ns, ok := secNsec(t.Unix(), int64(t.Nanosecond())); ok {
		return s, ns
	}
	return 0, 0
}

// appendNumber appends a JSON number: an integer as the smallest msgpack
// integer (uint64 above MaxInt64), anything else as float64.
func appendNumber(b []byte, s string) ([]byte, error) {
	if !strings.ContainsAny(s, ".eE") {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return msgp.AppendInt(b, v), nil
		}
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return msgp.AppendUint(b, v), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return b, fmt.Errorf("number %.40s is out of range", s)
	}
	return msgp.AppendFloat(b, f), nil
}

// msgpack decodes a msgpack body.
func (d *decoder) msgpack(body []byte) error {
	for off := 0; off < len(body); {
		t, err := msgp.Peek(body, off)
		if err != nil {
			return d.msgpackErr(err, off)
		}
		switch t {
		case msgp.TypeMap:
			if off, err = d.mapRecord(body, off); err != nil {
				return err
			}
		case msgp.TypeArray:
			if isEntry(body, off) {
				if off, err = d.entry(body, off); err != nil {
					return err
				}
				continue
			}
			n, next, err := msgp.ReadArrayHeader(body, off)
			if err != nil {
				return d.msgpackErr(err, off)
			}
			if n > d.o.MaxRecords-d.n {
				return reject(ReasonTooMany, "body has more than %d records", d.o.MaxRecords)
			}
			off = next
			for range n {
				t, err := msgp.Peek(body, off)
				if err != nil {
					return d.msgpackErr(err, off)
				}
				switch {
				case t == msgp.TypeMap:
					off, err = d.mapRecord(body, off)
				case isEntry(body, off):
					off, err = d.entry(body, off)
				default:
					err = reject(ReasonRecord, "record %d is %s, want a map or a [time, record] entry", d.n, mpKind(t))
				}
				if err != nil {
					return err
				}
			}
		default:
			return reject(ReasonRecord, "record %d is %s, want a map, a [time, record] entry or an array of them", d.n, mpKind(t))
		}
	}
	return nil
}

func mpKind(t msgp.Type) string {
	switch t {
	case msgp.TypeArray:
		return "an array"
	case msgp.TypeInt, msgp.TypeUint:
		return "an integer"
	case msgp.TypeExt, msgp.TypeInvalid:
		return "an " + t.String()
	}
	return "a " + t.String()
}

func (d *decoder) msgpackErr(err error, off int) error {
	switch {
	case errors.Is(err, msgp.ErrShort):
		return reject(ReasonMsgpack, "invalid msgpack: body ends inside record %d", d.n)
	case errors.Is(err, msgp.ErrTooDeep):
		return reject(ReasonTooDeep, "record %d nests deeper than %d levels", d.n, msgp.MaxDepth-1)
	}
	return reject(ReasonMsgpack, "invalid msgpack at byte %d (record %d): %v", off, d.n, err)
}

// isEntry tells whether the array at off looks like a Forward entry: two
// elements, a time (EventTime, number, or [time, metadata]) and a map.
func isEntry(b []byte, off int) bool {
	n, next, err := msgp.ReadArrayHeader(b, off)
	if err != nil || n != 2 {
		return false
	}
	switch t, _ := msgp.Peek(b, next); t {
	case msgp.TypeExt, msgp.TypeInt, msgp.TypeUint, msgp.TypeFloat, msgp.TypeArray:
	default:
		return false
	}
	next, err = msgp.Skip(b, next)
	if err != nil {
		return false
	}
	t, _ := msgp.Peek(b, next)
	return t == msgp.TypeMap
}

// entry copies the Forward entry at off as it is.
func (d *decoder) entry(b []byte, off int) (int, error) {
	if err := d.next(); err != nil {
		return off, err
	}
	e, next, err := chunk.ReadEntry(b, off)
	if err != nil {
		var ce *chunk.Error
		if errors.As(err, &ce) {
			reason := ce.Reason
			switch reason {
			case chunk.ReasonMalformed:
				reason = ReasonMsgpack
			case chunk.ReasonRecord:
				reason = ReasonRecord
			}
			return off, reject(reason, "record %d: %v", d.n, ce.Err)
		}
		return off, d.msgpackErr(err, off)
	}
	return next, d.add(e.Raw)
}

// add appends one complete entry, checking its size and depth.
func (d *decoder) add(entry []byte) error {
	if len(entry) > d.o.MaxRecordBytes {
		return reject(ReasonRecordTooLarge, "record %d is %d bytes in msgpack, above the limit of %d", d.n, len(entry), d.o.MaxRecordBytes)
	}
	if _, err := msgp.Skip(entry, 0); err != nil {
		return d.msgpackErr(err, 0)
	}
	d.out = append(d.out, entry...)
	d.n++
	return nil
}

// mapRecord converts the map at off into an entry, taking its time from a
// time key.
func (d *decoder) mapRecord(b []byte, off int) (int, error) {
	if err := d.next(); err != nil {
		return off, err
	}
	end, err := msgp.Skip(b, off)
	if err != nil {
		return off, d.msgpackErr(err, off)
	}
	n, p, err := msgp.ReadMapHeader(b, off)
	if err != nil {
		return off, d.msgpackErr(err, off)
	}
	// The pair holding the time, if any: [dropFrom, dropTo).
	dropFrom, dropTo := -1, -1
	var sec, nsec uint32
	if d.o.Time.IsZero() && len(d.o.TimeKeys) > 0 {
		for range n {
			k := p
			key, v, kerr := msgp.ReadStr(b, k)
			if v, err = msgp.Skip(b, k); err != nil {
				return off, d.msgpackErr(err, k)
			}
			valEnd, err := msgp.Skip(b, v)
			if err != nil {
				return off, d.msgpackErr(err, v)
			}
			if kerr == nil && slices.Contains(d.o.TimeKeys, string(key)) {
				if s, ns, ok := msgpackTime(b, v); ok {
					sec, nsec = s, ns
					dropFrom, dropTo = k, valEnd
					break
				}
			}
			p = valEnd
		}
	}
	if dropFrom < 0 {
		sec, nsec = d.defaultTime()
	}
	var buf [11]byte
	e := append(buf[:0], 0x92)
	e = msgp.AppendEventTime(e, sec, nsec)
	start := len(d.out)
	d.out = append(d.out, e...)
	if dropFrom < 0 {
		d.out = append(d.out, b[off:end]...)
	} else {
		_, first, _ := msgp.ReadMapHeader(b, off)
		d.out = msgp.AppendMapHeader(d.out, n-1)
		d.out = append(d.out, b[first:dropFrom]...)
		d.out = append(d.out, b[dropTo:end]...)
	}
	entry := d.out[start:]
	d.out = d.out[:start]
	// add copies entry onto itself: same bytes, same place.
	if err := d.add(entry); err != nil {
		return off, err
	}
	return end, nil
}

// jsonTime reads a time from a JSON token.
func jsonTime(tok json.Token) (uint32, uint32, bool) {
	switch v := tok.(type) {
	case json.Number:
		return numberTime(string(v))
	case string:
		return stringTime(v)
	}
	return 0, 0, false
}

// msgpackTime reads a time from the msgpack value at off.
func msgpackTime(b []byte, off int) (uint32, uint32, bool) {
	t, err := msgp.Peek(b, off)
	if err != nil {
		return 0, 0, false
	}
	switch t {
	case msgp.TypeExt:
		s, ns, _, err := chunk.ReadTime(b, off)
		if err != nil {
			return 0, 0, false
		}
		return secNsec(s, int64(ns))
	case msgp.TypeInt, msgp.TypeUint:
		v, _, err := msgp.ReadInt(b, off)
		if err != nil {
			return 0, 0, false
		}
		return intTime(v)
	case msgp.TypeFloat:
		f, _, err := msgp.ReadFloat(b, off)
		if err != nil {
			return 0, 0, false
		}
		return floatTime(f)
	case msgp.TypeStr:
		s, _, err := msgp.ReadStr(b, off)
		if err != nil {
			return 0, 0, false
		}
		return stringTime(string(s))
	}
	return 0, 0, false
}

// secNsec checks that a time fits an EventTime.
func secNsec(sec, nsec int64) (uint32, uint32, bool) {
	if sec < 0 || sec > math.MaxUint32 || nsec < 0 || nsec >= 1e9 {
		return 0, 0, false
	}
	return uint32(sec), uint32(nsec), true
}

// intTime reads epoch seconds; values too large for seconds (after the year
// 5138) are milliseconds, microseconds or nanoseconds.
func intTime(v int64) (uint32, uint32, bool) {
	switch {
	case v >= 1e17:
		return secNsec(v/1e9, v%1e9)
	case v >= 1e14:
		return secNsec(v/1e6, v%1e6*1e3)
	case v >= 1e11:
		return secNsec(v/1e3, v%1e3*1e6)
	}
	return secNsec(v, 0)
}

func floatTime(f float64) (uint32, uint32, bool) {
	if math.IsNaN(f) || f < 0 || f > math.MaxUint32 {
		return 0, 0, false
	}
	s := math.Floor(f)
	ns := min(int64(math.Round((f-s)*1e9)), 1e9-1)
	return secNsec(int64(s), ns)
}

// numberTime reads a JSON number of epoch seconds exactly: the fraction is
// taken from the digits, not through a float.
func numberTime(s string) (uint32, uint32, bool) {
	if strings.ContainsAny(s, "eE-") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, 0, false
		}
		return floatTime(f)
	}
	ip, frac, hasFrac := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(ip, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if !hasFrac {
		return intTime(sec)
	}
	var ns int64
	for i := range 9 {
		ns *= 10
		if i < len(frac) {
			ns += int64(frac[i] - '0')
		}
	}
	return secNsec(sec, ns)
}

var timeLayouts = []string{
	time.RFC3339Nano,                      // 2018-05-30T09:39:52.000681Z, +02:00
	"2006-01-02T15:04:05.999999999Z0700",  // +0200
	"2006-01-02T15:04:05.999999999",       // no zone: UTC
	"2006-01-02 15:04:05.999999999",       // java_sql_timestamp
	"2006-01-02 15:04:05.999999999Z07:00", // with a zone
	"2006-01-02 15:04:05.999999999 -0700",
}

// stringTime reads an ISO 8601 / RFC 3339 time.
func stringTime(s string) (uint32, uint32, bool) {
	if len(s) < 19 || len(s) > 40 || s[4] != '-' || s[7] != '-' {
		return 0, 0, false
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return secNsec(t.Unix(), int64(t.Nanosecond()))
		}
	}
	return 0, 0, false
}
