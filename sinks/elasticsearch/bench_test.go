package elasticsearch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/elasticsearch/esfake"
)

// containerRecords are enriched container log records of about 600 bytes
// of JSON, as Fluent Bit's kubernetes filter leaves them.
func containerRecords(b testing.TB, n int) []sinks.Record {
	recs := make([]map[string]any, n)
	for i := range recs {
		recs[i] = map[string]any{
			"log":    fmt.Sprintf(`10.1.128.%d - - [22/Nov/2026:07:34:52 +0000] "GET /api/items/%d HTTP/1.1" 200 612 "-" "hey/0.0.1"`, i%250, i),
			"stream": "stdout",
			"kubernetes": map[string]any{
				"pod_name": "web-7d9f8b6c5-x2x9z", "namespace_name": "shop", "pod_id": "7f0c6c1e-5f0b-4d7e-9a51-2c3b0c8f6d21",
				"host": "ip-10-0-12-34.eu-west-1.compute.internal", "container_name": "nginx", "container_image": "nginx:1.27",
				"labels":      map[string]any{"app": "web", "app.kubernetes.io/name": "storefront", "pod-template-hash": "7d9f8b6c5"},
				"annotations": map[string]any{"prometheus.io/scrape": "true"},
			},
		}
	}
	return batch(b, "kube.var.log.containers.web", 1000, recs...)
}

// plainRecords are records without a kubernetes block, like those of the
// bench's nginx workload: the replace-dots rewrite has nothing to change.
func plainRecords(b testing.TB, n int) []sinks.Record {
	recs := make([]map[string]any, n)
	for i := range recs {
		recs[i] = map[string]any{
			"log":    fmt.Sprintf(`10.1.128.%d - - [22/Nov/2026:07:34:52 +0000] "GET /api/items/%d HTTP/1.1" 200 612 "-" "hey/0.0.1"`, i%250, i),
			"stream": "stdout", "lg_run": "32f83423", "lg_seq": fmt.Sprintf("%010d", i),
		}
	}
	return batch(b, "nginx.access", 1000, recs...)
}

// BenchmarkEncodeDocument is the CPU per document of the bulk body: the
// action line, replace-dots and the JSON document, of enriched container
// records and of plain ones.
func BenchmarkEncodeDocument(b *testing.B) {
	for _, shape := range []struct {
		name string
		recs func(testing.TB, int) []sinks.Record
	}{{"container", containerRecords}, {"plain", plainRecords}} {
		b.Run(shape.name, func(b *testing.B) {
			s := newSink(b, Config{URLs: []string{"http://127.0.0.1:1"}, LogstashFormat: true})
			recs := shape.recs(b, 1000)
			buf := s.bufs.Get().(*buffers)
			var body []byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var err error
				if body, err = s.appendDoc(body[:0], &recs[i%len(recs)], buf); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(body)))
		})
	}
}

// nullCluster answers every bulk request with success for each document,
// like a cluster that keeps up, so the benchmark measures the sink.
func nullCluster(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var wire atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		wire.Add(n)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"errors":false,"took":1,"items":[]}`))
	}))
	b.Cleanup(srv.Close)
	return srv, &wire
}

// BenchmarkWrite is Write of 5,000-record batches to a cluster that keeps
// up: documents per second and CPU per document of the sink, including
// gzip and HTTP, and the bytes per request.
func BenchmarkWrite(b *testing.B) {
	for _, compress := range []string{CompressGzip, CompressNone} {
		b.Run(compress, func(b *testing.B) {
			srv, wire := nullCluster(b)
			s := newSink(b, Config{URLs: []string{srv.URL}, Compress: compress})
			recs := containerRecords(b, 5000)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Write(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			docs := float64(b.N * len(recs))
			b.ReportMetric(docs/b.Elapsed().Seconds(), "docs/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/docs, "ns/doc")
			b.ReportMetric(float64(wire.Load())/float64(b.N), "wire-bytes/request")
			b.ReportMetric(float64(counterValue(b, s, "sluice_elasticsearch_requests_total"))/float64(b.N), "requests/write")
		})
	}
}

// BenchmarkWriteEsfake writes into the in-process fake, which parses,
// maps and stores every document: the whole path in one process.
func BenchmarkWriteEsfake(b *testing.B) {
	es := esfake.New(esfake.Options{})
	b.Cleanup(es.Close)
	s := newSink(b, Config{URLs: []string{es.URL()}})
	recs := containerRecords(b, 5000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range recs {
			recs[j].Seq = uint64(i + 1)
		}
		if err := s.Write(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := es.Stats()
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric(float64(st.WireBytes)/float64(st.BulkRequests), "wire-bytes/request")
	b.ReportMetric(float64(st.BodyBytes)/float64(st.BulkRequests), "ndjson-bytes/request")
	if !strings.Contains(fmt.Sprint(es.Indices()), DefaultIndex) {
		b.Fatal("nothing stored")
	}
}
