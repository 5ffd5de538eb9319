package forward_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/ingest/forward"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// The helpers of this file are prefixed with "cdc" so that they cannot clash
// with helpers of other test files of the package.

// cdcMarshal encodes v with msgpack/v5 (string -> str, []byte -> bin).
func cdcMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		tb.Fatalf("msgpack.Marshal(%#v): %v", v, err)
	}
	return b
}

// cdcRaw embeds already-encoded msgpack bytes in a value given to cdcMarshal.
func cdcRaw(b []byte) msgpack.RawMessage { return msgpack.RawMessage(b) }

// cdcET is an EventTime in its fixext8 form: 0xd7 0x00 sec nsec.
func cdcET(sec, nsec uint32) msgpack.RawMessage {
	b := []byte{0xd7, 0x00}
	b = binary.BigEndian.AppendUint32(b, sec)
	return binary.BigEndian.AppendUint32(b, nsec)
}

// cdcET8 is an EventTime in its ext8 form: 0xc7 0x08 0x00 sec nsec.
func cdcET8(sec, nsec uint32) msgpack.RawMessage {
	b := []byte{0xc7, 0x08, 0x00}
	b = binary.BigEndian.AppendUint32(b, sec)
	return binary.BigEndian.AppendUint32(b, nsec)
}

