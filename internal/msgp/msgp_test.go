package msgp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/msgp"
)

func be(v uint64, n int) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b[8-n:]
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func rep(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

// nils is n msgpack nils, the smallest children for containers.
func nils(n int) []byte { return rep(0xc0, n) }

type skipCase struct {
	name string
	b    []byte
	typ  msgp.Type
}

// skipCases has one value of every encoding of every type family.
func skipCases() []skipCase {
	return []skipCase{
		{"positive fixint 0", []byte{0x00}, msgp.TypeUint},
		{"positive fixint 127", []byte{0x7f}, msgp.TypeUint},
		{"negative fixint -1", []byte{0xff}, msgp.TypeInt},
		{"negative fixint -32", []byte{0xe0}, msgp.TypeInt},
		{"uint8", []byte{0xcc, 0xff}, msgp.TypeUint},
		{"uint16", []byte{0xcd, 0xff, 0xff}, msgp.TypeUint},
		{"uint32", cat([]byte{0xce}, be(math.MaxUint32, 4)), msgp.TypeUint},
		{"uint64", cat([]byte{0xcf}, be(math.MaxUint64, 8)), msgp.TypeUint},
		{"int8", []byte{0xd0, 0x80}, msgp.TypeInt},
		{"int16", []byte{0xd1, 0x80, 0x00}, msgp.TypeInt},
		{"int32", cat([]byte{0xd2}, be(1<<31, 4)), msgp.TypeInt},
		{"int64", cat([]byte{0xd3}, be(1<<63, 8)), msgp.TypeInt},
		{"float32", cat([]byte{0xca}, be(uint64(math.Float32bits(1.5)), 4)), msgp.TypeFloat},
		{"float64", cat([]byte{0xcb}, be(math.Float64bits(1.5), 8)), msgp.TypeFloat},
		{"fixstr empty", []byte{0xa0}, msgp.TypeStr},
		{"fixstr 31", cat([]byte{0xbf}, rep('s', 31)), msgp.TypeStr},
		{"str8", cat([]byte{0xd9, 200}, rep('s', 200)), msgp.TypeStr},
		{"str8 empty", []byte{0xd9, 0}, msgp.TypeStr},
		{"str16", cat([]byte{0xda}, be(300, 2), rep('s', 300)), msgp.TypeStr},
		{"str32", cat([]byte{0xdb}, be(70000, 4), rep('s', 70000)), msgp.TypeStr},
		{"bin8", cat([]byte{0xc4, 3}, []byte{0, 1, 2}), msgp.TypeBin},
		{"bin8 empty", []byte{0xc4, 0}, msgp.TypeBin},
		{"bin16", cat([]byte{0xc5}, be(300, 2), rep(0xc1, 300)), msgp.TypeBin},
		{"bin32", cat([]byte{0xc6}, be(70000, 4), rep(0xc1, 70000)), msgp.TypeBin},
		{"fixext1", []byte{0xd4, 0x01, 0xaa}, msgp.TypeExt},
		{"fixext2", []byte{0xd5, 0x01, 0xaa, 0xbb}, msgp.TypeExt},
		{"fixext4", []byte{0xd6, 0xff, 1, 2, 3, 4}, msgp.TypeExt},
		{"fixext8", cat([]byte{0xd7, 0x00}, rep(0xc1, 8)), msgp.TypeExt},
		{"fixext16", cat([]byte{0xd8, 0x05}, rep(0xc1, 16)), msgp.TypeExt},
		{"ext8", cat([]byte{0xc7, 8, 0x00}, rep(0xc1, 8)), msgp.TypeExt},
		{"ext8 empty", []byte{0xc7, 0, 0x07}, msgp.TypeExt},
		{"ext16", cat([]byte{0xc8}, be(300, 2), []byte{0x02}, rep(0xc1, 300)), msgp.TypeExt},
		{"ext32", cat([]byte{0xc9}, be(70000, 4), []byte{0x02}, rep(0xc1, 70000)), msgp.TypeExt},
		{"fixarray empty", []byte{0x90}, msgp.TypeArray},
		{"fixarray 15", cat([]byte{0x9f}, nils(15)), msgp.TypeArray},
		{"array16", cat([]byte{0xdc}, be(20, 2), nils(20)), msgp.TypeArray},
		{"array16 empty", []byte{0xdc, 0, 0}, msgp.TypeArray},
		{"array32", cat([]byte{0xdd}, be(70000, 4), nils(70000)), msgp.TypeArray},
		{"fixmap empty", []byte{0x80}, msgp.TypeMap},
		{"fixmap 15", cat([]byte{0x8f}, nils(30)), msgp.TypeMap},
		{"map16", cat([]byte{0xde}, be(20, 2), nils(40)), msgp.TypeMap},
		{"map32", cat([]byte{0xdf}, be(70000, 4), nils(140000)), msgp.TypeMap},
		{"map32 empty", cat([]byte{0xdf}, be(0, 4)), msgp.TypeMap},
		{"nil", []byte{0xc0}, msgp.TypeNil},
		{"false", []byte{0xc2}, msgp.TypeBool},
		{"true", []byte{0xc3}, msgp.TypeBool},
		{"nested", cat(
			[]byte{0x82, 0xa1, 'a', 0x92, 0x90, 0x81, 0xa0, 0x80, 0xa1, 'b'},
			[]byte{0xdc, 0, 3, 0xcb}, be(math.Float64bits(-0.5), 8), []byte{0xd7, 0}, rep(1, 8), []byte{0xc4, 1, 0xc1},
		), msgp.TypeMap},
	}
}

func TestSkipEveryType(t *testing.T) {
	for _, c := range skipCases() {
		t.Run(c.name, func(t *testing.T) {
			if got := msgp.TypeOf(c.b[0]); got != c.typ {
				t.Errorf("TypeOf(0x%02x) = %v, want %v", c.b[0], got, c.typ)
			}
			if got, err := msgp.Peek(c.b, 0); got != c.typ || err != nil {
				t.Errorf("Peek = %v, %v; want %v", got, err, c.typ)
			}
			if n, err := msgp.Skip(c.b, 0); n != len(c.b) || err != nil {
				t.Fatalf("Skip = %d, %v; want %d", n, err, len(c.b))
			}
			// At an offset, with a value after it.
			b := cat([]byte{0xc3, 0xc0}, c.b, []byte{0x01})
			if n, err := msgp.Skip(b, 2); n != 2+len(c.b) || err != nil {
				t.Fatalf("Skip at offset 2 = %d, %v; want %d", n, err, 2+len(c.b))
			}
		})
	}
}

func TestSkipAgreesWithMsgpack(t *testing.T) {
	values := []any{
		nil, true, false, 0, 1, -1, 127, 128, -32, -33, 255, 256, -129, 65535, 65536, -32769,
		math.MaxInt64, math.MinInt64, uint64(math.MaxUint64), float32(1.25), 3.5,
		"", "short", strings.Repeat("x", 40), strings.Repeat("y", 300), strings.Repeat("z", 70000),
		[]byte{}, []byte{1, 2, 3}, make([]byte, 300), make([]byte, 70000),
		[]any{}, []any{1, "a", nil}, make([]any, 20), make([]any, 70000),
		map[string]any{}, map[string]any{"a": 1, "b": []any{map[string]any{"c": "d"}}},
	}
	big := map[string]any{}
	for i := 0; i < 20; i++ {
		big[fmt.Sprint(i)] = i
	}
	values = append(values, big)
	for i, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := msgp.Skip(b, 0); n != len(b) || err != nil {
			t.Errorf("value %d (%T): Skip = %d, %v; want %d", i, v, n, err, len(b))
		}
	}
}

