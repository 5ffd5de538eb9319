package httpin

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// FuzzDecodeJSON checks that Decode never panics, and that on success the
// entries walk with chunk.ReadEntry (and msgp.Skip) to exactly count, and
// that it accepts only valid JSON.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"log":"hello","stream":"stdout","time":1700000000}`,
		`[{"date":1700000000.123456,"log":"one"},{"date":"2023-11-14T22:13:20.000681Z","log":"two"}]`,
		"{\"date\":1700000000}\n{\"a\":[1,2.5,-3,true,null,{\"b\":\"c\"}]}\n",
		`{"a":1}{"b":{"c":[{}]}}`,
		`{"u":18446744073709551615,"i":-9223372036854775808,"f":1e308,"s":"\u00e9\ud83d\ude00"}`,
		`[{"a":1},2]`,
		`{"a":`,
		`{"date":"2023-11-14 22:13:20.5","time":{"x":1}}`,
		`[[[]]]`,
	} {
		f.Add([]byte(s))
	}
	opts := Options{TimeKeys: DefaultTimeKeys, MaxRecords: 1000, MaxRecordBytes: 64 << 10}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := string(in)
		out, n, err := Decode(in, FormatJSON, opts)
		if string(in) != orig {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error %v (%T) is not an *Error with a reason", err, err)
			}
			return
		}
		if !json.Valid(in) && !validStream(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		checkEntries(t, out, n)
	})
}

// FuzzDecodeMsgpack is FuzzDecodeJSON for msgpack bodies.
func FuzzDecodeMsgpack(f *testing.F) {
	for _, s := range []string{
		"\x82\xa3log\xa5hello\xa4date\xce\x65\x53\xf1\x00",
		"\x92\xd7\x00\x65\x53\xf1\x00\x00\x00\x00\x05\x81\xa1a\x01",
		"\x92\x92\xd7\x00\x65\x53\xf1\x00\x00\x00\x00\x00\x80\x81\xa1a\x01",
		"\x92\x81\xa1a\x01\x92\xce\x65\x53\xf1\x00\x80",
		"\xc1",
	} {
		f.Add([]byte(s))
	}
	opts := Options{TimeKeys: DefaultTimeKeys, MaxRecords: 1000, MaxRecordBytes: 64 << 10}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, n, err := Decode(in, FormatMsgpack, opts)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error %v (%T) is not an *Error with a reason", err, err)
			}
			return
		}
		checkEntries(t, out, n)
	})
}

func checkEntries(t *testing.T, out []byte, n int) {
	t.Helper()
	got := 0
	for off := 0; off < len(out); got++ {
		_, next, err := chunk.ReadEntry(out, off)
		if err != nil {
			t.Fatalf("entry %d: %v", got, err)
		}
		if end, err := msgp.Skip(out, off); err != nil || end != next {
			t.Fatalf("entry %d: Skip %d %v, ReadEntry %d", got, end, err, next)
		}
		off = next
	}
	if got != n {
		t.Fatalf("%d entries, count %d", got, n)
	}
}

// validStream reports whether in is a sequence of valid JSON values.
func validStream(in []byte) bool {
	dec := json.NewDecoder(bytesReader(in))
	for {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err.Error() == "EOF"
		}
	}
}

// FuzzFastJSONMatchesFull checks the fast JSON path against the full
// decoder: whenever the fast path takes a body, both produce the same bytes.
func FuzzFastJSONMatchesFull(f *testing.F) {
	for _, s := range []string{
		`{"log":"hello","stream":"stdout","time":1700000000}`,
		`[{"date":1700000000,"log":"one"},{"date":"2023-11-14T22:13:20.000681Z","log":"two"}]`,
		"{\"date\":\"x\",\"time\":1700000000}\n{\"a\":[1,2.5,-3,true,null,{\"b\":\"c\"}]}\n",
		`{"a":1}{"b":{"c":[{}]}}`,
		`{"u":18446744073709551615,"i":-9223372036854775808,"f":1e308,"s":"\u00e9\ud83d\ude00 \u2028"}`,
		`{"k":"\xff\xfe bad utf8","e":""}`,
		`[]`, ` [ {"a" : 1 } , {"b":2} ] `,
	} {
		f.Add([]byte(s))
	}
	now := time.Unix(1795332892, 123)
	f.Fuzz(func(t *testing.T, in []byte) {
		opts := Options{TimeKeys: DefaultTimeKeys, MaxRecords: 1000, MaxRecordBytes: 64 << 10, Now: now}
		fast := decoder{o: &opts}
		if !fast.fastJSON(in) {
			return
		}
		full := decoder{o: &opts}
		if err := full.json(in); err != nil {
			t.Fatalf("the fast path took %q but the full decoder rejects it: %v", in, err)
		}
		if fast.n != full.n || !bytes.Equal(fast.out, full.out) {
			t.Fatalf("%q: fast %d records %x\nfull %d records %x", in, fast.n, fast.out, full.n, full.out)
		}
	})
}