// cdcGzip compresses p as one gzip member with the standard library.
func cdcGzip(tb testing.TB, p []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(p); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// cdcZstd compresses p as one zstd frame.
func cdcZstd(tb testing.TB, p []byte) []byte {
	tb.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(p, nil)
}

// cdcZstdStream compresses p with the streaming zstd writer, whose frames
// do not declare their content size.
func cdcZstdStream(tb testing.TB, p []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := enc.Write(p); err != nil {
		tb.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// cdcConcat concatenates byte slices into a new one.
func cdcConcat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// cdcEntry is an expected entry.
type cdcEntry struct {
	sec  int64
	nsec int32
	rec  map[string]any
	meta map[string]any // nil when the entry has no metadata
}

// cdcNormalize round-trips m through msgpack so that it compares equal to a
// map decoded from the wire (integer widths, etc.).
func cdcNormalize(tb testing.TB, m map[string]any) map[string]any {
	tb.Helper()
	var out map[string]any
	if err := msgpack.Unmarshal(cdcMarshal(tb, m), &out); err != nil {
		tb.Fatal(err)
	}
	return out
}

// cdcCheckEntries walks entries with chunk.ReadEntry and compares them with want.
func cdcCheckEntries(tb testing.TB, entries []byte, want []cdcEntry) {
	tb.Helper()
	off := 0
	for i, w := range want {
		e, next, err := chunk.ReadEntry(entries, off)
		if err != nil {
			tb.Fatalf("entry %d: ReadEntry: %v", i, err)
		}
		off = next
		if e.Sec != w.sec || e.Nsec != w.nsec {
			tb.Errorf("entry %d: time = %d.%09d, want %d.%09d", i, e.Sec, e.Nsec, w.sec, w.nsec)
		}
		var rec map[string]any
		if err := msgpack.Unmarshal(e.Record, &rec); err != nil {
			tb.Fatalf("entry %d: record: %v", i, err)
		}
		if wr := cdcNormalize(tb, w.rec); !reflect.DeepEqual(rec, wr) {
			tb.Errorf("entry %d: record = %#v, want %#v", i, rec, wr)
		}
		if w.meta == nil {
			if e.Meta != nil {
				tb.Errorf("entry %d: Meta = %x, want nil", i, e.Meta)
			}
			continue
		}
		var meta map[string]any
		if err := msgpack.Unmarshal(e.Meta, &meta); err != nil {
			tb.Fatalf("entry %d: meta: %v", i, err)
		}
		if wm := cdcNormalize(tb, w.meta); !reflect.DeepEqual(meta, wm) {
			tb.Errorf("entry %d: meta = %#v, want %#v", i, meta, wm)
		}
	}
	if off != len(entries) {
		tb.Errorf("entries have %d bytes after the %d expected entries", len(entries)-off, len(want))
	}
}

// cdcEntriesPayload builds a PackedForward payload from entries.
func cdcEntriesPayload(tb testing.TB, es ...[]any) []byte {
	tb.Helper()
	var p []byte
	for _, e := range es {
		p = append(p, cdcMarshal(tb, e)...)
	}
	return p
}

// cdcStr encodes p as a msgpack str regardless of its content (Fluentd's
// PackedForward payload), choosing the smallest header.
func cdcStr(p []byte) msgpack.RawMessage {
	return msgpack.RawMessage(msgp.AppendStr(nil, string(p)))
}

var (
	cdcRec1 = map[string]any{"log": "hello", "n": 1}
	cdcRec2 = map[string]any{"log": "world", "nested": map[string]any{"a": []any{1, "x", true}}}
	cdcRec3 = map[string]any{"message": "third", "level": "warn"}
)

type cdcCase struct {
	name   string
	in     []byte
	mode   forward.Mode
	tag    string
	chunk  any // nil for none, else string
	comp   string
	signal int64
	want   []cdcEntry
}

func cdcValidCases(tb testing.TB) []cdcCase {
	tb.Helper()
	threeEntries := cdcEntriesPayload(tb,
		[]any{cdcET(1700000000, 1), cdcRec1},
		[]any{cdcET(1700000001, 999999999), cdcRec2},
		[]any{1700000002, cdcRec3},
	)
	threeWant := []cdcEntry{
		{sec: 1700000000, nsec: 1, rec: cdcRec1},
		{sec: 1700000001, nsec: 999999999, rec: cdcRec2},
		{sec: 1700000002, rec: cdcRec3},
	}
	fluentdChunkID := "ZXhhbXBsZS1jaHVuay1pZA==\n" // Fluentd's ids end in a newline
	member1 := cdcEntriesPayload(tb, []any{cdcET(1700000000, 1), cdcRec1})
	member2 := cdcEntriesPayload(tb, []any{cdcET(1700000001, 999999999), cdcRec2}, []any{1700000002, cdcRec3})
	member3 := cdcEntriesPayload(tb, []any{cdcET(1700000003, 3), cdcRec1})

	return []cdcCase{
		{
			name: "message", mode: forward.ModeMessage, tag: "app.log",
			in:   cdcMarshal(tb, []any{"app.log", cdcET(1700000000, 123456789), cdcRec1}),
			want: []cdcEntry{{sec: 1700000000, nsec: 123456789, rec: cdcRec1}},
		},
		{
			name: "message/option", mode: forward.ModeMessage, tag: "app.log", chunk: "abc",
			in:   cdcMarshal(tb, []any{"app.log", cdcET(1700000000, 5), cdcRec2, map[string]any{"chunk": "abc"}}),
			want: []cdcEntry{{sec: 1700000000, nsec: 5, rec: cdcRec2}},
		},
		{
			name: "message/nil option", mode: forward.ModeMessage, tag: "app.log",
			in:   cdcMarshal(tb, []any{"app.log", 1700000000, cdcRec1, nil}),
			want: []cdcEntry{{sec: 1700000000, rec: cdcRec1}},
		},
		{
			name: "forward", mode: forward.ModeForward, tag: "fw",
			in: cdcMarshal(tb, []any{"fw", []any{
				[]any{cdcET(1700000000, 1), cdcRec1},
				[]any{1700000001, cdcRec2},
			}}),
			want: []cdcEntry{{sec: 1700000000, nsec: 1, rec: cdcRec1}, {sec: 1700000001, rec: cdcRec2}},
		},
		{
			name: "forward/option", mode: forward.ModeForward, tag: "fw", chunk: "Y2h1bmsx",
			in: cdcMarshal(tb, []any{"fw", []any{
				[]any{cdcET(1700000000, 1), cdcRec1},
				[]any{cdcET8(1700000001, 2), cdcRec2},
			}, map[string]any{"chunk": "Y2h1bmsx", "size": 2, "unknown": []any{1, 2}}}),
			want: []cdcEntry{{sec: 1700000000, nsec: 1, rec: cdcRec1}, {sec: 1700000001, nsec: 2, rec: cdcRec2}},
		},
		{
			name: "forward/empty", mode: forward.ModeForward, tag: "fw",
			in: cdcMarshal(tb, []any{"fw", []any{}}),
		},
		{
			name: "packed/bin", mode: forward.ModePackedForward, tag: "fluent.bit", chunk: "fb-chunk",
			in:   cdcMarshal(tb, []any{"fluent.bit", threeEntries, map[string]any{"size": 3, "chunk": "fb-chunk"}}),
			want: threeWant,
		},
		{
			name: "packed/str", mode: forward.ModePackedForward, tag: "fluentd", chunk: fluentdChunkID,
			in:   cdcMarshal(tb, []any{"fluentd", cdcStr(threeEntries), map[string]any{"size": 3, "chunk": fluentdChunkID}}),
			want: threeWant,
		},
		{
			name: "packed/no option", mode: forward.ModePackedForward, tag: "fluentd",
			in:   cdcMarshal(tb, []any{"fluentd", threeEntries}),
			want: threeWant,
		},
		{
			name: "packed/text", mode: forward.ModePackedForward, tag: "fluentd", chunk: "id",
			in:   cdcMarshal(tb, []any{"fluentd", cdcStr(threeEntries), map[string]any{"compressed": "text", "chunk": "id"}}),
			want: threeWant,
		},
		{
			name: "packed/empty", mode: forward.ModePackedForward, tag: "fluentd",
			in: cdcMarshal(tb, []any{"fluentd", []byte{}, map[string]any{"size": 0}}),
		},
		{
			name: "packed/signal", mode: forward.ModePackedForward, tag: "metrics", signal: 1,
			in:   cdcMarshal(tb, []any{"metrics", threeEntries, map[string]any{"fluent_signal": 1}}),
			want: threeWant,
		},
		{
			name: "gzip/one member", mode: forward.ModeCompressedPackedForward, tag: "gz", chunk: "gzc", comp: "gzip",
			in:   cdcMarshal(tb, []any{"gz", cdcGzip(tb, threeEntries), map[string]any{"size": 3, "chunk": "gzc", "compressed": "gzip"}}),
			want: threeWant,
		},
		{
			name: "gzip/one member str", mode: forward.ModeCompressedPackedForward, tag: "gz", comp: "gzip",
			in:   cdcMarshal(tb, []any{"gz", cdcStr(cdcGzip(tb, threeEntries)), map[string]any{"compressed": "gzip"}}),
			want: threeWant,
		},
		{
			name: "gzip/several members", mode: forward.ModeCompressedPackedForward, tag: "gz", chunk: "multi", comp: "gzip",
			in: cdcMarshal(tb, []any{"gz",
				cdcConcat(cdcGzip(tb, member1), cdcGzip(tb, member2), cdcGzip(tb, member3)),
				map[string]any{"compressed": "gzip", "chunk": "multi", "size": 4}}),
			want: append(append([]cdcEntry(nil), threeWant...), cdcEntry{sec: 1700000003, nsec: 3, rec: cdcRec1}),
		},
		{
			name: "zstd", mode: forward.ModeCompressedPackedForward, tag: "zs", chunk: "z", comp: "zstd",
			in:   cdcMarshal(tb, []any{"zs", cdcZstd(tb, threeEntries), map[string]any{"compressed": "zstd", "chunk": "z"}}),
			want: threeWant,
		},
		{
			name: "zstd/several frames", mode: forward.ModeCompressedPackedForward, tag: "zs", comp: "zstd",
			in: cdcMarshal(tb, []any{"zs",
				cdcConcat(cdcZstd(tb, member1), cdcZstdStream(tb, member2), cdcZstd(tb, member3)),
				map[string]any{"compressed": "zstd"}}),
			want: append(append([]cdcEntry(nil), threeWant...), cdcEntry{sec: 1700000003, nsec: 3, rec: cdcRec1}),
		},
		{
			name: "time/eventtime fixext8", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", cdcET(1700000000, 999999999), cdcRec1}),
			want: []cdcEntry{{sec: 1700000000, nsec: 999999999, rec: cdcRec1}},
		},
		{
			name: "time/eventtime ext8", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", cdcET8(1700000000, 42), cdcRec1}),
			want: []cdcEntry{{sec: 1700000000, nsec: 42, rec: cdcRec1}},
		},
		{
			name: "time/eventtime max sec", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", cdcET(math.MaxUint32, 0), cdcRec1}),
			want: []cdcEntry{{sec: math.MaxUint32, rec: cdcRec1}},
		},
		{
			name: "time/positive fixint", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", 7, cdcRec1}),
			want: []cdcEntry{{sec: 7, rec: cdcRec1}},
		},
		{
			name: "time/int", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", int64(1700000000), cdcRec1}),
			want: []cdcEntry{{sec: 1700000000, rec: cdcRec1}},
		},
		{
			name: "time/uint32 above 2^31", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", uint32(3000000000), cdcRec1}),
			want: []cdcEntry{{sec: 3000000000, rec: cdcRec1}},
		},
		{
			name: "time/uint64", mode: forward.ModeMessage, tag: "t",
			in:   cdcConcat([]byte{0x93, 0xa1, 't', 0xcf, 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00}, cdcMarshal(tb, cdcRec1)),
			want: []cdcEntry{{sec: 0x6553f100, rec: cdcRec1}},
		},
		{
			// Negative integer seconds are accepted as they are (before 1970).
			name: "time/negative int", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", -5, cdcRec1}),
			want: []cdcEntry{{sec: -5, rec: cdcRec1}},
		},
		{
			name: "time/float64", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", 1700000000.25, cdcRec1}),
			want: []cdcEntry{{sec: 1700000000, nsec: 250000000, rec: cdcRec1}},
		},
		{
			name: "time/float32", mode: forward.ModeMessage, tag: "t",
			in:   cdcMarshal(tb, []any{"t", float32(1024.75), cdcRec1}),
			want: []cdcEntry{{sec: 1024, nsec: 750000000, rec: cdcRec1}},
		},
		{
			name: "time/float in forward", mode: forward.ModeForward, tag: "t",
			in:   cdcMarshal(tb, []any{"t", []any{[]any{1700000000.5, cdcRec1}, []any{float32(2.25), cdcRec2}}}),
			want: []cdcEntry{{sec: 1700000000, nsec: 500000000, rec: cdcRec1}, {sec: 2, nsec: 250000000, rec: cdcRec2}},
		},
		{
			name: "metadata/forward", mode: forward.ModeForward, tag: "fb",
			in: cdcMarshal(tb, []any{"fb", []any{
				[]any{[]any{cdcET(1700000000, 7), map[string]any{"meta": 1}}, cdcRec1},
				[]any{[]any{cdcET(1700000001, 8), map[string]any{}}, cdcRec2},
				[]any{cdcET(1700000002, 9), cdcRec3},
			}}),
			want: []cdcEntry{
				{sec: 1700000000, nsec: 7, rec: cdcRec1, meta: map[string]any{"meta": 1}},
				{sec: 1700000001, nsec: 8, rec: cdcRec2, meta: map[string]any{}},
				{sec: 1700000002, nsec: 9, rec: cdcRec3},
			},
		},
		{
			name: "metadata/packed", mode: forward.ModePackedForward, tag: "fb", chunk: "m",
			in: cdcMarshal(tb, []any{"fb", cdcEntriesPayload(tb,
				[]any{[]any{cdcET(1700000000, 7), map[string]any{"meta": 1}}, cdcRec1},
				[]any{[]any{cdcET8(1700000001, 8), map[string]any{"otlp": map[string]any{"k": "v"}}}, cdcRec2},
			), map[string]any{"chunk": "m"}}),
			want: []cdcEntry{
				{sec: 1700000000, nsec: 7, rec: cdcRec1, meta: map[string]any{"meta": 1}},
				{sec: 1700000001, nsec: 8, rec: cdcRec2, meta: map[string]any{"otlp": map[string]any{"k": "v"}}},
			},
		},
		{
			name: "metadata/gzip", mode: forward.ModeCompressedPackedForward, tag: "fb", comp: "gzip",
			in: cdcMarshal(tb, []any{"fb", cdcGzip(tb, cdcEntriesPayload(tb,
				[]any{[]any{cdcET(1700000000, 7), map[string]any{"meta": 1}}, cdcRec1},
			)), map[string]any{"compressed": "gzip"}}),
			want: []cdcEntry{{sec: 1700000000, nsec: 7, rec: cdcRec1, meta: map[string]any{"meta": 1}}},
		},
	}
}

// cdcCheckEvent asserts everything about a decoded valid case.
func cdcCheckEvent(t *testing.T, c cdcCase, ev forward.Event, n int, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if n != len(c.in) {
		t.Errorf("n = %d, want %d", n, len(c.in))
	}
	if ev.Keepalive {
		t.Errorf("Keepalive set on a %s event", c.mode)
	}
	if ev.Mode != c.mode {
		t.Errorf("Mode = %v, want %v", ev.Mode, c.mode)
	}
	if string(ev.Tag) != c.tag {
		t.Errorf("Tag = %q, want %q", ev.Tag, c.tag)
	}
	if ev.Count != len(c.want) {
		t.Errorf("Count = %d, want %d", ev.Count, len(c.want))
	}
	switch id := c.chunk.(type) {
	case nil:
		if ev.Chunk != nil {
			t.Errorf("Chunk = %q, want nil", ev.Chunk)
		}
	case string:
		if ev.Chunk == nil || string(ev.Chunk) != id {
			t.Errorf("Chunk = %q, want %q", ev.Chunk, id)
		}
	}
	if ev.Compression != c.comp {
		t.Errorf("Compression = %q, want %q", ev.Compression, c.comp)
	}
	if ev.Signal != c.signal {
		t.Errorf("Signal = %d, want %d", ev.Signal, c.signal)
	}
	cdcCheckEntries(t, ev.Entries, c.want)
}

func TestCodecDecodeModes(t *testing.T) {
	for _, c := range cdcValidCases(t) {
		t.Run(c.name, func(t *testing.T) {
			// A fresh decoder has no scratch space yet: the first value must
			// decode as well as later ones.
			d := forward.NewDecoder(forward.Limits{})
			defer d.Close()
			ev, n, err := d.Decode(c.in)
			cdcCheckEvent(t, c, ev, n, err)
		})
	}
}

// TestCodecDecodeReusedDecoder decodes every case with one decoder, twice, so
// that scratch space left by one value is reused by the next.
func TestCodecDecodeReusedDecoder(t *testing.T) {
	d := forward.NewDecoder(forward.Limits{})
	defer d.Close()
	cases := cdcValidCases(t)
	for round := 0; round < 2; round++ {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				ev, n, err := d.Decode(c.in)
				cdcCheckEvent(t, c, ev, n, err)
			})
		}
	}
}

