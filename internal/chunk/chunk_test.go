package chunk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

func enc(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func et(sec, nsec uint32) []byte { return msgp.AppendEventTime(nil, sec, nsec) }

func et8(sec, nsec uint32) []byte {
	b := []byte{0xc7, 0x08, 0x00}
	b = binary.BigEndian.AppendUint32(b, sec)
	return binary.BigEndian.AppendUint32(b, nsec)
}

func f32(f float32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0xca}, math.Float32bits(f))
}

func f64(f float64) []byte {
	return binary.BigEndian.AppendUint64([]byte{0xcb}, math.Float64bits(f))
}

func TestReadTime(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		sec  int64
		nsec int32
	}{
		{"eventtime fixext8", et(1700000000, 123456789), 1700000000, 123456789},
		{"eventtime ext8", et8(1700000000, 999999999), 1700000000, 999999999},
		{"eventtime max", et(math.MaxUint32, 0), math.MaxUint32, 0},
		{"fixint", []byte{0x05}, 5, 0},
		{"negative fixint", []byte{0xfb}, -5, 0},
		{"uint32 above 2^31", binary.BigEndian.AppendUint32([]byte{0xce}, 3000000000), 3000000000, 0},
		{"uint64", binary.BigEndian.AppendUint64([]byte{0xcf}, 1700000000), 1700000000, 0},
		{"int64 negative", binary.BigEndian.AppendUint64([]byte{0xd3}, uint64(1<<64-86400)), -86400, 0},
		{"float64 .25", f64(1700000000.25), 1700000000, 250000000},
		{"float64 .5", f64(1.5), 1, 500000000},
		{"float64 integral", f64(1700000000), 1700000000, 0},
		{"float64 negative", f64(-1.5), -2, 500000000},
		{"float64 negative integral", f64(-3), -3, 0},
		{"float32 .75", f32(1024.75), 1024, 750000000},
		{"float32 .5", f32(0.5), 0, 500000000},
		// The fraction is truncated to whole nanoseconds (as Fluent Bit does).
		{"float32 inexact", f32(1024.1), 1024, 99975585}, // float32(1024.1) = 1024.0999755859375
		{"float64 just below 2", f64(math.Nextafter(2, 0)), 1, 999999999},
		// f - floor(f) rounds to 1.0 here: nsec must stay below 1e9.
		{"float64 tiny negative", f64(-1e-17), -1, 999999999},
		{"float64 2^62", f64(1 << 62), 1 << 62, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := cat([]byte{0xc0}, c.b, []byte{0x80})
			sec, nsec, next, err := chunk.ReadTime(b, 1)
			if err != nil || sec != c.sec || nsec != c.nsec || next != 1+len(c.b) {
				t.Fatalf("ReadTime(%x) = %d, %d, %d, %v; want %d, %d, %d", c.b, sec, nsec, next, err, c.sec, c.nsec, 1+len(c.b))
			}
			for i := 0; i < len(c.b); i++ {
				if _, _, _, err := chunk.ReadTime(c.b[:i], 0); err != msgp.ErrShort {
					t.Fatalf("ReadTime(%x) = %v, want msgp.ErrShort", c.b[:i], err)
				}
			}
		})
	}
}

// TestReadTimeFloatPrecision: decimal fractions that floats cannot hold
// exactly come out within a microsecond, with nsec always in [0, 1e9).
func TestReadTimeFloatPrecision(t *testing.T) {
	for _, c := range []struct {
		f    float64
		sec  int64
		nsec int32
	}{
		{0.3, 0, 300000000},
		{1.1, 1, 100000000},
		{1700000000.1, 1700000000, 100000000},
		{1700000000.3, 1700000000, 300000000},
		{1700000000.123456789, 1700000000, 123456789},
		{1700000000.999999, 1700000000, 999999000},
		{-0.1, -1, 900000000},
	} {
		sec, nsec, _, err := chunk.ReadTime(f64(c.f), 0)
		if err != nil || sec != c.sec || nsec < 0 || nsec >= 1e9 || math.Abs(float64(nsec-c.nsec)) > 1000 {
			t.Errorf("ReadTime(%v) = %d.%09d, %v; want about %d.%09d", c.f, sec, nsec, err, c.sec, c.nsec)
		}
	}
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	var ce *chunk.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want *chunk.Error %q", err, err, reason)
	}
	if ce.Reason != reason {
		t.Fatalf("reason = %q (%v), want %q", ce.Reason, err, reason)
	}
	if ce.Error() == "" || ce.Unwrap() == nil {
		t.Fatalf("error without message or cause: %#v", ce)
	}
}

func TestReadTimeErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		b      []byte
		reason string
	}{
		{"str", []byte{0xa1, '1'}, chunk.ReasonTime},
		{"nil", []byte{0xc0}, chunk.ReasonTime},
		{"bool", []byte{0xc3}, chunk.ReasonTime},
		{"map", []byte{0x80}, chunk.ReasonTime},
		{"bin", []byte{0xc4, 0x00}, chunk.ReasonTime},
		{"ext type 5", cat([]byte{0xd7, 0x05}, make([]byte, 8)), chunk.ReasonTime},
		{"ext type -1 (msgpack timestamp)", cat([]byte{0xd6, 0xff}, make([]byte, 4)), chunk.ReasonTime},
		{"ext 0 with 4 bytes", cat([]byte{0xd6, 0x00}, make([]byte, 4)), chunk.ReasonTime},
		{"ext8 0 with 12 bytes", cat([]byte{0xc7, 12, 0x00}, make([]byte, 12)), chunk.ReasonTime},
		{"ext 0 with 16 bytes", cat([]byte{0xd8, 0x00}, make([]byte, 16)), chunk.ReasonTime},
		{"nsec 1e9", et(1, 1e9), chunk.ReasonTime},
		{"nsec max", et(1, math.MaxUint32), chunk.ReasonTime},
		{"NaN", f64(math.NaN()), chunk.ReasonTime},
		{"+Inf", f64(math.Inf(1)), chunk.ReasonTime},
		{"-Inf float32", f32(float32(math.Inf(-1))), chunk.ReasonTime},
		{"above 2^62", f64(1 << 63), chunk.ReasonTime},
		{"uint64 above MaxInt64", binary.BigEndian.AppendUint64([]byte{0xcf}, math.MaxUint64), chunk.ReasonTime},
		{"0xc1", []byte{0xc1}, chunk.ReasonMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, next, err := chunk.ReadTime(c.b, 0)
			if next != 0 {
				t.Errorf("next = %d on error", next)
			}
			wantReason(t, err, c.reason)
		})
	}
	if _, _, _, err := chunk.ReadTime(nil, 0); err != msgp.ErrShort {
		t.Errorf("ReadTime(nil) = %v, want msgp.ErrShort", err)
	}
}

func TestReadEntry(t *testing.T) {
	rec := enc(t, map[string]any{"log": "hello", "kubernetes": map[string]any{"pod_name": "p"}})
	meta := enc(t, map[string]any{"meta": 1})
	cases := []struct {
		name string
		b    []byte
		sec  int64
		nsec int32
		meta []byte
	}{
		{"eventtime", cat([]byte{0x92}, et(1700000000, 5), rec), 1700000000, 5, nil},
		{"ext8", cat([]byte{0x92}, et8(1700000000, 6), rec), 1700000000, 6, nil},
		{"int", cat([]byte{0x92}, enc(t, 1700000000), rec), 1700000000, 0, nil},
		{"float", cat([]byte{0x92}, f64(1700000000.5), rec), 1700000000, 500000000, nil},
		{"metadata", cat([]byte{0x92, 0x92}, et(1700000000, 7), meta, rec), 1700000000, 7, meta},
		{"metadata int time", cat([]byte{0x92, 0x92, 0x01, 0x80}, rec), 1, 0, []byte{0x80}},
		{"array16 header", cat([]byte{0xdc, 0x00, 0x02}, et(1, 2), rec), 1, 2, nil},
		{"empty record", cat([]byte{0x92}, et(1, 2), []byte{0x80}), 1, 2, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := cat([]byte{0xc0}, c.b, []byte{0x92})
			e, next, err := chunk.ReadEntry(b, 1)
			if err != nil || next != 1+len(c.b) {
				t.Fatalf("ReadEntry = %d, %v; want %d", next, err, 1+len(c.b))
			}
			if e.Sec != c.sec || e.Nsec != c.nsec {
				t.Errorf("time = %d.%09d, want %d.%09d", e.Sec, e.Nsec, c.sec, c.nsec)
			}
			if !bytes.Equal(e.Meta, c.meta) || (c.meta == nil) != (e.Meta == nil) {
				t.Errorf("Meta = %x, want %x", e.Meta, c.meta)
			}
			wantRec := rec
			if c.name == "empty record" {
				wantRec = []byte{0x80}
			}
			if !bytes.Equal(e.Record, wantRec) {
				t.Errorf("Record = %x, want %x", e.Record, wantRec)
			}
			for i := 0; i < len(c.b); i++ {
				if _, next, err := chunk.ReadEntry(c.b[:i], 0); err != msgp.ErrShort || next != 0 {
					t.Fatalf("ReadEntry(b[:%d]) = %d, %v; want msgp.ErrShort", i, next, err)
				}
			}
		})
	}
}

