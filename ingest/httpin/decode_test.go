package httpin

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

var t0 = time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)

// rec is one decoded entry: its time, metadata, record keys in order and
// record values.
type rec struct {
	Sec  int64
	Nsec int32
	Meta map[string]any
	Keys []string
	Rec  map[string]any
}

// walk decodes entries with chunk.ReadEntry, checking the count.
func walk(t testing.TB, entries []byte, count int) []rec {
	t.Helper()
	var out []rec
	for off := 0; off < len(entries); {
		e, next, err := chunk.ReadEntry(entries, off)
		if err != nil {
			t.Fatalf("entry %d at %d: %v", len(out), off, err)
		}
		if _, err := msgp.Skip(entries, off); err != nil {
			t.Fatalf("entry %d: Skip: %v", len(out), err)
		}
		r := rec{Sec: e.Sec, Nsec: e.Nsec, Keys: keys(t, e.Record)}
		if err := msgpack.Unmarshal(e.Record, &r.Rec); err != nil {
			t.Fatal(err)
		}
		if e.Meta != nil {
			if err := msgpack.Unmarshal(e.Meta, &r.Meta); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, r)
		off = next
	}
	if len(out) != count {
		t.Fatalf("%d entries, count says %d", len(out), count)
	}
	return out
}

// keys lists the top-level keys of a msgpack map in order.
func keys(t testing.TB, m []byte) []string {
	t.Helper()
	n, off, err := msgp.ReadMapHeader(m, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for range n {
		k, next, err := msgp.ReadStr(m, off)
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, string(k))
		if off, err = msgp.Skip(m, next); err != nil {
			t.Fatal(err)
		}
	}
	return ks
}

func mp(t testing.TB, vs ...any) []byte {
	t.Helper()
	var b []byte
	for _, v := range vs {
		p, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, p...)
	}
	return b
}

// entry encodes [EventTime, record] with the record's keys in the given
// order (kv alternates keys and values).
func entry(t testing.TB, tm time.Time, kv ...any) []byte {
	b := msgp.AppendArrayHeader(nil, 2)
	b = msgp.AppendEventTime(b, uint32(tm.Unix()), uint32(tm.Nanosecond()))
	return append(b, omap(t, kv...)...)
}

// omap encodes a map with keys in the given order.
func omap(t testing.TB, kv ...any) []byte {
	b := msgp.AppendMapHeader(nil, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		b = msgp.AppendStr(b, kv[i].(string))
		b = append(b, mp(t, kv[i+1])...)
	}
	return b
}

func decodeOK(t *testing.T, body string, f Format, o Options) []rec {
	t.Helper()
	if o.Now.IsZero() {
		o.Now = t0
	}
	out, n, err := Decode([]byte(body), f, o)
	if err != nil {
		t.Fatalf("Decode(%.80q): %v", body, err)
	}
	return walk(t, out, n)
}

func TestDecodeJSONValues(t *testing.T) {
	rs := decodeOK(t, `{"s":"x","i":-5,"u":18446744073709551615,"big":-9223372036854775808,`+
		`"f":1.5,"e":1e3,"t":true,"n":null,"a":[1,"two",{"z":[]}],"o":{"k":{}},"esc":"a\"b\u00e9\n"}`,
		FormatJSON, Options{TimeKeys: DefaultTimeKeys})
	want := map[string]any{
		"s": "x", "i": int8(-5), "u": uint64(math.MaxUint64), "big": int64(math.MinInt64),
		"f": 1.5, "e": 1000.0, "t": true, "n": nil,
		"a": []any{int8(1), "two", map[string]any{"z": []any{}}},
		"o": map[string]any{"k": map[string]any{}}, "esc": "a\"bé\n",
	}
	if !reflect.DeepEqual(rs[0].Rec, want) {
		t.Fatalf("record\n got %#v\nwant %#v", rs[0].Rec, want)
	}
	if got := strings.Join(rs[0].Keys, ","); got != "s,i,u,big,f,e,t,n,a,o,esc" {
		t.Fatalf("key order %s", got)
	}
	if rs[0].Sec != t0.Unix() || rs[0].Nsec != 0 {
		t.Fatalf("time %d.%d, want now", rs[0].Sec, rs[0].Nsec)
	}
}