func TestCodecDecodeKeepalive(t *testing.T) {
	d := forward.NewDecoder(forward.Limits{})
	ev, n, err := d.Decode([]byte{0xc0, 0x91}) // nil then the start of something else
	if err != nil || n != 1 || !ev.Keepalive {
		t.Fatalf("Decode(nil) = %+v, %d, %v; want keepalive, 1, nil", ev, n, err)
	}
	if ev.Mode != 0 || ev.Count != 0 || ev.Entries != nil || ev.Tag != nil {
		t.Errorf("keepalive event has fields set: %+v", ev)
	}
}

func TestCodecDecodeEmpty(t *testing.T) {
	d := forward.NewDecoder(forward.Limits{})
	if _, n, err := d.Decode(nil); err != forward.ErrShort || n != 0 {
		t.Fatalf("Decode(nil) = %d, %v; want 0, ErrShort", n, err)
	}
}

// TestCodecDecodeFraming decodes many values that share one buffer.
func TestCodecDecodeFraming(t *testing.T) {
	cases := cdcValidCases(t)
	var stream []byte
	for i, c := range cases {
		stream = append(stream, c.in...)
		if i%3 == 0 {
			stream = append(stream, 0xc0) // keepalives between values
		}
	}
	d := forward.NewDecoder(forward.Limits{})
	defer d.Close()
	off := 0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, n, err := d.Decode(stream[off:])
			cdcCheckEvent(t, c, ev, n, err)
			off += len(c.in)
			if i%3 == 0 {
				ev, n, err := d.Decode(stream[off:])
				if err != nil || n != 1 || !ev.Keepalive {
					t.Fatalf("keepalive: %+v, %d, %v", ev, n, err)
				}
				off++
			}
		})
		if t.Failed() {
			t.FailNow()
		}
	}
	if off != len(stream) {
		t.Fatalf("consumed %d of %d bytes", off, len(stream))
	}
	if _, _, err := d.Decode(stream[off:]); err != forward.ErrShort {
		t.Fatalf("Decode at end of stream = %v, want ErrShort", err)
	}
}

