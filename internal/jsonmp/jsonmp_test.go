package jsonmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/msgp"
)

// decode turns pairs appended by AppendObject back into a Go map, checking
// that the bytes hold exactly that many pairs.
func decode(t testing.TB, pairs []byte, n int) map[string]any {
	t.Helper()
	b := msgp.AppendMapHeader(nil, n)
	b = append(b, pairs...)
	end, err := msgp.Skip(b, 0)
	if err != nil || end != len(b) {
		t.Fatalf("msgpack does not hold %d pairs exactly: end %d of %d, %v", n, end, len(b), err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatalf("msgpack decode: %v", err)
	}
	return m
}

// normalize converts every number to float64 so that msgpack integers and
// encoding/json floats compare equal.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case int8:
		return float64(x)
	case int16:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case uint8:
		return float64(x)
	case uint16:
		return float64(x)
	case uint32:
		return float64(x)
	case uint64:
		return float64(x)
	case float32:
		return float64(x)
	}
	return v
}

func TestAppendObject(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]any
	}{
		{`{}`, map[string]any{}},
		{` {"a":1} `, map[string]any{"a": int8(1)}},
		{`{"s":"x","t":true,"f":false,"n":null}`, map[string]any{"s": "x", "t": true, "f": false, "n": nil}},
		{`{"neg":-5,"big":18446744073709551615,"min":-9223372036854775808,"f":12.5,"e":1e3,"z":-0}`,
			map[string]any{"neg": int8(-5), "big": uint64(math.MaxUint64), "min": int64(math.MinInt64),
				"f": 12.5, "e": 1000.0, "z": int8(0)}},
		{`{"huge":18446744073709551616}`, map[string]any{"huge": 18446744073709551616.0}},
		{`{"esc":"a\"b\\c\/d\b\f\n\r\t","u":"\u00e9\u4e2d","pair":"\ud83d\ude00","lone":"\ud800x"}`,
			map[string]any{"esc": "a\"b\\c/d\b\f\n\r\t", "u": "é中", "pair": "😀", "lone": "\ufffdx"}},
		{"{\"bad\":\"a\xffb\"}", map[string]any{"bad": "a\ufffdb"}},
		{`{"k\u0041":"v"}`, map[string]any{"kA": "v"}},
		{`{"o":{"a":[1,"x",{"b":null}],"e":[],"m":{}}}`,
			map[string]any{"o": map[string]any{"a": []any{int8(1), "x", map[string]any{"b": nil}}, "e": []any{}, "m": map[string]any{}}}},
	}
	for _, tt := range tests {
		prefix := []byte("keep")
		out, n, err := AppendObject(prefix, []byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if !bytes.HasPrefix(out, []byte("keep")) {
			t.Errorf("%s: prefix lost", tt.in)
		}
		got := decode(t, out[4:], n)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tt.in, got, tt.want)
		}
	}
}

func TestAppendObjectLengthClasses(t *testing.T) {
	// Strings and containers around every header size boundary, with
	// escapes that shrink and invalid bytes that grow the text.
	for _, n := range []int{0, 1, 15, 16, 17, 30, 31, 32, 33, 254, 255, 256, 257, 65534, 65535, 65536, 65537} {
		for _, unit := range []string{"a", `\n`, "\xff", `\u00e9`} {
			s := strings.Repeat(unit, n)
			in := `{"s":"` + s + `"}`
			out, k, err := AppendObject(nil, []byte(in))
			if err != nil {
				t.Fatalf("n=%d unit=%q: %v", n, unit, err)
			}
			var want map[string]any
			if err := json.Unmarshal([]byte(in), &want); err != nil {
				t.Fatal(err)
			}
			if got := decode(t, out, k); !reflect.DeepEqual(got, want) {
				t.Fatalf("n=%d unit=%q: mismatch", n, unit)
			}
		}
		if n > 70000 {
			continue
		}
		var arr, obj strings.Builder
		arr.WriteString(`{"a":[`)
		obj.WriteString(`{"o":{`)
		for i := 0; i < n; i++ {
			if i > 0 {
				arr.WriteByte(',')
				obj.WriteByte(',')
			}
			arr.WriteString("1")
			obj.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `":1`)
		}
		arr.WriteString(`]}`)
		obj.WriteString(`}}`)
		for _, in := range []string{arr.String(), obj.String()} {
			out, k, err := AppendObject(nil, []byte(in))
			if err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			var want map[string]any
			if err := json.Unmarshal([]byte(in), &want); err != nil {
				t.Fatal(err)
			}
			if got := normalize(decode(t, out, k)); !reflect.DeepEqual(got, want) {
				t.Fatalf("n=%d %.30s: mismatch", n, in)
			}
		}
	}
}

func TestAppendObjectErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, msgp.MaxDepth+1) + "1" + strings.Repeat("}", msgp.MaxDepth+1)
	okDeep := strings.Repeat(`{"a":`, msgp.MaxDepth) + "1" + strings.Repeat("}", msgp.MaxDepth)
	for _, in := range []string{
		``, ` `, `[]`, `"s"`, `1`, `null`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1}x`,
		`{"a":1}{}`, `{a:1}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":+1}`,
		`{"a":tru}`, `{"a":nul}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}",
		`{"a":"open}`, `{"a":[1,]}`, `{"a":[1 2]}`, `{"a":{"b":1]}`, deep,
	} {
		dst := []byte("keep")
		out, n, err := AppendObject(dst, []byte(in))
		if err == nil {
			t.Errorf("%.40q: no error", in)
		}
		if string(out) != "keep" || n != 0 {
			t.Errorf("%.40q: dst changed to %q", in, out)
		}
	}
	if _, _, err := AppendObject(nil, []byte(deep)); !errors.Is(err, ErrTooDeep) {
		t.Errorf("deep: %v, want ErrTooDeep", err)
	}
	if _, _, err := AppendObject(nil, []byte(`[1]`)); !errors.Is(err, ErrNotObject) {
		t.Errorf("array: %v, want ErrNotObject", err)
	}
	if _, _, err := AppendObject(nil, []byte(okDeep)); err != nil {
		t.Errorf("depth %d: %v", msgp.MaxDepth, err)
	}
}