func TestDecodeKeyOrderAndLargeContainers(t *testing.T) {
	// Keys in reverse alphabetical order, and objects and arrays above the
	// fixmap/fixarray sizes, so that every header size is compacted.
	var sb strings.Builder
	sb.WriteString(`{"z":1,"y":2,"x":3,"big":{`)
	for i := range 300 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"k%03d":%d`, 299-i, i)
	}
	sb.WriteString(`},"arr":[`)
	for i := range 70000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('0')
	}
	sb.WriteString(`],"a":0}`)
	rs := decodeOK(t, sb.String(), FormatJSON, Options{MaxRecordBytes: 1 << 20})
	if got := strings.Join(rs[0].Keys, ","); got != "z,y,x,big,arr,a" {
		t.Fatalf("key order %s", got)
	}
	if n := len(rs[0].Rec["big"].(map[string]any)); n != 300 {
		t.Fatalf("big has %d keys", n)
	}
	if n := len(rs[0].Rec["arr"].([]any)); n != 70000 {
		t.Fatalf("arr has %d elements", n)
	}
}

func TestDecodeJSONShapes(t *testing.T) {
	for _, c := range []struct {
		name, body string
		f          Format
		n          int
	}{
		{"object", `{"a":1}`, FormatJSON, 1},
		{"array", `[{"a":1},{"a":2},{"a":3}]`, FormatJSON, 3},
		{"empty array", ` [ ] `, FormatJSON, 0},
		{"empty body", ``, FormatJSON, 0},
		{"ndjson", "{\"a\":1}\n{\"a\":2}\r\n{\"a\":3}\n", FormatNDJSON, 3},
		{"json_stream", `{"a":1}{"a":2}{"a":3}`, FormatJSONStream, 3},
		{"arrays in a stream", `[{"a":1}][{"a":2},{"a":3}]`, FormatJSONStream, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := decodeOK(t, c.body, c.f, Options{})
			if len(rs) != c.n {
				t.Fatalf("%d records, want %d", len(rs), c.n)
			}
			for i, r := range rs {
				if r.Rec["a"] != int8(i+1) {
					t.Fatalf("record %d: %v", i, r.Rec)
				}
			}
		})
	}
}

func TestDecodeTimes(t *testing.T) {
	keys := DefaultTimeKeys
	for _, c := range []struct {
		name, body string
		sec        int64
		nsec       int32
		left       []string // keys left in the record
	}{
		{"double", `{"date":1700000000.123456,"log":"x"}`, 1700000000, 123456000, []string{"log"}},
		{"epoch", `{"log":"x","date":1700000000}`, 1700000000, 0, []string{"log"}},
		{"epoch_ms", `{"date":1700000000123,"log":"x"}`, 1700000000, 123000000, []string{"log"}},
		{"epoch_us", `{"date":1700000000123456,"log":"x"}`, 1700000000, 123456000, []string{"log"}},
		{"epoch_ns", `{"date":1700000000123456789,"log":"x"}`, 1700000000, 123456789, []string{"log"}},
		{"exponent", `{"date":1.7e9,"log":"x"}`, 1700000000, 0, []string{"log"}},
		{"iso8601", `{"date":"2023-11-14T22:13:20.000681Z","log":"x"}`, 1700000000, 681000, []string{"log"}},
		{"iso8601 offset", `{"date":"2023-11-15T00:13:20+02:00","log":"x"}`, 1700000000, 0, []string{"log"}},
		{"java_sql_timestamp", `{"date":"2023-11-14 22:13:20.5","log":"x"}`, 1700000000, 500000000, []string{"log"}},
		{"fluentd time", `{"time":1700000000,"log":"x"}`, 1700000000, 0, []string{"log"}},
		{"first key wins", `{"time":1700000000,"date":1600000000,"log":"x"}`, 1700000000, 0, []string{"date", "log"}},
		{"unusable stays", `{"date":"yesterday","time":{"a":1},"log":"x"}`, t0.Unix(), 0, []string{"date", "time", "log"}},
		{"negative stays", `{"date":-1,"log":"x"}`, t0.Unix(), 0, []string{"date", "log"}},
		{"nested not a time key", `{"log":{"date":1700000000}}`, t0.Unix(), 0, []string{"log"}},
		{"no time", `{"log":"x"}`, t0.Unix(), 0, []string{"log"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := decodeOK(t, c.body, FormatJSON, Options{TimeKeys: keys})
			r := rs[0]
			if r.Sec != c.sec || r.Nsec != c.nsec {
				t.Fatalf("time %d.%09d, want %d.%09d", r.Sec, r.Nsec, c.sec, c.nsec)
			}
			if !reflect.DeepEqual(r.Keys, c.left) {
				t.Fatalf("keys %v, want %v", r.Keys, c.left)
			}
		})
	}
	t.Run("override", func(t *testing.T) {
		fixed := time.Unix(1500000000, 250)
		rs := decodeOK(t, `{"time":1700000000,"log":"x"}`, FormatJSON, Options{TimeKeys: keys, Time: fixed})
		if rs[0].Sec != 1500000000 || rs[0].Nsec != 250 || len(rs[0].Keys) != 2 {
			t.Fatalf("%+v", rs[0])
		}
	})
	t.Run("no time keys", func(t *testing.T) {
		rs := decodeOK(t, `{"time":1700000000}`, FormatJSON, Options{})
		if rs[0].Sec != t0.Unix() || len(rs[0].Keys) != 1 {
			t.Fatalf("%+v", rs[0])
		}
	})
}

func TestDecodeMsgpack(t *testing.T) {
	tm := time.Unix(1700000000, 5)
	meta := msgp.AppendArrayHeader(nil, 2)
	meta = msgp.AppendArrayHeader(meta, 2)
	meta = msgp.AppendEventTime(meta, 1700000001, 0)
	meta = append(meta, omap(t, "m", 1)...)
	meta = append(meta, omap(t, "log", "meta")...)
	intTime := append(msgp.AppendArrayHeader(nil, 2), mp(t, 1700000002)...)
	intTime = append(intTime, omap(t, "log", "int")...)

	var body []byte
	body = append(body, omap(t, "b", 1, "a", 2, "date", 1700000003)...) // a map with a time key
	body = append(body, entry(t, tm, "log", "entry")...)                // [EventTime, record]
	body = append(body, meta...)                                        // [[time, meta], record]
	body = append(body, intTime...)                                     // [int, record]
	arr := msgp.AppendArrayHeader(nil, 3)                               // an array of maps and entries
	arr = append(arr, omap(t, "log", "in array")...)
	arr = append(arr, entry(t, tm, "log", "entry in array")...)
	arr = append(arr, omap(t, "date", "2023-11-14T22:13:20Z", "log", "iso")...)
	body = append(body, arr...)

	out, n, err := Decode(body, FormatMsgpack, Options{Now: t0, TimeKeys: DefaultTimeKeys})
	if err != nil {
		t.Fatal(err)
	}
	rs := walk(t, out, n)
	if len(rs) != 7 {
		t.Fatalf("%d records", len(rs))
	}
	check := func(i int, sec int64, nsec int32, keys string) {
		t.Helper()
		r := rs[i]
		if r.Sec != sec || r.Nsec != nsec || strings.Join(r.Keys, ",") != keys {
			t.Fatalf("record %d: %d.%d %v", i, r.Sec, r.Nsec, r.Keys)
		}
	}
	check(0, 1700000003, 0, "b,a")
	check(1, 1700000000, 5, "log")
	check(2, 1700000001, 0, "log")
	if rs[2].Meta["m"] != int8(1) {
		t.Fatalf("metadata %v", rs[2].Meta)
	}
	check(3, 1700000002, 0, "log")
	check(4, t0.Unix(), 0, "log")
	check(5, 1700000000, 5, "log")
	check(6, 1700000000, 0, "log")
	// Entries are kept byte for byte.
	if !strings.Contains(string(out), string(meta)) || !strings.Contains(string(out), string(intTime)) {
		t.Fatal("Forward entries were not kept as they came")
	}
}

func TestDecodeErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 300) + `1` + strings.Repeat(`}`, 300)
	deepArr := `{"a":` + strings.Repeat(`[`, 300) + strings.Repeat(`]`, 300) + `}`
	for _, c := range []struct {
		name, body string
		f          Format
		reason     string
		msg        string
	}{
		{"invalid json", `{"a":}`, FormatJSON, ReasonJSON, "invalid JSON"},
		{"truncated json", `{"a":1`, FormatJSON, ReasonJSON, "record 0"},
		{"number in array", `[{"a":1},{"a":2},{"a":3},4]`, FormatJSON, ReasonRecord, "record 3 is a number, want an object"},
		{"string at top", `{"a":1} "x"`, FormatNDJSON, ReasonRecord, "record 1 is a string, want an object"},
		{"array in array", `[[{"a":1}]]`, FormatJSON, ReasonRecord, "record 0 is an array"},
		{"null", `null`, FormatJSON, ReasonRecord, "record 0 is null"},
		{"second line bad", "{\"a\":1}\n{\"a\":\n", FormatNDJSON, ReasonJSON, "record 1"},
		{"too deep", deep, FormatJSON, ReasonTooDeep, "nests deeper"},
		{"too deep array", deepArr, FormatJSON, ReasonTooDeep, "nests deeper"},
		{"huge number", `{"a":1e999}`, FormatJSON, ReasonNumber, "out of range"},
		{"too many", `[{},{},{},{}]`, FormatJSON, ReasonTooMany, "more than 3 records"},
		{"record too large", `{"a":"` + strings.Repeat("x", 2000) + `"}`, FormatJSON, ReasonRecordTooLarge, "record 0 is"},
		{"msgpack garbage", "\xc1", FormatMsgpack, ReasonMsgpack, "invalid msgpack"},
		{"msgpack truncated", "\x82\xa1a", FormatMsgpack, ReasonMsgpack, "ends inside record 0"},
		{"msgpack string", string(mp(t, map[string]any{"a": 1}, "x")), FormatMsgpack, ReasonRecord, "record 1 is a str"},
		{"msgpack array of ints", string(mp(t, []any{1, 2})), FormatMsgpack, ReasonRecord, "record 0 is an integer"},
		{"msgpack bad entry time", string(mp(t, []any{"x", map[string]any{}})), FormatMsgpack, ReasonRecord, "record 0 is a str"},
		{"msgpack bad ext time", "\x92\xd4\x05\x00\x80", FormatMsgpack, ReasonTime, "record 0"},
		{"msgpack too many", string(mp(t, []any{map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}})), FormatMsgpack, ReasonTooMany, "more than 3"},
		{"msgpack too deep", "\x81\xa1a" + strings.Repeat("\x91", 256) + "\x01", FormatMsgpack, ReasonTooDeep, "nests deeper"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := []byte("keep")
			out, n, err := AppendDecode(dst, []byte(c.body), c.f, Options{MaxRecords: 3, MaxRecordBytes: 1024, TimeKeys: DefaultTimeKeys})
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if de.Reason != c.reason || !strings.Contains(de.Error(), c.msg) {
				t.Fatalf("reason %q, error %q; want %q containing %q", de.Reason, de.Error(), c.reason, c.msg)
			}
			if n != 0 || string(out) != "keep" {
				t.Fatalf("on error: n=%d out=%q", n, out)
			}
		})
	}
}

func TestNumberTimeAndAppendNumber(t *testing.T) {
	for _, s := range []string{"0", "1", "127", "128", "255", "256", "65535", "65536", "4294967295", "4294967296",
		"-1", "-32", "-33", "-128", "-129", "-32768", "-32769", "-2147483648", "-2147483649",
		"9223372036854775807", "9223372036854775808", "18446744073709551616", "0.1", "-0.0", "1E2"} {
		b, err := appendNumber(nil, s)
		if err != nil {
			t.Fatal(s, err)
		}
		var v any
		if err := msgpack.Unmarshal(b, &v); err != nil {
			t.Fatal(s, err)
		}
		if got := fmt.Sprint(v); got != s && !(strings.ContainsAny(s, ".eE") || s == "18446744073709551616") {
			t.Fatalf("%s: got %s", s, got)
		}
	}
}