// TestCodecDecodeEveryPrefix feeds each value as every strict prefix of
// itself: each must be ErrShort (exactly, the listener compares with ==),
// and the full value must then decode.
func TestCodecDecodeEveryPrefix(t *testing.T) {
	for _, c := range cdcValidCases(t) {
		t.Run(c.name, func(t *testing.T) {
			d := forward.NewDecoder(forward.Limits{})
			defer d.Close()
			for i := 0; i < len(c.in); i++ {
				// A copy so that reading past i would be caught by the race
				// detector / bounds checks rather than silently succeed.
				p := append([]byte(nil), c.in[:i]...)
				ev, n, err := d.Decode(p)
				if err != forward.ErrShort {
					t.Fatalf("Decode(in[:%d]) of %d = %+v, %d, %v; want ErrShort", i, len(c.in), ev, n, err)
				}
				if n != 0 {
					t.Fatalf("Decode(in[:%d]) n = %d on ErrShort", i, n)
				}
			}
			ev, n, err := d.Decode(c.in)
			cdcCheckEvent(t, c, ev, n, err)
		})
	}
}

// TestCodecDecodeDoesNotModifyInput checks that decoding leaves the input as it was.
func TestCodecDecodeDoesNotModifyInput(t *testing.T) {
	d := forward.NewDecoder(forward.Limits{})
	defer d.Close()
	for _, c := range cdcValidCases(t) {
		before := append([]byte(nil), c.in...)
		if _, _, err := d.Decode(c.in); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(before, c.in) {
			t.Fatalf("%s: Decode modified its input", c.name)
		}
	}
}

// TestCodecMessageEntriesAreCopied checks that the entry built for a Message
// event is a proper [time, record] entry (array header added).
func TestCodecMessageEntriesAreCopied(t *testing.T) {
	rec := cdcMarshal(t, cdcRec1) // encoded once: map order is not stable
	in := cdcMarshal(t, []any{"m", cdcET(1, 2), cdcRaw(rec)})
	d := forward.NewDecoder(forward.Limits{})
	ev, _, err := d.Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	want := cdcMarshal(t, []any{cdcET(1, 2), cdcRaw(rec)})
	if !bytes.Equal(ev.Entries, want) {
		t.Fatalf("Entries = %x, want %x", ev.Entries, want)
	}
}

func TestCodecModeString(t *testing.T) {
	for m, want := range map[forward.Mode]string{
		forward.ModeMessage: "message", forward.ModeForward: "forward", forward.ModePackedForward: "packed",
		forward.ModeCompressedPackedForward: "compressed", 0: "unknown", 99: "unknown",
	} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", m, got, want)
		}
	}
}