// jsonDepth returns the deepest nesting of objects and arrays in valid JSON.
func jsonDepth(b []byte) int {
	depth, maxDepth := 0, 0
	inStr := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
			maxDepth = max(maxDepth, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return maxDepth
}

func FuzzAppendObject(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, benchLine, `{"a":[1,2,{"b":"\u00e9\ud83d\ude00"}],"c":-1.5e-3}`,
		`{"n":18446744073709551616,"m":-9223372036854775809,"z":-0.0}`, "{\"x\":\"\xff\"}",
		`[1]`, `"x"`, `{"a":"\ud800"}`, `{"a":1e400}`, ` {"a" : [ ] } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		dst := []byte("pre")
		out, n, err := AppendObject(dst, src)
		trimmed := bytes.TrimLeft(src, " \t\r\n")
		want := json.Valid(src) && len(trimmed) > 0 && trimmed[0] == '{' && jsonDepth(src) <= msgp.MaxDepth
		if (err == nil) != want {
			t.Fatalf("AppendObject(%q) error %v, want success %v", src, err, want)
		}
		if err != nil {
			if string(out) != "pre" || n != 0 {
				t.Fatalf("dst changed on error: %q", out)
			}
			return
		}
		if string(out[:3]) != "pre" {
			t.Fatalf("prefix changed")
		}
		var wantMap map[string]any
		if err := json.Unmarshal(src, &wantMap); err != nil {
			// Numbers beyond float64 range: valid JSON that encoding/json
			// cannot hold in a float64.
			return
		}
		got := normalize(decode(t, out[3:], n))
		if !reflect.DeepEqual(got, wantMap) {
			t.Fatalf("AppendObject(%q):\n got %#v\nwant %#v", src, got, wantMap)
		}
	})
}

func TestMsgpAppend(t *testing.T) {
	// The msgp Append helpers that this package relies on, at each boundary.
	ints := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	for _, v := range ints {
		b := msgp.AppendInt(nil, v)
		got, next, err := msgp.ReadInt(b, 0)
		if err != nil || got != v || next != len(b) {
			t.Errorf("AppendInt(%d): read %d, %v", v, got, err)
		}
		var dv int64
		if err := msgpack.Unmarshal(b, &dv); err != nil || dv != v {
			t.Errorf("AppendInt(%d): msgpack decodes %d, %v", v, dv, err)
		}
	}
	b := msgp.AppendUint(nil, math.MaxUint64)
	if u, _, err := msgp.ReadUint64(b, 0); err != nil || u != math.MaxUint64 {
		t.Errorf("AppendUint: %d, %v", u, err)
	}
	b = msgp.AppendFloat(nil, 1.25)
	if f, _, err := msgp.ReadFloat(b, 0); err != nil || f != 1.25 {
		t.Errorf("AppendFloat: %v, %v", f, err)
	}
	b = msgp.AppendBool(msgp.AppendBool(msgp.AppendNil(nil), true), false)
	if !bytes.Equal(b, []byte{0xc0, 0xc3, 0xc2}) {
		t.Errorf("AppendNil/AppendBool: % x", b)
	}
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		s := bytes.Repeat([]byte("x"), n)
		b := msgp.AppendStrBytes(nil, s)
		got, next, err := msgp.ReadStr(b, 0)
		if err != nil || !bytes.Equal(got, s) || next != len(b) {
			t.Errorf("AppendStrBytes(%d): %v", n, err)
		}
	}
}

const benchLine = `{"level":"info","msg":"request completed","time":"2026-03-14T09:26:53.589793238Z","user_id":123,` +
	`"latency_ms":12.5,"path":"/api/v1/orders/8f14e45f","method":"GET","status":200,"bytes":5120,` +
	`"remote":"10.1.128.166","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","ok":true}`

func TestAppendObjectAllocs(t *testing.T) {
	src := []byte(benchLine)
	dst := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		_, _, _ = AppendObject(dst[:0], src)
	})
	if allocs != 0 {
		t.Errorf("AppendObject allocates %v times per call", allocs)
	}
}

func BenchmarkAppendObject(b *testing.B) {
	src := []byte(benchLine)
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, _, err = AppendObject(dst[:0], src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodingJSON is the baseline: encoding/json into a map, then
// msgpack/v5 out of it.
func BenchmarkEncodingJSONMsgpack(b *testing.B) {
	src := []byte(benchLine)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(src, &m); err != nil {
			b.Fatal(err)
		}
		if _, err := msgpack.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendObjectFind(t *testing.T) {
	long := strings.Repeat("k", 40)
	cases := []struct {
		src, key, want string // want: the value found, as JSON text of a string, or "" for none
	}{
		{`{"a":1,"time":"x","time":"y"}`, "time", "x"},
		{`{"o":{"time":"nested"},"b":2}`, "time", ""},
		{`{"ti\u006de" : "esc"}`, "time", "esc"},
		{`{"` + long + `":"v"}`, long, "v"},
		{`{"a":1}`, "", ""},
	}
	for _, tc := range cases {
		out, _, off, err := AppendObjectFind([]byte("pre"), []byte(tc.src), tc.key)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if tc.want == "" {
			if off != -1 {
				t.Errorf("%s: found at %d", tc.src, off)
			}
			continue
		}
		v, _, err := msgp.ReadStr(out, off)
		if err != nil || string(v) != tc.want {
			t.Errorf("%s: value %q, %v; want %q", tc.src, v, err, tc.want)
		}
	}
}
