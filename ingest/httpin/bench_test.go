package httpin

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// ndjsonBody returns n container-log records of about 250 bytes each, as
// Fluent Bit's json_lines sends them.
func ndjsonBody(n int) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"date":1700000000.%06d,"log":"2023-11-14T22:13:20.%06dZ INFO request handled path=/api/v1/items status=200 bytes=%d","stream":"stdout","time":"2023-11-14T22:13:20.%06dZ","kubernetes":{"pod":"app-7d9f-x2","ns":"prod"}}`+"\n",
			i, i, 1000+i, i)
	}
	return []byte(b.String())
}

func BenchmarkDecodeNDJSON(b *testing.B) {
	const n = 1000
	body := ndjsonBody(n)
	opts := Options{TimeKeys: DefaultTimeKeys}
	var out []byte
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var err error
		out, _, err = AppendDecode(out[:0], body, FormatNDJSON, opts)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
	b.ReportMetric(float64(len(body))/n, "bytes/record")
}

func BenchmarkDecodeMsgpackEntries(b *testing.B) {
	const n = 1000
	jsonOut, _, err := Decode(ndjsonBody(n), FormatNDJSON, Options{TimeKeys: DefaultTimeKeys})
	if err != nil {
		b.Fatal(err)
	}
	var out []byte
	b.SetBytes(int64(len(jsonOut)))
	b.ReportAllocs()
	for b.Loop() {
		if out, _, err = AppendDecode(out[:0], jsonOut, FormatMsgpack, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
}