func TestCodecDecompressedSizeAtLimit(t *testing.T) {
	// One entry of exactly 4096 bytes: 0x92 0x01 0x81 0xa1 'a' + str16(4088).
	// (zstd frames declare a window of at least 1 KiB, which must fit in the
	// limit too, so the limit is not tiny.)
	const limit = 4096
	entry := msgp.AppendStr([]byte{0x92, 0x01, 0x81, 0xa1, 'a'}, strings.Repeat("x", limit-8))
	if len(entry) != limit {
		t.Fatalf("entry is %d bytes", len(entry))
	}
	for _, comp := range []string{"gzip", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			var payload []byte
			if comp == "gzip" {
				payload = cdcGzip(t, entry)
			} else {
				payload = cdcZstd(t, entry)
			}
			in := cdcMarshal(t, []any{"t", payload, map[string]any{"compressed": comp}})
			d := forward.NewDecoder(forward.Limits{MaxDecompressedBytes: limit})
			defer d.Close()
			ev, _, err := d.Decode(in)
			if err != nil || ev.Count != 1 {
				t.Fatalf("at the limit: count %d, %v", ev.Count, err)
			}
			d2 := forward.NewDecoder(forward.Limits{MaxDecompressedBytes: limit - 1})
			defer d2.Close()
			_, _, err = d2.Decode(in)
			cdcWantReason(t, err, forward.ReasonDecompressMax)
		})
	}
}

func TestCodecChunkSizeAtLimit(t *testing.T) {
	in := cdcMarshal(t, []any{"t", cdcEntriesPayload(t, []any{1, cdcRec1}, []any{2, cdcRec2})})
	d := forward.NewDecoder(forward.Limits{MaxChunkBytes: len(in)})
	if _, n, err := d.Decode(in); err != nil || n != len(in) {
		t.Fatalf("value of exactly MaxChunkBytes: %d, %v", n, err)
	}
	d = forward.NewDecoder(forward.Limits{MaxChunkBytes: len(in) - 1})
	_, _, err := d.Decode(in)
	cdcWantReason(t, err, forward.ReasonTooLarge)
}

// cdcWantReason asserts that err is a *forward.Error with the reason.
func cdcWantReason(tb testing.TB, err error, reason string) {
	tb.Helper()
	var fe *forward.Error
	if !errors.As(err, &fe) {
		tb.Fatalf("error = %v (%T), want *forward.Error with reason %q", err, err, reason)
	}
	if fe.Reason != reason {
		tb.Fatalf("reason = %q (%v), want %q", fe.Reason, err, reason)
	}
	if fe.Error() == "" || fe.Unwrap() == nil {
		tb.Fatalf("error %#v has no message or cause", fe)
	}
}

// cdcNested returns a msgpack record {"a": [[[...1...]]]} whose arrays nest
// depth levels below the record map.
func cdcNested(depth int) []byte {
	b := []byte{0x81, 0xa1, 'a'}
	for i := 0; i < depth; i++ {
		b = append(b, 0x91)
	}
	return append(b, 0x01)
}

