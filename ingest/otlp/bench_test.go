package otlp

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// benchRequest is a request like loadgen's: 1000 nginx lines of one pod,
// each with three attributes.
func benchRequest(b *testing.B) []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("k8s.namespace.name", "shop")
	ra.PutStr("k8s.pod.name", "app-1-7d9f8b6c5-x0001")
	ra.PutStr("k8s.container.name", "app")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i := range 1000 {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(1764900000000000000 + 1000*pcommonTS(i))
		lr.Body().SetStr(fmt.Sprintf(`10.1.%d.%d - - [22/Nov/2026:07:34:52 +0000] "GET /api/items/%d HTTP/1.1" 200 %d "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"`, i%256, i%7, i, 200+i))
		lr.Attributes().PutStr("stream", "stdout")
		lr.Attributes().PutStr("lg_run", "0a1b2c3d")
		lr.Attributes().PutStr("lg_seq", fmt.Sprintf("%010d", i))
	}
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkDecodeAndConvert is OTLP ingest's own work on one request:
// decoding with pdata, then converting to chunk entries, per record.
//
//	go test -run XXX -bench DecodeAndConvert -benchmem ./ingest/otlp/
func BenchmarkDecodeAndConvert(b *testing.B) {
	body := benchRequest(b)
	cv := converter{tag: mustTag(b, DefaultTag), maxRecord: 1 << 20, now: time.Now}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			b.Fatal(err)
		}
		var bt batch
		cv.convert(req.Logs(), &bt, len(body))
		if bt.records != 1000 {
			b.Fatal(bt.records)
		}
		bt.release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
}

func pcommonTS(i int) pcommon.Timestamp { return pcommon.Timestamp(i) }

// BenchmarkConvert is the conversion alone, from a decoded request.
func BenchmarkConvert(b *testing.B) {
	body := benchRequest(b)
	cv := converter{tag: mustTag(b, DefaultTag), maxRecord: 1 << 20, now: time.Now}
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var bt batch
		cv.convert(req.Logs(), &bt, len(body))
		bt.release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
}
