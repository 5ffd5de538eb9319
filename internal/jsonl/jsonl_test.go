package jsonl

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// om is a msgpack map that keeps its order; keys may be of any type.
type om []kv

type kv struct {
	k, v any
}

func (m om) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, p := range m {
		if err := enc.Encode(p.k); err != nil {
			return err
		}
		if err := enc.Encode(p.v); err != nil {
			return err
		}
	}
	return nil
}

// eventTime is an EventTime ext value as raw msgpack.
func eventTime(sec, nsec uint32) msgpack.RawMessage {
	return msgp.AppendEventTime(nil, sec, nsec)
}

func pack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatalf("msgpack.Marshal(%#v): %v", v, err)
	}
	return b
}

// decode reads one JSON value, keeping numbers as their text.
func decode(t testing.TB, text []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %q: %v", text, err)
	}
	if d.More() {
		t.Fatalf("trailing data after JSON value in %q", text)
	}
	return v
}

// keys returns the keys of the JSON object text in their order, repeats kept.
func keys(t testing.TB, text []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(text))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%q does not start an object: %v %v", text, tok, err)
	}
	var ks []string
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		ks = append(ks, tok.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			t.Fatalf("%q: %v", text, err)
		}
	}
	return ks
}

func TestAppendValue(t *testing.T) {
	long300 := strings.Repeat("x", 300)
	long70k := strings.Repeat("é", 35000)
	arr20 := make([]any, 20)
	want20 := make([]any, 20)
	for i := range arr20 {
		arr20[i] = i
		want20[i] = json.Number(string(rune('0' + i%10)))
		if i >= 10 {
			want20[i] = json.Number("1" + string(rune('0'+i%10)))
		}
	}
	map20 := om{}
	want20m := map[string]any{}
	for i := 0; i < 20; i++ {
		k := strings.Repeat("k", i+1)
		map20 = append(map20, kv{k, i%2 == 0})
		want20m[k] = i%2 == 0
	}

	tests := []struct {
		name string
		in   any
		// want is the decoded JSON value, numbers as json.Number.
		want any
		// exact, if set, is the exact JSON text.
		exact string
	}{
		{"nil", nil, nil, "null"},
		{"true", true, true, "true"},
		{"false", false, false, "false"},
		{"fixint 0", 0, json.Number("0"), "0"},
		{"fixint 127", 127, json.Number("127"), "127"},
		{"uint8", uint8(200), json.Number("200"), "200"},
		{"uint16", uint16(65535), json.Number("65535"), "65535"},
		{"uint32", uint32(4000000000), json.Number("4000000000"), "4000000000"},
		{"uint64 max", uint64(math.MaxUint64), json.Number("18446744073709551615"), "18446744073709551615"},
		{"negfixint", -1, json.Number("-1"), "-1"},
		{"negfixint -32", -32, json.Number("-32"), "-32"},
		{"int8", int8(-100), json.Number("-100"), "-100"},
		{"int16", int16(-30000), json.Number("-30000"), "-30000"},
		{"int32", int32(-2000000000), json.Number("-2000000000"), "-2000000000"},
		{"int64 min", int64(math.MinInt64), json.Number("-9223372036854775808"), "-9223372036854775808"},
		{"int64 positive", int64(42), json.Number("42"), "42"},
		{"float32", float32(1.1), json.Number("1.1"), "1.1"},
		{"float32 0.1", float32(0.1), json.Number("0.1"), "0.1"},
		{"float32 integral", float32(3), json.Number("3"), "3"},
		{"float32 NaN", float32(math.NaN()), nil, "null"},
		{"float32 +Inf", float32(math.Inf(1)), nil, "null"},
		{"float32 tiny", float32(1e-7), json.Number("1e-7"), "1e-7"},
		{"float64", 0.1, json.Number("0.1"), "0.1"},
		{"float64 negative", -2.5, json.Number("-2.5"), "-2.5"},
		{"float64 big", 1e21, json.Number("1e+21"), "1e+21"},
		{"float64 below big", 1e20, json.Number("100000000000000000000"), "100000000000000000000"},
		{"float64 tiny", 1.5e-7, json.Number("1.5e-7"), "1.5e-7"},
		{"float64 tinier", 1e-100, json.Number("1e-100"), "1e-100"},
		{"float64 zero", 0.0, json.Number("0"), "0"},
		{"float64 NaN", math.NaN(), nil, "null"},
		{"float64 -Inf", math.Inf(-1), nil, "null"},
		{"empty str", "", "", `""`},
		{"str", "hello", "hello", `"hello"`},
		{"quotes", `say "hi" \o/`, `say "hi" \o/`, `"say \"hi\" \\o/"`},
		{"controls", "a\nb\rc\td\x00e\x01f\x1fg\x7f", "a\nb\rc\td\x00e\x01f\x1fg\x7f", `"a\nb\rc\td\u0000e\u0001f\u001fg` + "\x7f" + `"`},
		{"backspace formfeed", "\b\f", "\b\f", `"\u0008\u000c"`},
		{"html not escaped", "<a href='x'>&</a>", "<a href='x'>&</a>", `"<a href='x'>&</a>"`},
		{"unicode", "héllo 世界 🎉", "héllo 世界 🎉", `"héllo 世界 🎉"`},
		{"line separators", "a\u2028b\u2029c", "a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		{"invalid utf8", "a\xffb\xc3", "a\ufffdb\ufffd", `"a\ufffdb\ufffd"`},
		{"invalid utf8 sequence", "\xe4\xb8x", "\ufffd\ufffdx", `"\ufffd\ufffdx"`},
		{"surrogate half", "\xed\xa0\x80", "\ufffd\ufffd\ufffd", `"\ufffd\ufffd\ufffd"`},
		{"str8", long300, long300, `"` + long300 + `"`},
		{"str16 multibyte", long70k, long70k, ""},
		{"bin", []byte("bin\x00\xff"), "bin\x00\ufffd", `"bin\u0000\ufffd"`},
		{"empty bin", []byte{}, "", `""`},
		{"array", []any{1, "a", nil, []any{true}}, []any{json.Number("1"), "a", nil, []any{true}}, `[1,"a",null,[true]]`},
		{"empty array", []any{}, []any{}, "[]"},
		{"array16", arr20, want20, ""},
		{"map", om{{"b", 1}, {"a", om{{"c", "d"}}}}, map[string]any{"b": json.Number("1"), "a": map[string]any{"c": "d"}}, `{"b":1,"a":{"c":"d"}}`},
		{"empty map", om{}, map[string]any{}, "{}"},
		{"map16", map20, want20m, ""},
		{"int keys", om{{1, "a"}, {-2, "b"}, {uint64(math.MaxUint64), "c"}}, map[string]any{"1": "a", "-2": "b", "18446744073709551615": "c"}, `{"1":"a","-2":"b","18446744073709551615":"c"}`},
		{"other keys", om{{true, 1}, {nil, 2}, {1.5, 3}, {[]byte("bk"), 4}}, map[string]any{"true": json.Number("1"), "null": json.Number("2"), "1.5": json.Number("3"), "bk": json.Number("4")}, `{"true":1,"null":2,"1.5":3,"bk":4}`},
		{"array key", om{{[]any{1, "x"}, "v"}}, map[string]any{`[1,"x"]`: "v"}, `{"[1,\"x\"]":"v"}`},
		{"map key", om{{om{{"k", "q\""}}, "v"}}, map[string]any{`{"k":"q\""}`: "v"}, `{"{\"k\":\"q\\\"\"}":"v"}`},
		{"event time key", om{{eventTime(1, 2), "v"}}, map[string]any{"1970-01-01T00:00:01.000000002Z": "v"}, `{"1970-01-01T00:00:01.000000002Z":"v"}`},
		{"ext key", om{{msgpack.RawMessage{0xd4, 0x05, 0x01}, "v"}}, map[string]any{"null": "v"}, `{"null":"v"}`},
		{"key escaped", om{{"a\"b\n", 1}}, map[string]any{"a\"b\n": json.Number("1")}, `{"a\"b\n":1}`},
		{"event time", eventTime(1795332892, 1), "2026-11-22T07:34:52.000000001Z", `"2026-11-22T07:34:52.000000001Z"`},
		{"event time zero", eventTime(0, 0), "1970-01-01T00:00:00.000000000Z", `"1970-01-01T00:00:00.000000000Z"`},
		{"event time max", eventTime(math.MaxUint32, 999999999), "2106-02-07T06:28:15.999999999Z", `"2106-02-07T06:28:15.999999999Z"`},
		{"event time nsec overflow", eventTime(0, 1500000000), "1970-01-01T00:00:01.500000000Z", `"1970-01-01T00:00:01.500000000Z"`},
		{"ext other type", msgpack.RawMessage{0xd7, 0x05, 1, 2, 3, 4, 5, 6, 7, 8}, nil, "null"},
		{"ext 0 other size", msgpack.RawMessage{0xd6, 0x00, 1, 2, 3, 4}, nil, "null"},
		{"ext8", msgpack.RawMessage{0xc7, 0x03, 0x01, 1, 2, 3}, nil, "null"},
		{"time.Time is ext -1", time.Unix(1, 0), nil, "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pack(t, tt.in)
			// Surround the value to check offsets.
			b := append([]byte{0xc0}, in...)
			b = append(b, 0xc3)
			dst := []byte("prefix")
			dst, next, err := AppendValue(dst, b, 1)
			if err != nil {
				t.Fatalf("AppendValue: %v", err)
			}
			if next != 1+len(in) {
				t.Errorf("next = %d, want %d", next, 1+len(in))
			}
			if !bytes.HasPrefix(dst, []byte("prefix")) {
				t.Fatalf("dst lost its prefix: %q", dst)
			}
			out := dst[len("prefix"):]
			if !json.Valid(out) {
				t.Fatalf("invalid JSON %q", out)
			}
			if tt.exact != "" && string(out) != tt.exact {
				t.Errorf("got  %s\nwant %s", out, tt.exact)
			}
			if got := decode(t, out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestAppendValueMatchesEncodingJSONStrings(t *testing.T) {
	// Except for \b and \f, which encoding/json writes short, the text is
	// byte for byte what encoding/json writes without HTML escaping. Short
	// strings and the tails of long ones are read as a word with the bytes
	// that follow them.
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "<", "&", "é", "世", "🎉", "\u2028", "\u2029", "\ufffd", "\xff", "\xc3", "\xe4\xb8", "\xed\xa0\x80", "\xf4\x90\x80\x80"}
	for i := 0; i < 2000; i++ {
		var sb strings.Builder
		for j := r.IntN(20); j > 0; j-- {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		// The bytes that follow the value, plain or not, change nothing.
		b := pack(t, s)
		for j := r.IntN(10); j > 0; j-- {
			b = append(b, alphabet[r.IntN(len(alphabet))]...)
		}
		got, _, err := AppendValue(nil, b, 0)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != strings.TrimSuffix(want.String(), "\n") {
			t.Fatalf("string %q:\ngot  %s\nwant %s", s, got, want.String())
		}
	}
}

func TestAppendValueFloatsMatchEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 5000; i++ {
		f64 := math.Float64frombits(r.Uint64())
		f32 := math.Float32frombits(r.Uint32())
		if i%2 == 0 {
			f64 = r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30))
			f32 = float32(f64)
		}
		for _, v := range []any{f64, f32} {
			want, err := json.Marshal(v)
			if err != nil {
				want = []byte("null") // NaN or Inf
			}
			got, _, err := AppendValue(nil, pack(t, v), 0)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("%T %v: got %s, want %s", v, v, got, want)
			}
		}
	}
}

func TestAppendValueErrors(t *testing.T) {
	deep := func(n int) []byte {
		b := bytes.Repeat([]byte{0x91}, n)
		return append(b, 0xc0)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, msgp.ErrShort},
		{"never used byte", []byte{0xc1}, msgp.ErrMalformed},
		{"never used byte in map", []byte{0x81, 0xa1, 'k', 0xc1}, msgp.ErrMalformed},
		{"short str", []byte{0xa5, 'a'}, msgp.ErrShort},
		{"short str8 header", []byte{0xd9}, msgp.ErrShort},
		{"short str32", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, msgp.ErrShort},
		{"short uint64", []byte{0xcf, 1, 2}, msgp.ErrShort},
		{"short int16", []byte{0xd1, 1}, msgp.ErrShort},
		{"short float32", []byte{0xca, 1, 2}, msgp.ErrShort},
		{"short ext", []byte{0xd7, 0, 1, 2}, msgp.ErrShort},
		{"short array", []byte{0x93, 1, 2}, msgp.ErrShort},
		{"huge array", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 1}, msgp.ErrShort},
		{"huge map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 1, 2}, msgp.ErrShort},
		{"map missing value", []byte{0x81, 0xa1, 'k'}, msgp.ErrShort},
		{"map missing key", []byte{0x81}, msgp.ErrShort},
		{"short composite key", []byte{0x81, 0x92, 1}, msgp.ErrShort},
		{"too deep", deep(msgp.MaxDepth + 1), msgp.ErrTooDeep},
		{"too deep key", append([]byte{0x81}, deep(msgp.MaxDepth)...), msgp.ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := msgp.Skip(tt.in, 0); err == nil {
				t.Fatalf("msgp.Skip accepts the input")
			}
			dst := []byte("keep")
			dst, next, err := AppendValue(dst, tt.in, 0)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if string(dst) != "keep" {
				t.Errorf("dst = %q, want it unchanged", dst)
			}
			if next != 0 {
				t.Errorf("next = %d, want 0", next)
			}
		})
	}
}

