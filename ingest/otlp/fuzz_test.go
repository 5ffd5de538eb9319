package otlp

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// FuzzExport feeds arbitrary bodies through the decoding and conversion an
// OTLP/HTTP request goes through: whatever pdata accepts becomes chunks
// whose entries are all valid, and as many as the records it did not
// refuse; nothing panics.
func FuzzExport(f *testing.F) {
	for _, n := range []int{1, 3} {
		pb, _ := plogotlp.NewExportRequestFromLogs(podLogs("ns", "pod", "c", n)).MarshalProto()
		js, _ := plogotlp.NewExportRequestFromLogs(podLogs("ns", "pod", "c", n)).MarshalJSON()
		f.Add(pb, false)
		f.Add(js, true)
	}
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"kvlistValue":{"values":[{"key":"a","value":{"arrayValue":{"values":[{"intValue":"7"}]}}}]}}}]}]}]}`), true)
	cv := converter{tag: mustTag(f, DefaultTag), maxRecord: 4 << 10, now: func() time.Time { return pinned }}
	f.Fuzz(func(t *testing.T, body []byte, json bool) {
		req := plogotlp.NewExportRequest()
		var err error
		if json {
			err = req.UnmarshalJSON(body)
		} else {
			err = req.UnmarshalProto(body)
		}
		if err != nil {
			return
		}
		var b batch
		cv.convert(req.Logs(), &b, len(body))
		defer b.release()
		total, stored := req.Logs().LogRecordCount(), 0
		for _, c := range b.chunks {
			stored += len(decode(t, *c))
		}
		if stored != b.records || stored+b.rejectedCount() != total {
			t.Fatalf("%d records: %d stored, %d counted, %d rejected", total, stored, b.records, b.rejectedCount())
		}
	})
}