func TestCodecBadInput(t *testing.T) {
	rec := cdcMarshal(t, cdcRec1)
	entries := cdcEntriesPayload(t, []any{cdcET(1, 0), cdcRec1}, []any{cdcET(2, 0), cdcRec2})
	var zeros bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&zeros, gzip.BestCompression)
	gw.Write(make([]byte, 10<<20))
	gw.Close()
	gzipBomb := zeros.Bytes()
	zstdBomb := cdcZstd(t, make([]byte, 10<<20))
	corruptGzip := cdcGzip(t, entries)
	corruptGzip[len(corruptGzip)-5] ^= 0xff // CRC32 of the trailer
	truncatedGzip := cdcGzip(t, entries)
	truncatedGzip = truncatedGzip[:len(truncatedGzip)-4]
	gzipThenGarbage := cdcConcat(cdcGzip(t, entries), []byte("trailing garbage"))
	corruptZstd := cdcZstd(t, entries)
	corruptZstd = corruptZstd[:len(corruptZstd)-3]
	deep := cdcNested(msgp.MaxDepth + 10)
	small := forward.Limits{MaxDecompressedBytes: 1 << 20}

	cases := []struct {
		name   string
		in     []byte
		limits forward.Limits
		reason string
	}{
		// Not a Forward event at all.
		{name: "event is a str", in: cdcMarshal(t, "hello"), reason: forward.ReasonType},
		{name: "event is an int", in: cdcMarshal(t, 42), reason: forward.ReasonType},
		{name: "event is a map", in: cdcMarshal(t, map[string]any{"tag": "t"}), reason: forward.ReasonType},
		{name: "event is a bool", in: []byte{0xc3}, reason: forward.ReasonType},
		{name: "http request", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), reason: forward.ReasonType},
		{name: "0xc1", in: []byte{0xc1}, reason: forward.ReasonMalformed},
		{name: "0xc1 as tag", in: []byte{0x92, 0xc1, 0x01}, reason: forward.ReasonMalformed},
		{name: "0xc1 as second", in: []byte{0x92, 0xa1, 't', 0xc1}, reason: forward.ReasonMalformed},
		{name: "0xc1 in record", in: cdcConcat([]byte{0x93, 0xa1, 't', 0x01, 0x81, 0xa1, 'k', 0xc1}), reason: forward.ReasonMalformed},
		{name: "0xc1 in packed entry", in: cdcMarshal(t, []any{"t", []byte{0x92, 0x01, 0x81, 0xa1, 'k', 0xc1}}), reason: forward.ReasonMalformed},
		{name: "array of 0", in: []byte{0x90}, reason: forward.ReasonType},
		{name: "array of 1", in: cdcMarshal(t, []any{"t"}), reason: forward.ReasonType},
		{name: "array of 5", in: cdcMarshal(t, []any{"t", 1, rec, nil, nil}), reason: forward.ReasonType},
		{name: "message of 2", in: cdcMarshal(t, []any{"t", 1}), reason: forward.ReasonType},
		{name: "forward of 4", in: cdcMarshal(t, []any{"t", []any{}, nil, nil}), reason: forward.ReasonType},
		{name: "packed of 4", in: cdcMarshal(t, []any{"t", entries, nil, nil}), reason: forward.ReasonType},

		// Tag.
		{name: "tag int", in: cdcMarshal(t, []any{1, 1, cdcRec1}), reason: forward.ReasonTag},
		{name: "tag bin", in: cdcMarshal(t, []any{[]byte("t"), 1, cdcRec1}), reason: forward.ReasonTag},
		{name: "tag nil", in: cdcMarshal(t, []any{nil, 1, cdcRec1}), reason: forward.ReasonTag},
		{name: "tag empty", in: cdcMarshal(t, []any{"", 1, cdcRec1}), reason: forward.ReasonTag},
		{name: "tag control char", in: cdcMarshal(t, []any{"a\nb", 1, cdcRec1}), reason: forward.ReasonTag},
		{name: "tag not utf8", in: cdcMarshal(t, []any{"a\xffb", 1, cdcRec1}), reason: forward.ReasonTag},
		{name: "tag too long", in: cdcMarshal(t, []any{strings.Repeat("t", 11), 1, cdcRec1}), limits: forward.Limits{MaxTagBytes: 10}, reason: forward.ReasonTag},

		// Second element.
		{name: "second nil", in: cdcMarshal(t, []any{"t", nil, cdcRec1}), reason: forward.ReasonType},
		{name: "second bool", in: cdcMarshal(t, []any{"t", true, cdcRec1}), reason: forward.ReasonType},
		{name: "second map", in: cdcMarshal(t, []any{"t", cdcRec1}), reason: forward.ReasonType},

		// Entries.
		{name: "entry not an array", in: cdcMarshal(t, []any{"t", []any{"x"}}), reason: forward.ReasonEntry},
		{name: "entry an int", in: cdcMarshal(t, []any{"t", []any{1}}), reason: forward.ReasonEntry},
		{name: "entry of 3", in: cdcMarshal(t, []any{"t", []any{[]any{1, cdcRaw(rec), 3}}}), reason: forward.ReasonEntry},
		{name: "entry of 1", in: cdcMarshal(t, []any{"t", []any{[]any{1}}}), reason: forward.ReasonEntry},
		{name: "packed entry of 3", in: cdcMarshal(t, []any{"t", cdcMarshal(t, []any{1, cdcRec1, 3})}), reason: forward.ReasonEntry},
		{name: "packed entry not an array", in: cdcMarshal(t, []any{"t", cdcMarshal(t, cdcRec1)}), reason: forward.ReasonEntry},
		{name: "packed last entry cut", in: cdcMarshal(t, []any{"t", entries[:len(entries)-1]}), reason: forward.ReasonEntry},
		{name: "packed last entry cut after header", in: cdcMarshal(t, []any{"t", cdcConcat(entries, []byte{0x92})}), reason: forward.ReasonEntry},
		{name: "gzip last entry cut", in: cdcMarshal(t, []any{"t", cdcGzip(t, entries[:len(entries)-2]), map[string]any{"compressed": "gzip"}}), reason: forward.ReasonEntry},
		{name: "packed payload not entries", in: cdcMarshal(t, []any{"t", "notatime", cdcRec1}), reason: forward.ReasonEntry},

		// Time.
		{name: "time str in forward", in: cdcMarshal(t, []any{"t", []any{[]any{"1700000000", cdcRec1}}}), reason: forward.ReasonTime},
		{name: "time nil in forward", in: cdcMarshal(t, []any{"t", []any{[]any{nil, cdcRec1}}}), reason: forward.ReasonTime},
		{name: "time map in packed", in: cdcMarshal(t, []any{"t", cdcMarshal(t, []any{cdcRec1, cdcRec1})}), reason: forward.ReasonTime},
		{name: "time ext type 5", in: cdcMarshal(t, []any{"t", cdcRaw([]byte{0xd7, 0x05, 0, 0, 0, 1, 0, 0, 0, 0}), cdcRec1}), reason: forward.ReasonTime},
		{name: "time ext 4 bytes", in: cdcMarshal(t, []any{"t", cdcRaw([]byte{0xd6, 0x00, 0, 0, 0, 1}), cdcRec1}), reason: forward.ReasonTime},
		{name: "time ext8 with 4 bytes", in: cdcMarshal(t, []any{"t", cdcRaw([]byte{0xc7, 0x04, 0x00, 0, 0, 0, 1}), cdcRec1}), reason: forward.ReasonTime},
		{name: "time ext16 type 0 with 16 bytes", in: cdcMarshal(t, []any{"t", cdcRaw(append([]byte{0xd8, 0x00}, make([]byte, 16)...)), cdcRec1}), reason: forward.ReasonTime},
		{name: "time nsec above 1e9", in: cdcMarshal(t, []any{"t", cdcET(1, 1e9), cdcRec1}), reason: forward.ReasonTime},
		{name: "time NaN", in: cdcMarshal(t, []any{"t", math.NaN(), cdcRec1}), reason: forward.ReasonTime},
		{name: "time +Inf", in: cdcMarshal(t, []any{"t", math.Inf(1), cdcRec1}), reason: forward.ReasonTime},
		{name: "time huge float", in: cdcMarshal(t, []any{"t", 1e300, cdcRec1}), reason: forward.ReasonTime},
		{name: "time uint64 above MaxInt64", in: cdcConcat([]byte{0x93, 0xa1, 't', 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0}, rec), reason: forward.ReasonTime},
		{name: "metadata not a map", in: cdcMarshal(t, []any{"t", []any{[]any{[]any{cdcET(1, 0), 5}, cdcRec1}}}), reason: forward.ReasonTime},
		{name: "metadata array of 3", in: cdcMarshal(t, []any{"t", []any{[]any{[]any{cdcET(1, 0), cdcRec1, 1}, cdcRec1}}}), reason: forward.ReasonTime},
		{name: "metadata bad time", in: cdcMarshal(t, []any{"t", []any{[]any{[]any{"x", cdcRec1}, cdcRec1}}}), reason: forward.ReasonTime},

		// Record.
		{name: "record str", in: cdcMarshal(t, []any{"t", 1, "x"}), reason: forward.ReasonRecord},
		{name: "record nil", in: cdcMarshal(t, []any{"t", cdcET(1, 0), nil}), reason: forward.ReasonRecord},
		{name: "record array", in: cdcMarshal(t, []any{"t", 1.5, []any{1}}), reason: forward.ReasonRecord},
		{name: "record array in forward", in: cdcMarshal(t, []any{"t", []any{[]any{1, []any{1}}}}), reason: forward.ReasonRecord},
		{name: "record int in packed", in: cdcMarshal(t, []any{"t", cdcMarshal(t, []any{1, 2})}), reason: forward.ReasonRecord},
		{name: "record int after metadata", in: cdcMarshal(t, []any{"t", []any{[]any{[]any{cdcET(1, 0), cdcRec1}, 2}}}), reason: forward.ReasonRecord},

		// Options.
		{name: "option str", in: cdcMarshal(t, []any{"t", []any{[]any{1, cdcRaw(rec)}}, "x"}), reason: forward.ReasonOption},
		{name: "option array", in: cdcMarshal(t, []any{"t", entries, []any{}}), reason: forward.ReasonOption},
		{name: "option int in message", in: cdcMarshal(t, []any{"t", 1, cdcRec1, 5}), reason: forward.ReasonOption},
		{name: "option key int", in: cdcMarshal(t, []any{"t", entries, map[int]any{1: "x"}}), reason: forward.ReasonOption},
		{name: "chunk option int", in: cdcMarshal(t, []any{"t", entries, map[string]any{"chunk": 1}}), reason: forward.ReasonOption},
		{name: "chunk option nil", in: cdcMarshal(t, []any{"t", entries, map[string]any{"chunk": nil}}), reason: forward.ReasonOption},
		{name: "compressed option int", in: cdcMarshal(t, []any{"t", entries, map[string]any{"compressed": 1}}), reason: forward.ReasonOption},
		{name: "size option str", in: cdcMarshal(t, []any{"t", entries, map[string]any{"size": "2"}}), reason: forward.ReasonOption},
		{name: "fluent_signal option str", in: cdcMarshal(t, []any{"t", entries, map[string]any{"fluent_signal": "logs"}}), reason: forward.ReasonOption},
		{name: "gzip on message", in: cdcMarshal(t, []any{"t", 1, cdcRec1, map[string]any{"compressed": "gzip"}}), reason: forward.ReasonOption},
		{name: "gzip on forward", in: cdcMarshal(t, []any{"t", []any{[]any{1, cdcRaw(rec)}}, map[string]any{"compressed": "gzip"}}), reason: forward.ReasonOption},
		{name: "zstd on forward", in: cdcMarshal(t, []any{"t", []any{[]any{1, cdcRaw(rec)}}, map[string]any{"compressed": "zstd"}}), reason: forward.ReasonOption},
		{name: "0xc1 in unknown option", in: cdcMarshal(t, []any{"t", entries, cdcRaw([]byte{0x81, 0xa1, 'x', 0xc1})}), reason: forward.ReasonMalformed},

		// Size limits.
		{name: "too large complete", in: cdcMarshal(t, []any{"t", entries}), limits: forward.Limits{MaxChunkBytes: 20}, reason: forward.ReasonTooLarge},
		{name: "too large forward complete", in: cdcMarshal(t, []any{"t", []any{[]any{1, cdcRaw(rec)}, []any{2, cdcRaw(rec)}}}), limits: forward.Limits{MaxChunkBytes: 20}, reason: forward.ReasonTooLarge},
		{name: "too large incomplete", in: cdcMarshal(t, []any{"t", entries})[:30], limits: forward.Limits{MaxChunkBytes: 20}, reason: forward.ReasonTooLarge},
		{name: "bin32 header above limit", in: []byte{0x92, 0xa1, 't', 0xc6, 0x00, 0x10, 0x00, 0x01}, limits: forward.Limits{MaxChunkBytes: 1 << 20}, reason: forward.ReasonTooLarge},
		{name: "str32 header above limit", in: []byte{0x93, 0xa1, 't', 0xdb, 0x7f, 0xff, 0xff, 0xff}, limits: forward.Limits{MaxChunkBytes: 1 << 20}, reason: forward.ReasonTooLarge},
		{name: "bin32 header above default limit", in: []byte{0x92, 0xa1, 't', 0xc6, 0xff, 0xff, 0xff, 0xff}, reason: forward.ReasonTooLarge},

		// Compression.
		{name: "gzip bomb", in: cdcMarshal(t, []any{"t", gzipBomb, map[string]any{"compressed": "gzip"}}), limits: small, reason: forward.ReasonDecompressMax},
		{name: "gzip bomb in 2nd member", in: cdcMarshal(t, []any{"t", cdcConcat(cdcGzip(t, entries), gzipBomb), map[string]any{"compressed": "gzip"}}), limits: small, reason: forward.ReasonDecompressMax},
		{name: "zstd bomb", in: cdcMarshal(t, []any{"t", zstdBomb, map[string]any{"compressed": "zstd"}}), limits: small, reason: forward.ReasonDecompressMax},
		{name: "zstd bomb streamed", in: cdcMarshal(t, []any{"t", cdcZstdStream(t, make([]byte, 10<<20)), map[string]any{"compressed": "zstd"}}), limits: small, reason: forward.ReasonDecompressMax},
		{name: "zstd bomb in 2nd frame", in: cdcMarshal(t, []any{"t", cdcConcat(cdcZstd(t, entries), zstdBomb), map[string]any{"compressed": "zstd"}}), limits: small, reason: forward.ReasonDecompressMax},
		{name: "gzip not gzip", in: cdcMarshal(t, []any{"t", entries, map[string]any{"compressed": "gzip"}}), reason: forward.ReasonCompression},
		{name: "gzip empty payload", in: cdcMarshal(t, []any{"t", []byte{}, map[string]any{"compressed": "gzip"}}), reason: forward.ReasonCompression},
		{name: "gzip bad crc", in: cdcMarshal(t, []any{"t", corruptGzip, map[string]any{"compressed": "gzip"}}), reason: forward.ReasonCompression},
		{name: "gzip truncated", in: cdcMarshal(t, []any{"t", truncatedGzip, map[string]any{"compressed": "gzip"}}), reason: forward.ReasonCompression},
		{name: "gzip trailing garbage", in: cdcMarshal(t, []any{"t", gzipThenGarbage, map[string]any{"compressed": "gzip"}}), reason: forward.ReasonCompression},
		{name: "zstd corrupt", in: cdcMarshal(t, []any{"t", corruptZstd, map[string]any{"compressed": "zstd"}}), reason: forward.ReasonCompression},
		{name: "zstd not zstd", in: cdcMarshal(t, []any{"t", entries, map[string]any{"compressed": "zstd"}}), reason: forward.ReasonCompression},
		{name: "compressed lz4", in: cdcMarshal(t, []any{"t", entries, map[string]any{"compressed": "lz4"}}), reason: forward.ReasonCompression},
		{name: "compressed GZIP", in: cdcMarshal(t, []any{"t", entries, map[string]any{"compressed": "GZIP"}}), reason: forward.ReasonCompression},

		// Nesting.
		{name: "too deep in message record", in: cdcConcat([]byte{0x93, 0xa1, 't', 0x01}, deep), reason: forward.ReasonTooDeep},
		{name: "too deep in forward record", in: cdcConcat([]byte{0x92, 0xa1, 't', 0x91, 0x92, 0x01}, deep), reason: forward.ReasonTooDeep},
		{name: "too deep in packed record", in: cdcMarshal(t, []any{"t", cdcConcat([]byte{0x92, 0x01}, deep)}), reason: forward.ReasonTooDeep},
		{name: "too deep in metadata", in: cdcConcat([]byte{0x92, 0xa1, 't', 0x91, 0x92, 0x92, 0x01}, deep, rec), reason: forward.ReasonTooDeep},
		{name: "too deep in option", in: cdcConcat([]byte{0x93, 0xa1, 't'}, cdcMarshal(t, entries), []byte{0x81, 0xa1, 'x'}, deep), reason: forward.ReasonTooDeep},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := forward.NewDecoder(c.limits)
			defer d.Close()
			ev, n, err := d.Decode(c.in)
			if n != 0 {
				t.Errorf("n = %d on error", n)
			}
			if ev.Entries != nil || ev.Count != 0 {
				t.Errorf("event returned with an error: %+v", ev)
			}
			cdcWantReason(t, err, c.reason)
		})
	}
}

