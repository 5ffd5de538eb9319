package forward_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicelog/sluice/ingest/forward"
	"github.com/sluicelog/sluice/internal/msgp"
)

// benchEntrySize is the encoded size of one benchmark entry.
const benchEntrySize = 250

// benchRecord encodes a container-log record like those of Fluent Bit's
// tail + kubernetes filter, with the log line padded so that the entry
// [EventTime, record] is exactly benchEntrySize bytes.
func benchRecord(tb testing.TB, i int) []byte {
	tb.Helper()
	build := func(line string) []byte {
		b := msgp.AppendMapHeader(nil, 4)
		b = msgp.AppendStr(b, "log")
		b = msgp.AppendStr(b, line)
		b = msgp.AppendStr(b, "stream")
		b = msgp.AppendStr(b, "stdout")
		b = msgp.AppendStr(b, "time")
		b = msgp.AppendStr(b, fmt.Sprintf("2026-03-14T09:26:%02d.%09dZ", i%60, i*7919%1e9))
		b = msgp.AppendStr(b, "kubernetes")
		b = msgp.AppendMapHeader(b, 2)
		b = msgp.AppendStr(b, "pod_name")
		b = msgp.AppendStr(b, fmt.Sprintf("web-7d4b9c6f5-%05d", i%100000))
		b = msgp.AppendStr(b, "namespace_name")
		b = msgp.AppendStr(b, "shop")
		return b
	}
	line := fmt.Sprintf(`10.244.%d.%d - - [14/Mar/2026:09:26:%02d +0000] "GET /api/v1/products/%d?page=2 HTTP/1.1" 200 %d "-" "Mozilla/5.0 (X11; Linux x86_64)"`,
		i%256, i*31%256, i%60, i, 1000+i%9000)
	// entry = fixarray(1) + EventTime(10) + record
	pad := benchEntrySize - 11 - len(build(line))
	if pad < 0 {
		line = line[:len(line)+pad]
	} else {
		line += strings.Repeat(" ", pad)
	}
	rec := build(line)
	if n := 11 + len(rec); n != benchEntrySize {
		tb.Fatalf("entry is %d bytes, want %d", n, benchEntrySize)
	}
	return rec
}

// benchEntries returns n [EventTime, record] entries.
func benchEntries(tb testing.TB, n int) []byte {
	var p []byte
	for i := 0; i < n; i++ {
		p = msgp.AppendArrayHeader(p, 2)
		p = msgp.AppendEventTime(p, uint32(1773480000+i), uint32(i*1000))
		p = append(p, benchRecord(tb, i)...)
	}
	return p
}

func BenchmarkDecode(b *testing.B) {
	const n = 1000
	entries := benchEntries(b, n)
	options := func(extra ...any) []byte {
		o := msgp.AppendMapHeader(nil, 2+len(extra)/2)
		o = msgp.AppendStr(o, "size")
		o = append(o, 0xcd, byte(n>>8), byte(n&0xff))
		o = msgp.AppendStr(o, "chunk")
		o = msgp.AppendStr(o, "p8n9gmxTQVC8/ukMgCJcXw==")
		for i := 0; i+1 < len(extra); i += 2 {
			o = msgp.AppendStr(o, extra[i].(string))
			o = msgp.AppendStr(o, extra[i+1].(string))
		}
		return o
	}
	tag := "kube.var.log.containers.web-7d4b9c6f5-00001_shop_nginx-0123456789abcdef.log"

	message := msgp.AppendArrayHeader(nil, 3)
	message = msgp.AppendStr(message, tag)
	message = msgp.AppendEventTime(message, 1773480000, 0)
	message = append(message, benchRecord(b, 0)...)

	fwd := msgp.AppendArrayHeader(nil, 3)
	fwd = msgp.AppendStr(fwd, tag)
	fwd = msgp.AppendArrayHeader(fwd, n)
	fwd = append(fwd, entries...)
	fwd = append(fwd, options()...)

	packed := msgp.AppendArrayHeader(nil, 3)
	packed = msgp.AppendStr(packed, tag)
	packed = msgp.AppendBin(packed, entries)
	packed = append(packed, options()...)

	gz := msgp.AppendArrayHeader(nil, 3)
	gz = msgp.AppendStr(gz, tag)
	gz = msgp.AppendBin(gz, cdcGzip(b, entries))
	gz = append(gz, options("compressed", "gzip")...)

	for _, bc := range []struct {
		name  string
		in    []byte
		count int
	}{
		{"message", message, 1},
		{"forward", fwd, n},
		{"packed", packed, n},
		{"gzip", gz, n},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := forward.NewDecoder(forward.Limits{})
			defer d.Close()
			// Check once, outside the timing, that the input is what we think.
			ev, used, err := d.Decode(bc.in)
			if err != nil || used != len(bc.in) || ev.Count != bc.count {
				b.Fatalf("Decode: count %d, n %d of %d, %v", ev.Count, used, len(bc.in), err)
			}
			b.SetBytes(int64(len(bc.in)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := d.Decode(bc.in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*bc.count)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