func TestSkipEveryPrefixIsShort(t *testing.T) {
	for _, c := range skipCases() {
		t.Run(c.name, func(t *testing.T) {
			step := 1
			if len(c.b) > 2000 {
				step = 97 // the 70000-element cases: sample the prefixes
			}
			for i := 0; i < len(c.b); i += step {
				if n, err := msgp.Skip(c.b[:i], 0); err != msgp.ErrShort {
					t.Fatalf("Skip(b[:%d]) = %d, %v; want ErrShort", i, n, err)
				}
			}
			if _, err := msgp.Skip(c.b[:len(c.b)-1], 0); err != msgp.ErrShort {
				t.Fatalf("Skip without the last byte = %v; want ErrShort", err)
			}
		})
	}
}

func TestSkipHugeDeclaredSizes(t *testing.T) {
	// Headers that declare far more than is there are short, not a panic
	// nor an allocation.
	for _, b := range [][]byte{
		{0xdd, 0xff, 0xff, 0xff, 0xff},
		{0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0},
		{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		{0xc6, 0xff, 0xff, 0xff, 0xff},
		{0xc9, 0xff, 0xff, 0xff, 0xff, 0x00},
		{0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x90},
	} {
		if n, err := msgp.Skip(b, 0); err != msgp.ErrShort {
			t.Errorf("Skip(%x) = %d, %v; want ErrShort", b, n, err)
		}
	}
}

func TestMalformed(t *testing.T) {
	for _, b := range [][]byte{
		{0xc1},
		{0x91, 0xc1},
		{0x81, 0xa1, 'k', 0xc1},
		{0x81, 0xc1, 0x01},
		{0x92, 0x90, 0xc1},
	} {
		if n, err := msgp.Skip(b, 0); !errors.Is(err, msgp.ErrMalformed) {
			t.Errorf("Skip(%x) = %d, %v; want ErrMalformed", b, n, err)
		}
	}
	if typ, err := msgp.Peek([]byte{0xc1}, 0); typ != msgp.TypeInvalid || err != msgp.ErrMalformed {
		t.Errorf("Peek(0xc1) = %v, %v", typ, err)
	}
	if _, err := msgp.Peek(nil, 0); err != msgp.ErrShort {
		t.Errorf("Peek(nil) = %v", err)
	}
	if msgp.TypeOf(0xc1) != msgp.TypeInvalid {
		t.Errorf("TypeOf(0xc1) != invalid")
	}
	readers := map[string]func([]byte) error{
		"ReadArrayHeader": func(b []byte) error { _, _, err := msgp.ReadArrayHeader(b, 0); return err },
		"ReadMapHeader":   func(b []byte) error { _, _, err := msgp.ReadMapHeader(b, 0); return err },
		"ReadBytes":       func(b []byte) error { _, _, err := msgp.ReadBytes(b, 0); return err },
		"ReadStr":         func(b []byte) error { _, _, err := msgp.ReadStr(b, 0); return err },
		"ReadExt":         func(b []byte) error { _, _, _, err := msgp.ReadExt(b, 0); return err },
		"ReadInt":         func(b []byte) error { _, _, err := msgp.ReadInt(b, 0); return err },
		"ReadUint64":      func(b []byte) error { _, _, err := msgp.ReadUint64(b, 0); return err },
	}
	for name, read := range readers {
		if err := read([]byte{0xc1}); err != msgp.ErrMalformed {
			t.Errorf("%s(0xc1) = %v, want ErrMalformed", name, err)
		}
		if err := read(nil); err != msgp.ErrShort {
			t.Errorf("%s(nil) = %v, want ErrShort", name, err)
		}
	}
}

func TestSkipDepth(t *testing.T) {
	nested := func(open byte, depth int) []byte {
		var b []byte
		for i := 0; i < depth; i++ {
			b = append(b, open)
			if open == 0x81 {
				b = append(b, 0xa0) // key
			}
		}
		return append(b, 0x01)
	}
	for _, open := range []byte{0x91, 0x81} {
		ok := nested(open, msgp.MaxDepth)
		if n, err := msgp.Skip(ok, 0); n != len(ok) || err != nil {
			t.Errorf("0x%02x: %d levels: Skip = %d, %v", open, msgp.MaxDepth, n, err)
		}
		deep := nested(open, msgp.MaxDepth+1)
		if _, err := msgp.Skip(deep, 0); err != msgp.ErrTooDeep {
			t.Errorf("0x%02x: %d levels: %v, want ErrTooDeep", open, msgp.MaxDepth+1, err)
		}
		// Hostile nesting is rejected early, without waiting for the rest.
		if _, err := msgp.Skip(rep(open, 100000), 0); err != msgp.ErrTooDeep {
			t.Errorf("0x%02x: 100000 open arrays: %v, want ErrTooDeep", open, err)
		}
	}
	// Siblings do not add up: the innermost of MaxDepth arrays holds 1000
	// empty arrays and maps side by side.
	b := nested(0x91, msgp.MaxDepth-1)
	b = append(b[:len(b)-1], 0xdc, 0x03, 0xe8)
	for i := 0; i < 500; i++ {
		b = append(b, 0x90, 0x80)
	}
	if n, err := msgp.Skip(b, 0); n != len(b) || err != nil {
		t.Errorf("wide at depth: Skip = %d, %v; want %d", n, err, len(b))
	}
	// Depth is counted from where Skip starts.
	if n, err := msgp.Skip(cat([]byte{0xc0}, nested(0x91, msgp.MaxDepth)), 1); err != nil {
		t.Errorf("at offset: %d, %v", n, err)
	}
}

func TestReadInt(t *testing.T) {
	cases := []struct {
		b    []byte
		want int64
	}{
		{[]byte{0x00}, 0},
		{[]byte{0x7f}, 127},
		{[]byte{0xff}, -1},
		{[]byte{0xe0}, -32},
		{[]byte{0xcc, 0xff}, 255},
		{[]byte{0xcd, 0xff, 0xff}, 65535},
		{cat([]byte{0xce}, be(math.MaxUint32, 4)), math.MaxUint32},
		{cat([]byte{0xcf}, be(math.MaxInt64, 8)), math.MaxInt64},
		{[]byte{0xd0, 0x80}, math.MinInt8},
		{[]byte{0xd0, 0x7f}, math.MaxInt8},
		{[]byte{0xd1, 0x80, 0x00}, math.MinInt16},
		{cat([]byte{0xd2}, be(1<<31, 4)), math.MinInt32},
		{cat([]byte{0xd2}, be(math.MaxInt32, 4)), math.MaxInt32},
		{cat([]byte{0xd3}, be(1<<63, 8)), math.MinInt64},
		{cat([]byte{0xd3}, be(math.MaxInt64, 8)), math.MaxInt64},
		{cat([]byte{0xd3}, be(math.MaxUint64, 8)), -1},
	}
	for _, c := range cases {
		b := cat(c.b, []byte{0xc0})
		v, next, err := msgp.ReadInt(b, 0)
		if err != nil || v != c.want || next != len(c.b) {
			t.Errorf("ReadInt(%x) = %d, %d, %v; want %d, %d", c.b, v, next, err, c.want, len(c.b))
		}
		for i := 0; i < len(c.b); i++ {
			if _, _, err := msgp.ReadInt(c.b[:i], 0); err != msgp.ErrShort {
				t.Errorf("ReadInt(%x) = %v, want ErrShort", c.b[:i], err)
			}
		}
	}
	for _, v := range []int64{math.MinInt64, math.MinInt64 + 1, math.MinInt32 - 1, -129, -1, 0, 1, 128, math.MaxUint32 + 1, math.MaxInt64} {
		b, _ := msgpack.Marshal(v)
		got, next, err := msgp.ReadInt(b, 0)
		if err != nil || got != v || next != len(b) {
			t.Errorf("ReadInt(msgpack(%d) = %x) = %d, %d, %v", v, b, got, next, err)
		}
	}
	// uint64 above MaxInt64 does not fit.
	for _, u := range []uint64{math.MaxInt64 + 1, math.MaxUint64} {
		b := cat([]byte{0xcf}, be(u, 8))
		_, next, err := msgp.ReadInt(b, 0)
		var te *msgp.TypeError
		if !errors.As(err, &te) || next != 0 {
			t.Errorf("ReadInt(%d) = %d, %v; want a TypeError", u, next, err)
		} else if te.Got != msgp.TypeUint || te.Error() == "" {
			t.Errorf("TypeError %+v", te)
		}
	}
	for _, b := range [][]byte{{0xc0}, {0xa1, '1'}, {0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, {0x90}} {
		var te *msgp.TypeError
		if _, next, err := msgp.ReadInt(b, 0); !errors.As(err, &te) || next != 0 {
			t.Errorf("ReadInt(%x) = %v; want a TypeError", b, err)
		}
	}
}

func TestReadUint64(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want uint64
	}{
		{cat([]byte{0xcf}, be(math.MaxUint64, 8)), math.MaxUint64},
		{cat([]byte{0xcf}, be(1<<63, 8)), 1 << 63},
		{[]byte{0x05}, 5},
		{[]byte{0xd0, 0x05}, 5},
		{[]byte{0xcd, 0x01, 0x00}, 256},
	} {
		v, next, err := msgp.ReadUint64(c.b, 0)
		if err != nil || v != c.want || next != len(c.b) {
			t.Errorf("ReadUint64(%x) = %d, %d, %v", c.b, v, next, err)
		}
		for i := 0; i < len(c.b); i++ {
			if _, _, err := msgp.ReadUint64(c.b[:i], 0); err != msgp.ErrShort {
				t.Errorf("ReadUint64(%x) = %v, want ErrShort", c.b[:i], err)
			}
		}
	}
	var te *msgp.TypeError
	if _, _, err := msgp.ReadUint64([]byte{0xff}, 0); !errors.As(err, &te) {
		t.Errorf("ReadUint64(-1) = %v, want TypeError", err)
	}
}

func TestReadFloatBool(t *testing.T) {
	f32 := cat([]byte{0xca}, be(uint64(math.Float32bits(-2.5)), 4))
	f64 := cat([]byte{0xcb}, be(math.Float64bits(1e300), 8))
	if v, next, err := msgp.ReadFloat(f32, 0); v != -2.5 || next != 5 || err != nil {
		t.Errorf("float32: %v, %d, %v", v, next, err)
	}
	if v, next, err := msgp.ReadFloat(f64, 0); v != 1e300 || next != 9 || err != nil {
		t.Errorf("float64: %v, %d, %v", v, next, err)
	}
	for _, b := range [][]byte{f32, f64} {
		for i := 0; i < len(b); i++ {
			if _, _, err := msgp.ReadFloat(b[:i], 0); err != msgp.ErrShort {
				t.Errorf("ReadFloat(%x) = %v, want ErrShort", b[:i], err)
			}
		}
	}
	var te *msgp.TypeError
	if _, _, err := msgp.ReadFloat([]byte{0x01}, 0); !errors.As(err, &te) || te.Got != msgp.TypeUint {
		t.Errorf("ReadFloat(int) = %v", err)
	}
	if v, next, err := msgp.ReadBool([]byte{0xc0, 0xc3}, 1); !v || next != 2 || err != nil {
		t.Errorf("ReadBool(true) = %v, %d, %v", v, next, err)
	}
	if v, next, err := msgp.ReadBool([]byte{0xc2}, 0); v || next != 1 || err != nil {
		t.Errorf("ReadBool(false) = %v, %d, %v", v, next, err)
	}
	if _, _, err := msgp.ReadBool(nil, 0); err != msgp.ErrShort {
		t.Errorf("ReadBool(nil) = %v", err)
	}
	if _, _, err := msgp.ReadBool([]byte{0xc0}, 0); !errors.As(err, &te) || te.Got != msgp.TypeNil {
		t.Errorf("ReadBool(nil value) = %v", err)
	}
}

func TestReadBytesStrExtHeaders(t *testing.T) {
	for _, c := range skipCases() {
		var wantBytes []byte
		switch c.typ {
		case msgp.TypeStr, msgp.TypeBin:
			var s string
			var bb []byte
			if c.typ == msgp.TypeStr {
				if err := msgpack.Unmarshal(c.b, &s); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				wantBytes = []byte(s)
			} else {
				if err := msgpack.Unmarshal(c.b, &bb); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				wantBytes = bb
			}
			v, next, err := msgp.ReadBytes(c.b, 0)
			if err != nil || next != len(c.b) || !bytes.Equal(v, wantBytes) {
				t.Errorf("%s: ReadBytes = %d bytes, %d, %v", c.name, len(v), next, err)
			}
			v, next, err = msgp.ReadStr(c.b, 0)
			if c.typ == msgp.TypeStr {
				if err != nil || next != len(c.b) || !bytes.Equal(v, wantBytes) {
					t.Errorf("%s: ReadStr = %d bytes, %d, %v", c.name, len(v), next, err)
				}
			} else {
				var te *msgp.TypeError
				if !errors.As(err, &te) || te.Got != msgp.TypeBin || next != 0 {
					t.Errorf("%s: ReadStr of bin = %v", c.name, err)
				}
			}
			if _, _, err := msgp.ReadBytes(c.b[:len(c.b)-1], 0); err != msgp.ErrShort {
				t.Errorf("%s: ReadBytes short = %v", c.name, err)
			}
		case msgp.TypeExt:
			typ, data, next, err := msgp.ReadExt(c.b, 0)
			hdr := len(c.b) - len(data)
			if err != nil || next != len(c.b) || int8(c.b[hdr-1]) != typ {
				t.Errorf("%s: ReadExt = %d, %d bytes, %d, %v", c.name, typ, len(data), next, err)
			}
			if _, _, _, err := msgp.ReadExt(c.b[:len(c.b)-1], 0); err != msgp.ErrShort {
				t.Errorf("%s: ReadExt short = %v", c.name, err)
			}
		case msgp.TypeArray, msgp.TypeMap:
			var n, next, want int
			var err error
			dec := msgpack.NewDecoder(bytes.NewReader(c.b))
			if c.typ == msgp.TypeArray {
				want, err = dec.DecodeArrayLen()
			} else {
				want, err = dec.DecodeMapLen()
			}
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if c.typ == msgp.TypeArray {
				n, next, err = msgp.ReadArrayHeader(c.b, 0)
				if _, _, merr := msgp.ReadMapHeader(c.b, 0); merr == nil {
					t.Errorf("%s: ReadMapHeader of an array succeeded", c.name)
				}
			} else {
				n, next, err = msgp.ReadMapHeader(c.b, 0)
				if _, _, aerr := msgp.ReadArrayHeader(c.b, 0); aerr == nil {
					t.Errorf("%s: ReadArrayHeader of a map succeeded", c.name)
				}
			}
			if err != nil || n != want || next == 0 {
				t.Errorf("%s: header = %d, %d, %v; want %d", c.name, n, next, err, want)
			}
		default:
			for name, err := range map[string]error{
				"ReadBytes":       func() error { _, _, err := msgp.ReadBytes(c.b, 0); return err }(),
				"ReadExt":         func() error { _, _, _, err := msgp.ReadExt(c.b, 0); return err }(),
				"ReadArrayHeader": func() error { _, _, err := msgp.ReadArrayHeader(c.b, 0); return err }(),
				"ReadMapHeader":   func() error { _, _, err := msgp.ReadMapHeader(c.b, 0); return err }(),
			} {
				var te *msgp.TypeError
				if !errors.As(err, &te) || te.Got != c.typ {
					t.Errorf("%s of %s = %v, want a TypeError", name, c.name, err)
				}
			}
		}
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[msgp.Type]string{
		msgp.TypeInvalid: "invalid", msgp.TypeNil: "nil", msgp.TypeStr: "str", msgp.TypeExt: "ext", 200: "unknown",
	} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", typ, got, want)
		}
	}
	// Every byte has a type, and only 0xc1 is invalid.
	for c := 0; c < 256; c++ {
		if (msgp.TypeOf(byte(c)) == msgp.TypeInvalid) != (c == 0xc1) {
			t.Errorf("TypeOf(0x%02x) = %v", c, msgp.TypeOf(byte(c)))
		}
	}
}