func TestAppendValueDepthLimit(t *testing.T) {
	// As deep as msgp.Skip allows, in arrays and in maps.
	arr := append(bytes.Repeat([]byte{0x91}, msgp.MaxDepth), 0x01)
	m := bytes.Repeat([]byte{0x81, 0xa1, 'k'}, msgp.MaxDepth)
	m = append(m, 0x01)
	// Empty containers do not count, as in msgp.Skip.
	empty := append(bytes.Repeat([]byte{0x91}, msgp.MaxDepth), 0x90)
	for _, b := range [][]byte{arr, m, empty} {
		end, err := msgp.Skip(b, 0)
		if err != nil {
			t.Fatalf("msgp.Skip: %v", err)
		}
		out, next, err := AppendValue(nil, b, 0)
		if err != nil {
			t.Fatalf("AppendValue: %v", err)
		}
		if next != end || !json.Valid(out) {
			t.Fatalf("next %d (want %d), valid %v", next, end, json.Valid(out))
		}
	}
}

func TestAppendLine(t *testing.T) {
	def := DefaultOptions()
	tests := []struct {
		name   string
		tag    string
		sec    int64
		nsec   int32
		record any
		opts   Options
		// wantKeys are the keys of the line in order.
		wantKeys []string
		want     map[string]any
	}{
		{
			name: "added keys first, record order kept",
			tag:  "kube.var.log.containers.app_ns_c-1.log",
			sec:  1795332892, nsec: 1,
			record: om{
				{"log", "hello\n"},
				{"stream", "stdout"},
				{"n", -5},
				{"big", uint64(math.MaxUint64)},
				{"f32", float32(0.25)},
				{"f64", 1.5},
				{"ok", true},
				{"none", nil},
				{"at", eventTime(1795332892, 500)},
				{"list", []any{"a", 1, []any{}}},
				{"nested", om{{"z", 1}, {"a", om{{"deep", "yes"}}}}},
			},
			opts:     def,
			wantKeys: []string{"@timestamp", "tag", "log", "stream", "n", "big", "f32", "f64", "ok", "none", "at", "list", "nested"},
			want: map[string]any{
				"@timestamp": "2026-11-22T07:34:52.000000001Z",
				"tag":        "kube.var.log.containers.app_ns_c-1.log",
				"log":        "hello\n",
				"stream":     "stdout",
				"n":          json.Number("-5"),
				"big":        json.Number("18446744073709551615"),
				"f32":        json.Number("0.25"),
				"f64":        json.Number("1.5"),
				"ok":         true,
				"none":       nil,
				"at":         "2026-11-22T07:34:52.000000500Z",
				"list":       []any{"a", json.Number("1"), []any{}},
				"nested":     map[string]any{"z": json.Number("1"), "a": map[string]any{"deep": "yes"}},
			},
		},
		{
			name: "empty record",
			tag:  "t", sec: 0,
			record:   om{},
			opts:     def,
			wantKeys: []string{"@timestamp", "tag"},
			want:     map[string]any{"@timestamp": "1970-01-01T00:00:00.000000000Z", "tag": "t"},
		},
		{
			name: "record has both keys",
			tag:  "t", sec: 5,
			record:   om{{"tag", "mine"}, {"x", 1}, {"@timestamp", "yesterday"}},
			opts:     def,
			wantKeys: []string{"tag", "x", "@timestamp"},
			want:     map[string]any{"tag": "mine", "x": json.Number("1"), "@timestamp": "yesterday"},
		},
		{
			name: "record has the time key",
			tag:  "t", sec: 5,
			record:   om{{"@timestamp", 7}},
			opts:     def,
			wantKeys: []string{"tag", "@timestamp"},
			want:     map[string]any{"tag": "t", "@timestamp": json.Number("7")},
		},
		{
			name: "record has the tag key as bin",
			tag:  "t", sec: 5,
			record:   om{{[]byte("tag"), "bin"}},
			opts:     def,
			wantKeys: []string{"@timestamp", "tag"},
			want:     map[string]any{"@timestamp": "1970-01-01T00:00:05.000000000Z", "tag": "bin"},
		},
		{
			name: "record has the tag key as an integer",
			tag:  "t", sec: 5,
			record:   om{{7, "int"}},
			opts:     Options{TimeKey: "time", TagKey: "7"},
			wantKeys: []string{"time", "7"},
			want:     map[string]any{"time": "1970-01-01T00:00:05.000000000Z", "7": "int"},
		},
		{
			name: "record has the time key as an EventTime",
			tag:  "t", sec: 5,
			record:   om{{eventTime(1, 2), "et"}, {nil, "nil"}},
			opts:     Options{TimeKey: "null", TagKey: "1970-01-01T00:00:01.000000002Z"},
			wantKeys: []string{"1970-01-01T00:00:01.000000002Z", "null"},
			want:     map[string]any{"1970-01-01T00:00:01.000000002Z": "et", "null": "nil"},
		},
		{
			name: "record key with invalid UTF-8 reads as the tag key",
			tag:  "t", sec: 5,
			record:   om{{"k\xff", "raw"}},
			opts:     Options{TagKey: "k\ufffd"},
			wantKeys: []string{"k\ufffd"},
			want:     map[string]any{"k\ufffd": "raw"},
		},
		{
			name: "similar keys do not count",
			tag:  "t", sec: 5,
			record:   om{{"tags", 1}, {"@timestamp2", 2}, {"ta", 3}},
			opts:     def,
			wantKeys: []string{"@timestamp", "tag", "tags", "@timestamp2", "ta"},
			want: map[string]any{"@timestamp": "1970-01-01T00:00:05.000000000Z", "tag": "t",
				"tags": json.Number("1"), "@timestamp2": json.Number("2"), "ta": json.Number("3")},
		},
		{
			name: "keys disabled",
			tag:  "t", sec: 5,
			record:   om{{"a", 1}},
			opts:     Options{},
			wantKeys: []string{"a"},
			want:     map[string]any{"a": json.Number("1")},
		},
		{
			name: "keys disabled, empty record",
			tag:  "t", sec: 5,
			record:   om{},
			opts:     Options{},
			wantKeys: nil,
			want:     map[string]any{},
		},
		{
			name: "only tag, custom name",
			tag:  "a\"b", sec: 5,
			record:   om{{"a", 1}},
			opts:     Options{TagKey: "source"},
			wantKeys: []string{"source", "a"},
			want:     map[string]any{"source": "a\"b", "a": json.Number("1")},
		},
		{
			name: "negative time",
			tag:  "t", sec: -1, nsec: 5,
			record:   om{},
			opts:     Options{TimeKey: "ts"},
			wantKeys: []string{"ts"},
			want:     map[string]any{"ts": "1969-12-31T23:59:59.000000005Z"},
		},
		{
			name: "non-string keys in record",
			tag:  "t", sec: 5,
			record:   om{{1, "one"}, {[]any{"x"}, "arr"}},
			opts:     Options{TimeKey: "ts"},
			wantKeys: []string{"ts", "1", `["x"]`},
			want:     map[string]any{"ts": "1970-01-01T00:00:05.000000000Z", "1": "one", `["x"]`: "arr"},
		},
		{
			name: "unicode and invalid UTF-8 values",
			tag:  "t", sec: 5,
			record:   om{{"msg", "日本語 \xfe ok"}, {"ctl", "\x1b[31m"}},
			opts:     Options{},
			wantKeys: []string{"msg", "ctl"},
			want:     map[string]any{"msg": "日本語 \ufffd ok", "ctl": "\x1b[31m"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := chunk.Entry{Sec: tt.sec, Nsec: tt.nsec, Record: pack(t, tt.record)}
			dst := []byte("previous line\n")
			dst, err := AppendLine(dst, tt.tag, e, tt.opts)
			if err != nil {
				t.Fatalf("AppendLine: %v", err)
			}
			line, ok := bytes.CutPrefix(dst, []byte("previous line\n"))
			if !ok {
				t.Fatalf("dst lost its start: %q", dst)
			}
			if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
				t.Fatalf("line %q does not end in its only newline", line)
			}
			if !json.Valid(line) {
				t.Fatalf("invalid JSON %q", line)
			}
			if got := keys(t, line); !reflect.DeepEqual(got, tt.wantKeys) {
				t.Errorf("keys %q, want %q", got, tt.wantKeys)
			}
			if got := decode(t, line); !reflect.DeepEqual(got, any(tt.want)) {
				t.Errorf("decoded %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestAppendLineExact(t *testing.T) {
	e := chunk.Entry{Sec: 1795332892, Nsec: 1, Record: pack(t, om{{"log", "hi"}, {"n", 1}})}
	got, err := AppendLine(nil, "app", e, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"@timestamp":"2026-11-22T07:34:52.000000001Z","tag":"app","log":"hi","n":1}` + "\n"
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestAppendLineFromEntries(t *testing.T) {
	// Every time form that chunk.ReadEntry accepts.
	rec := pack(t, om{{"k", "v"}})
	var entries []byte
	entries = msgp.AppendArrayHeader(entries, 2)
	entries = msgp.AppendEventTime(entries, 1795332892, 123456789)
	entries = append(entries, rec...)
	entries = append(entries, pack(t, []any{int64(1795332892), msgpack.RawMessage(rec)})...)
	entries = append(entries, pack(t, []any{1795332892.25, msgpack.RawMessage(rec)})...)
	entries = append(entries, pack(t, []any{[]any{eventTime(1795332892, 7), om{{"meta", 1}}}, msgpack.RawMessage(rec)})...)
	want := []string{
		"2026-11-22T07:34:52.123456789Z",
		"2026-11-22T07:34:52.000000000Z",
		"2026-11-22T07:34:52.250000000Z",
		"2026-11-22T07:34:52.000000007Z",
	}
	off := 0
	var dst []byte
	for i := range want {
		e, next, err := chunk.ReadEntry(entries, off)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		off = next
		dst, err = AppendLine(dst[:0], "x", e, DefaultOptions())
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		got := decode(t, dst)
		wantLine := map[string]any{"@timestamp": want[i], "tag": "x", "k": "v"}
		if !reflect.DeepEqual(got, any(wantLine)) {
			t.Errorf("entry %d: %#v, want %#v", i, got, wantLine)
		}
	}
	if off != len(entries) {
		t.Fatalf("read %d of %d bytes", off, len(entries))
	}
}

func TestAppendLineErrors(t *testing.T) {
	tests := []struct {
		name   string
		record []byte
		want   error
	}{
		{"not a map", pack(t, []any{1}), ErrNotMap},
		{"string", pack(t, "x"), ErrNotMap},
		{"empty", nil, msgp.ErrShort},
		{"truncated", pack(t, om{{"a", "bcdef"}})[:5], msgp.ErrShort},
		{"malformed value", []byte{0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0xc1}, msgp.ErrMalformed},
		{"malformed key", []byte{0x81, 0xc1, 0x01}, msgp.ErrMalformed},
		{"too deep", append([]byte{0x81, 0xa1, 'a'}, append(bytes.Repeat([]byte{0x91}, msgp.MaxDepth), 0x01)...), msgp.ErrTooDeep},
	}
	for _, tt := range tests {
		for _, o := range []Options{DefaultOptions(), {}} {
			dst := make([]byte, 0, 64)
			dst = append(dst, "kept"...)
			got, err := AppendLine(dst, "t", chunk.Entry{Record: tt.record}, o)
			if !errors.Is(err, tt.want) {
				t.Errorf("%s %+v: err = %v, want %v", tt.name, o, err, tt.want)
			}
			if string(got) != "kept" {
				t.Errorf("%s %+v: dst = %q, want it unchanged", tt.name, o, got)
			}
		}
	}
}

func TestAppendTimeMatchesTimeFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	check := func(sec int64, nsec int32) {
		t.Helper()
		want := `"` + time.Unix(sec, int64(nsec)).UTC().Format("2006-01-02T15:04:05.000000000Z") + `"`
		got := appendTime(nil, sec, int64(nsec))
		if string(got) != want {
			t.Fatalf("%d.%09d: got %s, want %s", sec, nsec, got, want)
		}
	}
	check(0, 0)
	check(-1, 999999999)
	check(-62135596800, 0)         // 0001-01-01
	check(253402300799, 999999999) // 9999-12-31T23:59:59
	check(951782400, 0)            // 2000-02-29
	check(4102444800-1, 1)         // 2099-12-31T23:59:59
	check(-62167219200, 0)         // 0000-01-01
	check(-62167219201, 999999999) // the year -1
	check(-62162035201, 0)         // 0000-02-29T23:59:59, a leap day
	for i := 0; i < 100000; i++ {
		check(r.Int64N(253402300800+62167219200)-62167219200, r.Int32N(1e9))
	}
	for i := 0; i < 1000; i++ {
		check(r.Int64N(1<<40)-1<<39, r.Int32N(1e9))
	}
	for i := 0; i < 1000; i++ {
		// Nanoseconds outside [0, 1e9) carry into the seconds.
		sec, nsec := r.Int64N(1<<33)-1<<32, r.Int32()-1<<30
		got := appendTime(nil, sec, int64(nsec))
		if want := appendTime(nil, time.Unix(sec, int64(nsec)).Unix(), int64(time.Unix(sec, int64(nsec)).Nanosecond())); string(got) != string(want) {
			t.Fatalf("%d %d: got %s, want %s", sec, nsec, got, want)
		}
	}
	// Beyond RFC 3339's years the text is still a JSON string.
	for _, sec := range []int64{-1 << 62, 1 << 62, math.MaxInt64, math.MinInt64, 253402300800} {
		if got := appendTime(nil, sec, 0); !json.Valid(got) {
			t.Errorf("%d: invalid JSON %s", sec, got)
		}
	}
}

func TestAppendLineNoAllocs(t *testing.T) {
	e := chunk.Entry{Sec: 1795332892, Nsec: 1, Record: benchRecord(t)}
	dst := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		dst, err = AppendLine(dst[:0], "kube.var.log.containers.web-7d4b9c8f6-x2x9z_shop_web-0123.log", e, DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendLine allocates %v times per record, want 0", allocs)
	}
}

// benchRecord is a container log record as the Kubernetes filter leaves it.
func benchRecord(t testing.TB) []byte {
	return pack(t, om{
		{"log", "2026-11-22T07:34:52.123Z INFO  GET /api/v1/orders/12345 200 12.3ms \"Mozilla/5.0\"\n"},
		{"stream", "stdout"},
		{"time", "2026-11-22T07:34:52.123456789Z"},
		{"kubernetes", om{
			{"pod_name", "web-7d4b9c8f6-x2x9z"},
			{"namespace_name", "shop"},
			{"labels", om{
				{"app", "web"},
				{"pod-template-hash", "7d4b9c8f6"},
			}},
		}},
	})
}

func BenchmarkAppendLine(b *testing.B) {
	e := chunk.Entry{Sec: 1795332892, Nsec: 123456789, Record: benchRecord(b)}
	tag := "kube.var.log.containers.web-7d4b9c8f6-x2x9z_shop_web-0123.log"
	o := DefaultOptions()
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(len(e.Record)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		dst, err = AppendLine(dst[:0], tag, e, o)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzAppendValue(f *testing.F) {
	seeds := []any{
		nil, true, 1, -1, int64(math.MinInt64), uint64(math.MaxUint64), float32(1.5), math.Inf(1),
		"str", "a\xff\"\n", []byte("bin"), []any{1, "a", []any{nil}},
		om{{"a", 1}, {2, "b"}, {[]any{1}, om{{"x", nil}}}},
		om{{"@timestamp", eventTime(1, 2)}, {"tag", "t"}},
		eventTime(1795332892, 1),
		msgpack.RawMessage{0xd7, 0x05, 1, 2, 3, 4, 5, 6, 7, 8},
	}
	for _, s := range seeds {
		f.Add(pack(f, s))
	}
	f.Add(benchRecord(f))
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add(append(bytes.Repeat([]byte{0x91}, msgp.MaxDepth), 0x01))
	f.Fuzz(func(t *testing.T, b []byte) {
		end, skipErr := msgp.Skip(b, 0)
		out, next, err := AppendValue([]byte("x"), b, 0)
		if skipErr != nil {
			if err == nil {
				t.Fatalf("msgp.Skip fails (%v) but AppendValue does not", skipErr)
			}
			if string(out) != "x" {
				t.Fatalf("dst changed on error: %q", out)
			}
			return
		}
		if err != nil {
			t.Fatalf("msgp.Skip accepts %x but AppendValue fails: %v", b, err)
		}
		if next != end {
			t.Fatalf("next %d, msgp.Skip says %d", next, end)
		}
		if !json.Valid(out[1:]) {
			t.Fatalf("invalid JSON %q from %x", out[1:], b)
		}
		if typ, _ := msgp.Peek(b, 0); typ == msgp.TypeMap {
			line, err := AppendLine(nil, "tag", chunk.Entry{Sec: 1, Record: b[:end]}, DefaultOptions())
			if err != nil {
				t.Fatalf("AppendLine: %v", err)
			}
			if !json.Valid(line) || line[len(line)-1] != '\n' {
				t.Fatalf("AppendLine: invalid line %q", line)
			}
		}
	})
}

// specialBytes finds the first byte of a word that is not plain ASCII.
func TestSpecialBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	interesting := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', 0x23, '\\', 0x5b, 0x5d, 'a', 0x7e, 0x7f, 0x80, 0xc3, 0xff}
	for i := 0; i < 200000; i++ {
		var w [8]byte
		first := -1
		for j := range w {
			if r.IntN(4) == 0 {
				w[j] = interesting[r.IntN(len(interesting))]
			} else {
				w[j] = byte(r.IntN(256))
			}
			if c := w[j]; first < 0 && (c >= utf8.RuneSelf || !plainASCII[c]) {
				first = j
			}
		}
		m := specialBytes(binary.LittleEndian.Uint64(w[:]))
		got := -1
		if m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if got != first {
			t.Fatalf("specialBytes(%q) finds byte %d, want %d", w[:], got, first)
		}
	}
}

// An Encoder writes exactly the lines AppendLine writes, whatever the order
// of tags and seconds, with either key taken by a record or left out, and
// with a nanosecond count outside [0, 1e9).
func TestEncoderMatchesAppendLine(t *testing.T) {
	records := [][]byte{
		benchRecord(t),
		pack(t, om{{"tag", "own"}, {"msg", "x"}}),
		pack(t, om{{"@timestamp", "own"}, {"msg", "y"}}),
		pack(t, om{{"msg", "z\"\n\xff"}}),
	}
	tags := []string{"a", "kube.var.log.containers.web_shop_c.log", "a\"\u2028", ""}
	times := []struct {
		sec  int64
		nsec int32
	}{{1795332892, 1}, {1795332892, 999999999}, {1795332893, 0}, {1795332892, -1}, {1795332892, 1e9 + 5}, {-62135596801, 3}}
	for _, o := range []Options{DefaultOptions(), {TimeKey: "time"}, {TagKey: "tg"}, {}} {
		enc := NewEncoder(o)
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range 2000 {
			tm := times[rng.IntN(len(times))]
			e := chunk.Entry{Sec: tm.sec, Nsec: tm.nsec, Record: records[rng.IntN(len(records))]}
			tag := tags[rng.IntN(len(tags))]
			want, err := AppendLine(nil, tag, e, o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := enc.AppendLine([]byte("prefix"), tag, e)
			if err != nil {
				t.Fatal(err)
			}
			if string(got[len("prefix"):]) != string(want) {
				t.Fatalf("%+v, line %d (tag %q, time %d.%d):\n got %s\nwant %s", o, i, tag, tm.sec, tm.nsec, got[len("prefix"):], want)
			}
		}
	}
}

func BenchmarkEncoder(b *testing.B) {
	benchEncoder(b, "kube.var.log.containers.web-7d4b9c8f6-x2x9z_shop_web-0123.log", benchRecord(b))
}

// benchEncoder encodes the record again and again, as an Encoder encodes a
// chunk's lines: same tag, same second.
func benchEncoder(b *testing.B, tag string, record []byte) {
	e := chunk.Entry{Sec: 1795332892, Nsec: 123456789, Record: record}
	enc := NewEncoder(DefaultOptions())
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(len(e.Record)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = enc.AppendLine(dst[:0], tag, e); err != nil {
			b.Fatal(err)
		}
	}
}

// appendFrac writes the nine digits time.Format writes for the same
// nanoseconds, at every digit's boundaries and at random.
func TestAppendFrac(t *testing.T) {
	ns := []int{0, 1, 9, 10, 99, 100, 999999999, 100000000, 123456789, 900000009}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 10000 {
		ns = append(ns, rng.IntN(1e9))
	}
	for _, n := range ns {
		want := time.Unix(0, int64(n)).UTC().Format(".000000000Z") + `"`
		if got := string(appendFrac([]byte("."), n)); got != want {
			t.Fatalf("appendFrac(%d) = %s, want %s", n, got, want)
		}
	}
}

// BenchmarkEncoderNginx encodes the record loadgen sends by default: an nginx
// access line, whose six quotes are escaped, and three short fields.
func BenchmarkEncoderNginx(b *testing.B) {
	rec := pack(b, om{
		{"log", `10.1.5.146 - - [22/Nov/2026:07:34:52 +0000] "GET /api/items/24000 HTTP/1.1" 200 2515 "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 S"`},
		{"stream", "stdout"},
		{"lg_run", "9bf068a3"},
		{"lg_seq", "0000002000"},
	})
	benchEncoder(b, "kube.var.log.containers.app-4-7d9f8b6c5-x0004_shop_app-0000000500000005000000050000000500000005000000050000000500000005.log", rec)
}