func TestReadEntryErrors(t *testing.T) {
	rec := enc(t, map[string]any{"a": 1})
	deep := []byte{0x81, 0xa1, 'a'}
	for i := 0; i < msgp.MaxDepth+5; i++ {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0x01)
	for _, c := range []struct {
		name   string
		b      []byte
		reason string
	}{
		{"not an array: int", []byte{0x01}, chunk.ReasonEntry},
		{"not an array: map", rec, chunk.ReasonEntry},
		{"not an array: str", []byte{0xa1, 'x'}, chunk.ReasonEntry},
		{"not an array: nil", []byte{0xc0}, chunk.ReasonEntry},
		{"array of 0", []byte{0x90}, chunk.ReasonEntry},
		{"array of 1", cat([]byte{0x91}, et(1, 0)), chunk.ReasonEntry},
		{"array of 3", cat([]byte{0x93}, et(1, 0), rec, rec), chunk.ReasonEntry},
		{"0xc1 for the entry", []byte{0xc1}, chunk.ReasonMalformed},
		{"time str", cat([]byte{0x92, 0xa1, '1'}, rec), chunk.ReasonTime},
		{"time nil", cat([]byte{0x92, 0xc0}, rec), chunk.ReasonTime},
		{"time ext 5", cat([]byte{0x92, 0xd7, 0x05}, make([]byte, 8), rec), chunk.ReasonTime},
		{"time ext 4 bytes", cat([]byte{0x92, 0xd6, 0x00}, make([]byte, 4), rec), chunk.ReasonTime},
		{"time 0xc1", cat([]byte{0x92, 0xc1}, rec), chunk.ReasonMalformed},
		{"metadata array of 1", cat([]byte{0x92, 0x91}, et(1, 0), rec), chunk.ReasonTime},
		{"metadata array of 3", cat([]byte{0x92, 0x93}, et(1, 0), rec, rec, rec), chunk.ReasonTime},
		{"metadata bad time", cat([]byte{0x92, 0x92, 0xa0}, rec, rec), chunk.ReasonTime},
		{"metadata not a map", cat([]byte{0x92, 0x92}, et(1, 0), []byte{0x01}, rec), chunk.ReasonTime},
		{"metadata too deep", cat([]byte{0x92, 0x92}, et(1, 0), deep, rec), chunk.ReasonTooDeep},
		{"metadata 0xc1", cat([]byte{0x92, 0x92}, et(1, 0), []byte{0x81, 0x01, 0xc1}, rec), chunk.ReasonMalformed},
		{"record int", cat([]byte{0x92}, et(1, 0), []byte{0x01}), chunk.ReasonRecord},
		{"record array", cat([]byte{0x92}, et(1, 0), []byte{0x91, 0x01}), chunk.ReasonRecord},
		{"record str", cat([]byte{0x92}, et(1, 0), []byte{0xa1, 'x'}), chunk.ReasonRecord},
		{"record nil", cat([]byte{0x92}, et(1, 0), []byte{0xc0}), chunk.ReasonRecord},
		{"record 0xc1", cat([]byte{0x92}, et(1, 0), []byte{0xc1}), chunk.ReasonMalformed},
		{"record with 0xc1 inside", cat([]byte{0x92}, et(1, 0), []byte{0x81, 0xa1, 'k', 0xc1}), chunk.ReasonMalformed},
		{"record too deep", cat([]byte{0x92}, et(1, 0), deep), chunk.ReasonTooDeep},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := cat([]byte{0xc3}, c.b)
			_, next, err := chunk.ReadEntry(b, 1)
			if next != 1 {
				t.Errorf("next = %d on error, want the input offset 1", next)
			}
			wantReason(t, err, c.reason)
		})
	}
}

// TestReadEntryStream walks a stream of entries built with msgpack/v5.
func TestReadEntryStream(t *testing.T) {
	var stream []byte
	for i := 0; i < 100; i++ {
		stream = append(stream, 0x92)
		stream = append(stream, et(uint32(1700000000+i), uint32(i))...)
		stream = append(stream, enc(t, map[string]any{"i": i, "s": "x"})...)
	}
	off, n := 0, 0
	for off < len(stream) {
		e, next, err := chunk.ReadEntry(stream, off)
		if err != nil {
			t.Fatalf("entry %d: %v", n, err)
		}
		var rec map[string]any
		if err := msgpack.Unmarshal(e.Record, &rec); err != nil {
			t.Fatal(err)
		}
		if e.Sec != int64(1700000000+n) || e.Nsec != int32(n) || rec["s"] != "x" {
			t.Fatalf("entry %d: %d.%d %v", n, e.Sec, e.Nsec, rec)
		}
		off = next
		n++
	}
	if n != 100 {
		t.Fatalf("walked %d entries", n)
	}
}

// An entry head plus a record reads back as the entry it was made from,
// with and without Fluent Bit's metadata.
func TestAppendEntryHead(t *testing.T) {
	rec := enc(t, map[string]any{"log": "x"})
	for _, meta := range [][]byte{nil, enc(t, map[string]any{"otlp": 1})} {
		in := chunk.Entry{Sec: 1795332892, Nsec: 123, Meta: meta, Record: rec}
		b := append(chunk.AppendEntryHead(nil, in), rec...)
		out, next, err := chunk.ReadEntry(b, 0)
		if err != nil || next != len(b) {
			t.Fatalf("meta %v: %v, %d of %d bytes", meta != nil, err, next, len(b))
		}
		if out.Sec != in.Sec || out.Nsec != in.Nsec || string(out.Meta) != string(meta) || string(out.Record) != string(rec) {
			t.Errorf("meta %v: read %+v", meta != nil, out)
		}
	}
}