// eventTime is msgpack ext type 0 for the round trip through msgpack/v5.
type eventTime struct{ sec, nsec uint32 }

func (e *eventTime) MarshalMsgpack() ([]byte, error) {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, e.sec), e.nsec), nil
}

func (e *eventTime) UnmarshalMsgpack(b []byte) error {
	if len(b) != 8 {
		return fmt.Errorf("%d bytes", len(b))
	}
	e.sec, e.nsec = binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
	return nil
}

func init() { msgpack.RegisterExt(0, (*eventTime)(nil)) }

func TestAppendRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 255, 65535, 65536, 70000} {
		b := msgp.AppendArrayHeader(nil, n)
		if got, next, err := msgp.ReadArrayHeader(b, 0); got != n || next != len(b) || err != nil {
			t.Errorf("ReadArrayHeader(AppendArrayHeader(%d)) = %d, %v", n, got, err)
		}
		b = append(b, nils(n)...)
		var arr []any
		if err := msgpack.Unmarshal(b, &arr); err != nil || len(arr) != n {
			t.Errorf("array of %d: msgpack got %d, %v", n, len(arr), err)
		}

		m := msgp.AppendMapHeader(nil, n)
		if got, next, err := msgp.ReadMapHeader(m, 0); got != n || next != len(m) || err != nil {
			t.Errorf("ReadMapHeader(AppendMapHeader(%d)) = %d, %v", n, got, err)
		}
		want := make(map[string]any, n)
		for i := 0; i < n; i++ {
			k := fmt.Sprint(i)
			m = msgp.AppendStr(m, k)
			m = msgp.AppendStr(m, k)
			want[k] = k
		}
		var got map[string]any
		if err := msgpack.Unmarshal(m, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("map of %d: msgpack got %d pairs, %v", n, len(got), err)
		}
		if next, err := msgp.Skip(m, 0); next != len(m) || err != nil {
			t.Errorf("Skip(map of %d) = %d, %v", n, next, err)
		}
	}
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000} {
		s := strings.Repeat("é", n/2) + strings.Repeat("x", n%2)
		b := msgp.AppendStr([]byte{0xc0}, s)
		var got string
		if err := msgpack.Unmarshal(b[1:], &got); err != nil || got != s {
			t.Errorf("AppendStr(%d bytes): msgpack got %d bytes, %v", n, len(got), err)
		}
		if v, next, err := msgp.ReadStr(b, 1); string(v) != s || next != len(b) || err != nil {
			t.Errorf("ReadStr(AppendStr(%d bytes)) = %d bytes, %v", n, len(v), err)
		}
		// msgpack/v5 picks the same, smallest, header.
		if mb, _ := msgpack.Marshal(s); !bytes.Equal(mb, b[1:]) {
			t.Errorf("AppendStr(%d bytes) header %x, msgpack %x", n, b[1:4], mb[:3])
		}

		p := bytes.Repeat([]byte{0xc1}, n)
		bb := msgp.AppendBin(nil, p)
		var gotb []byte
		if err := msgpack.Unmarshal(bb, &gotb); err != nil || !bytes.Equal(gotb, p) {
			t.Errorf("AppendBin(%d bytes): msgpack got %d bytes, %v", n, len(gotb), err)
		}
		if v, next, err := msgp.ReadBytes(bb, 0); !bytes.Equal(v, p) || next != len(bb) || err != nil {
			t.Errorf("ReadBytes(AppendBin(%d bytes)) = %d bytes, %v", n, len(v), err)
		}
		if mb, _ := msgpack.Marshal(p); !bytes.Equal(mb, bb) {
			t.Errorf("AppendBin(%d bytes) differs from msgpack", n)
		}
	}
	for _, et := range []eventTime{{0, 0}, {1700000000, 123456789}, {math.MaxUint32, 999999999}} {
		b := msgp.AppendEventTime(nil, et.sec, et.nsec)
		if len(b) != 10 || b[0] != 0xd7 || b[1] != 0x00 {
			t.Errorf("AppendEventTime = %x, want fixext8 type 0", b)
		}
		var got eventTime
		if err := msgpack.Unmarshal(b, &got); err != nil || got != et {
			t.Errorf("AppendEventTime(%v): msgpack got %v, %v", et, got, err)
		}
		if mb, err := msgpack.Marshal(&et); err != nil || !bytes.Equal(mb, b) {
			t.Errorf("msgpack EventTime %x, AppendEventTime %x (%v)", mb, b, err)
		}
		typ, data, next, err := msgp.ReadExt(b, 0)
		if typ != 0 || len(data) != 8 || next != 10 || err != nil {
			t.Errorf("ReadExt(AppendEventTime) = %d, %x, %d, %v", typ, data, next, err)
		}
	}
}

// BenchmarkSkip skips one Forward entry, [time, record], with a container
// log line and a kubernetes map.
func BenchmarkSkip(b *testing.B) {
	entry, err := msgpack.Marshal([]any{int64(1700000000), map[string]any{
		"log":    strings.Repeat("x", 180),
		"stream": "stdout",
		"kubernetes": map[string]any{
			"pod_name":  "web-7d9f8c6b5-x2k4q",
			"namespace": "shop",
			"labels":    map[string]any{"app": "web", "tier": "frontend"},
		},
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(entry)))
	for b.Loop() {
		if n, err := msgp.Skip(entry, 0); n != len(entry) || err != nil {
			b.Fatalf("Skip = %d, %v", n, err)
		}
	}
}