// TestCodecBadInputTruncated: at EOF inside a value the decoder only says
// ErrShort (the listener turns it into the "truncated" reason).
func TestCodecBadInputTruncated(t *testing.T) {
	for _, c := range cdcValidCases(t) {
		d := forward.NewDecoder(forward.Limits{})
		if _, n, err := d.Decode(c.in[:len(c.in)-1]); err != forward.ErrShort || n != 0 {
			t.Errorf("%s: truncated value: %d, %v; want 0, ErrShort", c.name, n, err)
		}
		d.Close()
	}
}

// TestCodecBin32HeaderRejectedAtOnce: a bin32/str32 header that announces a
// payload above the limit is rejected as soon as the header is there, long
// before MaxChunkBytes bytes have arrived.
func TestCodecBin32HeaderRejectedAtOnce(t *testing.T) {
	const limit = 1 << 20
	d := forward.NewDecoder(forward.Limits{MaxChunkBytes: limit})
	for _, prefix := range [][]byte{
		{0x92, 0xa1, 't', 0xc6, 0x00, 0x10, 0x00, 0x01},
		{0x93, 0xa1, 't', 0xdb, 0x00, 0x10, 0x00, 0x01},
	} {
		// Shorter than the header: nothing to judge yet.
		for i := 0; i < len(prefix); i++ {
			if _, _, err := d.Decode(prefix[:i]); err != forward.ErrShort {
				t.Fatalf("%x: %v, want ErrShort", prefix[:i], err)
			}
		}
		_, _, err := d.Decode(prefix)
		cdcWantReason(t, err, forward.ReasonTooLarge)
	}
	// A declared size at the limit itself is not rejected early.
	_, _, err := d.Decode([]byte{0x92, 0xa1, 't', 0xc6, 0x00, 0x0f, 0xff, 0xf0})
	if err != forward.ErrShort {
		t.Fatalf("declared size under the limit: %v, want ErrShort", err)
	}
}

// TestCodecErrorsDoNotPoisonDecoder decodes a valid value after each kind of
// failure with the same decoder.
func TestCodecErrorsDoNotPoisonDecoder(t *testing.T) {
	entries := cdcEntriesPayload(t, []any{cdcET(1, 0), cdcRec1})
	bad := [][]byte{
		cdcMarshal(t, []any{"t", []byte("not gzip"), map[string]any{"compressed": "gzip"}}),
		cdcMarshal(t, []any{"t", []byte("not zstd"), map[string]any{"compressed": "zstd"}}),
		cdcMarshal(t, []any{"t", cdcGzip(t, make([]byte, 2<<20)), map[string]any{"compressed": "gzip"}}),
		{0xc1},
	}
	goodGz := cdcMarshal(t, []any{"t", cdcGzip(t, entries), map[string]any{"compressed": "gzip"}})
	goodZs := cdcMarshal(t, []any{"t", cdcZstd(t, entries), map[string]any{"compressed": "zstd"}})
	d := forward.NewDecoder(forward.Limits{MaxDecompressedBytes: 1 << 20})
	defer d.Close()
	for i, b := range bad {
		if _, _, err := d.Decode(b); err == nil {
			t.Fatalf("bad %d accepted", i)
		}
		for _, g := range [][]byte{goodGz, goodZs} {
			ev, _, err := d.Decode(g)
			if err != nil || ev.Count != 1 {
				t.Fatalf("after bad %d: %d, %v", i, ev.Count, err)
			}
			cdcCheckEntries(t, ev.Entries, []cdcEntry{{sec: 1, rec: cdcRec1}})
		}
	}
}
