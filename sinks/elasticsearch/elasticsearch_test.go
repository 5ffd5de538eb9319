package elasticsearch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/testcerts"
	"github.com/sluicelog/sluice/internal/units"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/elasticsearch/esfake"
	"github.com/sluicelog/sluice/sinks/sinktest"
)

// newSink opens a sink on cfg with its defaults; it is closed at the end.
func newSink(t testing.TB, cfg Config, opts ...Option) *Sink {
	t.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	s, err := New(context.Background(), cfg, "es", component.Settings{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// when is the event time of the test records: 2026-11-22T07:34:52Z plus
// nanoseconds.
var when = time.Date(2026, 11, 22, 7, 34, 52, 0, time.UTC)

// batch makes records of one chunk with stream sequence seq; record i has
// the event time when + i ns.
func batch(t testing.TB, tag string, seq uint64, recs ...map[string]any) []sinks.Record {
	t.Helper()
	out := make([]sinks.Record, len(recs))
	for i, r := range recs {
		b, err := msgpack.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = sinks.Record{Tag: tag, Entry: chunk.Entry{Sec: when.Unix(), Nsec: int32(i), Record: b}, Seq: seq, Index: i}
	}
	return out
}

func numbered(n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{"n": i, "log": fmt.Sprintf("line %d %s", i, strings.Repeat("x", 100))}
	}
	return out
}

func TestDocumentShape(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	s := newSink(t, Config{URLs: []string{es.URL()}, Index: "logs", TagKey: "tag", RemoveKeys: []string{"kubernetes.pod_id"}})
	recs := batch(t, "kube.var.log.containers.web", 42, map[string]any{
		"log": "GET /", "level": "info",
		"kubernetes": map[string]any{
			"namespace_name": "shop", "pod_name": "web-1", "pod_id": "uid-1",
			"labels":      map[string]any{"app": "web", "app.kubernetes.io/name": "web"},
			"annotations": map[string]any{"prometheus.io/scrape": "true"},
		},
	}, map[string]any{"@timestamp": "own", "n": 1})
	recs[0].Nsec = 123456789
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	doc, ok := es.Doc("logs", "42-0")
	if !ok {
		t.Fatalf("no document 42-0 in logs; ids: %v", es.IDs("logs"))
	}
	want := map[string]any{
		"@timestamp": "2026-11-22T07:34:52.123456789Z",
		"tag":        "kube.var.log.containers.web",
		"log":        "GET /", "level": "info",
		"kubernetes": map[string]any{
			"namespace_name": "shop", "pod_name": "web-1",
			"labels":      map[string]any{"app": "web", "app_kubernetes_io/name": "web"},
			"annotations": map[string]any{"prometheus_io/scrape": "true"},
		},
	}
	if fmt.Sprint(doc) != fmt.Sprint(want) {
		t.Errorf("document:\n got %v\nwant %v", doc, want)
	}
	// A record's own @timestamp wins over the event time.
	if doc, _ := es.Doc("logs", "42-1"); doc["@timestamp"] != "own" {
		t.Errorf("second document: %v", doc)
	}
	reqs := es.BulkRequests()
	if len(reqs) != 1 || !reqs[0].Gzip || reqs[0].Items != 2 || reqs[0].Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("requests: %+v", reqs)
	}
}

// Without replace-dots the fake, like Elasticsearch, refuses a label that
// makes labels.app an object after it was a string: that is what the
// default prevents.
func TestReplaceDotsPreventsMappingConflicts(t *testing.T) {
	labels := []map[string]any{
		{"kubernetes": map[string]any{"labels": map[string]any{"app": "web"}}},
		{"kubernetes": map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "web"}}},
	}
	for _, scope := range []string{DotsNone, DotsKubernetes} {
		es := esfake.New(esfake.Options{})
		s := newSink(t, Config{URLs: []string{es.URL()}, ReplaceDots: scope})
		err := s.Write(context.Background(), batch(t, "t", 1, labels...))
		var pe *sinks.PartialError
		switch scope {
		case DotsNone:
			if !errors.As(err, &pe) || len(pe.Failed) != 1 || !sinks.IsPermanent(pe.Failed[1]) ||
				!strings.Contains(pe.Failed[1].Error(), "document_parsing_exception") {
				t.Errorf("none: want the second record dead with the mapping error, got %v", err)
			}
		case DotsKubernetes:
			if err != nil || es.Count(DefaultIndex) != 2 {
				t.Errorf("kubernetes: %v, %d documents", err, es.Count(DefaultIndex))
			}
		}
		es.Close()
	}
}

func TestIndexNaming(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	late := when.Add(16*time.Hour + 30*time.Minute) // 2026-11-23 00:04 UTC, 09:04 in Tokyo
	cases := []struct {
		name string
		cfg  Config
		rec  map[string]any
		at   time.Time
		want string
	}{
		{"fixed", Config{Index: "app-logs"}, map[string]any{"n": 0}, when, "app-logs"},
		{"logstash", Config{LogstashFormat: true}, map[string]any{"n": 1}, when, "logstash-2026.11.22"},
		{"logstash at midnight UTC", Config{LogstashFormat: true, LogstashPrefix: "k8s"}, map[string]any{"n": 2}, late, "k8s-2026.11.23"},
		{"logstash in Tokyo", Config{LogstashFormat: true, LogstashPrefix: "k8s", TimeZone: "Asia/Tokyo", LogstashDateFormat: "%Y.%m.%d.%H"},
			map[string]any{"n": 3}, when, "k8s-2026.11.22.16"},
		{"per namespace", Config{Index: "logs-${kubernetes.namespace_name}"},
			map[string]any{"n": 4, "kubernetes": map[string]any{"namespace_name": "Shop Front"}}, when, "logs-shop_front"},
		{"per namespace, missing", Config{Index: "logs-${kubernetes.namespace_name}", IndexFallback: "logs-unknown"},
			map[string]any{"n": 5}, when, "logs-unknown"},
		{"logstash per namespace", Config{LogstashFormat: true, LogstashPrefix: "${kubernetes.namespace_name}"},
			map[string]any{"n": 6, "kubernetes": map[string]any{"namespace_name": "_kube-system"}}, when, "kube-system-2026.11.22"},
		{"logstash per namespace, missing", Config{LogstashFormat: true, LogstashPrefix: "${kubernetes.namespace_name}"},
			map[string]any{"n": 7}, when, "logstash-2026.11.22"},
		{"by tag", Config{Index: "${tag[0]}-${tag[1]}"}, map[string]any{"n": 8}, when, "kube-var"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.URLs = []string{es.URL()}
			s := newSink(t, c.cfg)
			recs := batch(t, "kube.var.log", 7, c.rec)
			recs[0].Sec = c.at.Unix()
			if err := s.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			if _, ok := es.Doc(c.want, "7-0"); !ok {
				t.Errorf("no document in %s; indices: %v", c.want, es.Indices())
			}
		})
	}
}

func TestSanitizeIndex(t *testing.T) {
	cases := map[string]string{
		"Shop":                   "shop",
		`a\b/c*d?e"f<g>h|i`:      "a_b_c_d_e_f_g_h_i",
		"a b,c#d:e":              "a_b_c_d_e",
		"-_+x":                   "x",
		"..":                     "",
		"\xff\x01z":              "z",
		"ünï":                    "ünï",
		strings.Repeat("a", 300): strings.Repeat("a", 255),
	}
	for in, want := range cases {
		got := sanitizeIndex([]byte("pre"+in), 3)
		if string(got) != "pre"+want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got[3:], want)
		}
		if want != "" && checkIndexName(want, false) != nil {
			t.Errorf("sanitize(%q) = %q, which Elasticsearch refuses: %v", in, want, checkIndexName(want, false))
		}
	}
}

// With op_type create and record ids, a redelivered batch answers 409 for
// every document, and the sink counts them delivered: data streams stay
// free of duplicates.
func TestDataStreamCreateIsIdempotent(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	s := newSink(t, Config{URLs: []string{es.URL()}, Index: "logs-k8s-default", OpType: OpCreate,
		Template: &TemplateConfig{Name: "sluice-logs", IndexPatterns: []string{"logs-k8s-*"}, DataStream: true}})
	recs := batch(t, "t", 9, numbered(50)...)
	for i := 0; i < 2; i++ {
		if err := s.Write(context.Background(), recs); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if n := es.Count("logs-k8s-default"); n != 50 {
		t.Errorf("%d documents, want 50", n)
	}
	if st := es.Stats(); st.ItemStatus[409] != 50 || st.ItemStatus[201] != 50 {
		t.Errorf("item statuses %v, want 50 created and 50 conflicts", st.ItemStatus)
	}
	if v := counterValue(t, s, "sluice_elasticsearch_conflicts_total"); v != 50 {
		t.Errorf("conflicts metric %v", v)
	}
	// Index (not create) into a data stream is refused by Elasticsearch:
	// a permanent error for each record.
	s2 := newSink(t, Config{URLs: []string{es.URL()}, Index: "logs-k8s-default"})
	err := s2.Write(context.Background(), batch(t, "t", 10, numbered(2)...))
	var pe *sinks.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 2 || !sinks.IsPermanent(pe.Failed[0]) ||
		!strings.Contains(pe.Failed[0].Error(), "op_type of create") {
		t.Errorf("index op into a data stream: %v", err)
	}
}

func TestIndexOverwritesOnRedelivery(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	s := newSink(t, Config{URLs: []string{es.URL()}})
	recs := batch(t, "t", 3, numbered(20)...)
	for i := 0; i < 3; i++ {
		if err := s.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	if n := es.Count(DefaultIndex); n != 20 {
		t.Errorf("%d documents after three deliveries of 20, want 20", n)
	}
	// With id none Elasticsearch makes the ids, and a redelivery
	// duplicates: the reason record ids are the default.
	s2 := newSink(t, Config{URLs: []string{es.URL()}, Index: "noid", ID: IDNone})
	for i := 0; i < 2; i++ {
		if err := s2.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	if n := es.Count("noid"); n != 40 {
		t.Errorf("id none: %d documents, want 40", n)
	}
}

// Per-item outcomes of one write: exactly the records the server failed
// are reported, each with the right kind.
func TestPartialFailureOutcomes(t *testing.T) {
	es := esfake.New(esfake.Options{NoAutoCreate: true})
	defer es.Close()
	es.SetItemFault(func(it esfake.Item) (int, string, string) {
		switch it.Seq % 10 {
		case 1:
			return 429, "es_rejected_execution_exception", "rejected execution of coordinating operation"
		case 2:
			return 503, "unavailable_shards_exception", "primary shard is not active"
		case 3:
			return 400, "mapper_parsing_exception", "failed to parse field [level] of type [long]"
		}
		return 0, "", ""
	})
	s := newSink(t, Config{URLs: []string{es.URL()}, Index: "logs-${kubernetes.namespace_name}"})
	recs := numbered(40)
	for i := range recs {
		ns := "shop"
		if i%10 == 4 {
			ns = "absent"
		}
		recs[i]["kubernetes"] = map[string]any{"namespace_name": ns}
	}
	// The index for "shop" exists; "absent" does not, and may not be
	// created.
	es.CreateIndex("logs-shop")
	err := s.Write(context.Background(), batch(t, "t", 1, recs...))
	var pe *sinks.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("want a partial error, got %v", err)
	}
	if len(pe.Failed) != 16 {
		t.Errorf("%d records failed, want 16", len(pe.Failed))
	}
	for i, err := range pe.Failed {
		var th *sinks.ThrottledError
		switch i % 10 {
		case 1:
			if !errors.As(err, &th) {
				t.Errorf("record %d: %v is not throttled", i, err)
			}
		case 2:
			if sinks.IsPermanent(err) || errors.As(err, &th) || !strings.Contains(err.Error(), "unavailable_shards_exception") {
				t.Errorf("record %d: %v should be retried", i, err)
			}
		case 3:
			if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "mapper_parsing_exception: failed to parse field [level]") {
				t.Errorf("record %d: %v should be dead with the reason", i, err)
			}
		case 4:
			if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "index_not_found_exception") {
				t.Errorf("record %d: %v should be dead (404)", i, err)
			}
		default:
			t.Errorf("record %d failed: %v", i, err)
		}
	}
	if n := es.Count("logs-shop"); n != 24 {
		t.Errorf("%d documents stored, want 24", n)
	}
}

// Through the runner and a real queue: 429 and 503 items are retried (only
// they), 400 and 404 items are dead-lettered with Elasticsearch's reason,
// and the counts are exact.
func TestRunnerCountsWithItemFailures(t *testing.T) {
	es := esfake.New(esfake.Options{NoAutoCreate: true})
	defer es.Close()
	es.CreateIndex("logs-shop")
	var mu sync.Mutex
	seen := map[string]int{}
	es.SetItemFault(func(it esfake.Item) (int, string, string) {
		n := int(it.Source["n"].(float64))
		mu.Lock()
		seen[it.ID]++
		first := seen[it.ID] == 1
		mu.Unlock()
		switch {
		case n%10 == 1 && first:
			return 429, "es_rejected_execution_exception", "rejected"
		case n%10 == 2 && first:
			return 502, "node_disconnected_exception", "node left"
		case n%10 == 3:
			return 400, "document_parsing_exception", "failed to parse"
		}
		return 0, "", ""
	})
	env := sinktest.NewEnv(t)
	recs := numbered(200)
	for i := range recs {
		ns := "shop"
		if i%10 == 4 {
			ns = "absent"
		}
		recs[i]["kubernetes"] = map[string]any{"namespace_name": ns}
	}
	env.Publish("kube.web", recs[:100]...)
	env.Publish("kube.web", recs[100:]...)
	s := newSink(t, Config{URLs: []string{es.URL()}, Index: "logs-${kubernetes.namespace_name}"})
	env.Run(s, func(c *sinks.RunnerConfig) { c.MaxRecords = 60 })
	env.Settle()
	if n := es.Count("logs-shop"); n != 160 {
		t.Errorf("%d documents, want 160", n)
	}
	checks := map[string]float64{
		"delivered": env.Counter("sluice_sink_records_total", "outcome", "delivered"),
		"dead":      env.Counter("sluice_sink_records_total", "outcome", "dead"),
		"retried":   env.Counter("sluice_sink_records_retried_total", "", ""),
	}
	want := map[string]float64{"delivered": 160, "dead": 40, "retried": 40}
	if fmt.Sprint(checks) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", checks, want)
	}
	reasons := map[string]int{}
	for _, d := range env.DeadLetters() {
		switch {
		case strings.Contains(d.Err, "404: index_not_found_exception: no such index [logs-absent]"):
			reasons["404"]++
		case strings.Contains(d.Err, "400: document_parsing_exception: failed to parse"):
			reasons["400"]++
		default:
			t.Errorf("dead letter with reason %q", d.Err)
		}
	}
	if reasons["404"] != 20 || reasons["400"] != 20 {
		t.Errorf("dead letters by reason: %v", reasons)
	}
	for _, st := range []int{429, 502, 400, 404} {
		if v := counterValue(t, s, "sluice_elasticsearch_item_failures_total", fmt.Sprint(st)); v != 20 {
			t.Errorf("item failures with %d: %v, want 20", st, v)
		}
	}
}

// Whole-request failures: 503 twice, then success; 429 with Retry-After;
// a server too slow for the write timeout.
func TestWholeRequestFailures(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	s := newSink(t, Config{URLs: []string{es.URL()}})
	recs := batch(t, "t", 1, numbered(10)...)

	es.FailRequests(2, 503, "")
	for i := 0; i < 2; i++ {
		err := s.Write(context.Background(), recs)
		var pe *sinks.PartialError
		if err == nil || sinks.IsPermanent(err) || errors.As(err, &pe) || !strings.Contains(err.Error(), "503") {
			t.Fatalf("attempt %d: want a retryable error for the whole batch, got %v", i, err)
		}
	}
	if err := s.Write(context.Background(), recs); err != nil || es.Count(DefaultIndex) != 10 {
		t.Fatalf("third attempt: %v, %d documents", err, es.Count(DefaultIndex))
	}

	es.FailRequests(1, 429, "7")
	var th *sinks.ThrottledError
	if err := s.Write(context.Background(), recs); !errors.As(err, &th) || th.Delay != 7*time.Second {
		t.Errorf("429: want throttled for 7s, got %v", err)
	}

	es.SetDelay(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := s.Write(ctx, recs)
	cancel()
	if err == nil || sinks.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow server: want a retryable timeout, got %v", err)
	}
	es.SetDelay(0)

	// A closed port: a connection error, retried.
	dead := newSink(t, Config{URLs: []string{"http://127.0.0.1:1"}})
	if err := dead.Write(context.Background(), recs); err == nil || sinks.IsPermanent(err) {
		t.Errorf("no server: %v", err)
	}
}

// Requests stay within max_request_bytes; the cluster's smaller limit (413)
// splits requests; a document alone over it is dead.
func TestRequestBounds(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	s := newSink(t, Config{URLs: []string{es.URL()}, MaxRequestBytes: 16 << 10, Compress: CompressNone})
	if err := s.Write(context.Background(), batch(t, "t", 1, numbered(500)...)); err != nil {
		t.Fatal(err)
	}
	reqs, total := checkBulkRequests(t, es, 16<<10, false)
	if total != 500 || len(reqs) < 4 || es.Count(DefaultIndex) != 500 {
		t.Errorf("%d documents in %d requests, %d stored", total, len(reqs), es.Count(DefaultIndex))
	}

	// The cluster's limit is on the bytes it receives: compressed, the
	// large document is random, so that it does not shrink below it.
	random := make([]byte, 8<<10)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(random)
	for _, compress := range []string{CompressNone, CompressGzip} {
		small := esfake.New(esfake.Options{MaxContentLength: 4 << 10})
		defer small.Close()
		s2 := newSink(t, Config{URLs: []string{small.URL()}, Compress: compress})
		recs := numbered(100)
		recs[50]["log"] = hex.EncodeToString(random)
		err := s2.Write(context.Background(), batch(t, "t", 1, recs...))
		var pe *sinks.PartialError
		if !errors.As(err, &pe) || len(pe.Failed) != 1 || !sinks.IsPermanent(pe.Failed[50]) || !strings.Contains(pe.Failed[50].Error(), "413") {
			t.Fatalf("%s: want only record 50 dead for its size, got %v", compress, err)
		}
		if n := small.Count(DefaultIndex); n != 99 {
			t.Errorf("%s: %d documents after splitting, want 99", compress, n)
		}
	}
}

// checkBulkRequests checks that every bulk request es received is within
// limit bytes of NDJSON and compressed or not as wanted, and returns them
// and the documents they held.
func checkBulkRequests(t *testing.T, es *esfake.Server, limit int, gzip bool) (reqs []esfake.BulkRequest, total int) {
	t.Helper()
	reqs = es.BulkRequests()
	for _, r := range reqs {
		total += r.Items
		if r.BodyBytes > limit || r.Gzip != gzip {
			t.Errorf("request of %d bytes of NDJSON (gzip %v): want gzip %v, within %d bytes", r.BodyBytes, r.Gzip, gzip, limit)
		}
	}
	return reqs, total
}

// A compressed request is built through the gzip stream 64 KiB at a time:
// requests of several stages arrive whole, each within max_request_bytes
// of NDJSON.
func TestCompressedRequestsInStages(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	s := newSink(t, Config{URLs: []string{es.URL()}, MaxRequestBytes: 256 << 10})
	if err := s.Write(context.Background(), batch(t, "t", 1, numbered(3000)...)); err != nil {
		t.Fatal(err)
	}
	reqs, total := checkBulkRequests(t, es, 256<<10, true)
	for i, r := range reqs[:len(reqs)-1] {
		if r.BodyBytes < 2*stageBytes {
			t.Errorf("request %d of %d bytes of NDJSON: want the full ones over two stages", i, r.BodyBytes)
		}
	}
	if total != 3000 || len(reqs) < 2 || es.Count(DefaultIndex) != 3000 {
		t.Fatalf("%d documents in %d requests, %d stored", total, len(reqs), es.Count(DefaultIndex))
	}
	for _, d := range es.Docs(DefaultIndex) {
		n, _ := d["n"].(float64)
		if want := fmt.Sprintf("line %d %s", int(n), strings.Repeat("x", 100)); d["log"] != want {
			t.Fatalf("document %v: log %q", d["n"], d["log"])
		}
	}
}

// A request halved after a 413 whose half then fails as a whole fails
// exactly the records not delivered: the whole request when the first half
// fails (the second was never sent), the second half when it does.
func TestSplitRequestFailures(t *testing.T) {
	for _, c := range []struct {
		name   string
		failAt int32 // the bulk request answered 500
		failed []int
	}{
		// Requests: 1 the first ten records (200), 2 the last ten (413),
		// 3 records 10-14, 4 records 15-19.
		{"first half", 3, []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}},
		{"second half", 4, []int{15, 16, 17, 18, 19}},
	} {
		t.Run(c.name, func(t *testing.T) {
			es := esfake.New(esfake.Options{})
			defer es.Close()
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/_bulk") {
					switch n.Add(1) {
					case 2:
						http.Error(w, `{"error":{"type":"content_too_long_exception","reason":"too large"},"status":413}`, http.StatusRequestEntityTooLarge)
						return
					case c.failAt:
						http.Error(w, `{"error":{"type":"node_not_connected_exception","reason":"gone"},"status":500}`, http.StatusInternalServerError)
						return
					}
				}
				es.ServeHTTP(w, r)
			}))
			defer srv.Close()
			recs := batch(t, "t", 1, numbered(20)...)
			// Room for ten documents and not eleven.
			s := newSink(t, Config{URLs: []string{srv.URL}})
			buf := s.bufs.Get().(*buffers)
			size := func(from, to int) int {
				var body []byte
				for i := from; i < to; i++ {
					var err error
					if body, err = s.appendDoc(body, &recs[i], buf); err != nil {
						t.Fatal(err)
					}
				}
				return len(body)
			}
			limit := max(size(0, 10), size(10, 20))
			if size(0, 11) <= limit {
				t.Fatal("eleven documents fit the limit of ten")
			}
			s = newSink(t, Config{URLs: []string{srv.URL}, MaxRequestBytes: units.ByteSize(limit)})
			err := s.Write(context.Background(), recs)
			var pe *sinks.PartialError
			if !errors.As(err, &pe) {
				t.Fatalf("want a partial error, got %v", err)
			}
			var failed []int
			for i, e := range pe.Failed {
				if sinks.IsPermanent(e) {
					t.Errorf("record %d failed for good: %v", i, e)
				}
				failed = append(failed, i)
			}
			slices.Sort(failed)
			if !slices.Equal(failed, c.failed) {
				t.Errorf("failed %v, want %v", failed, c.failed)
			}
			if got := es.Count(DefaultIndex); got != 20-len(c.failed) {
				t.Errorf("%d stored, want %d", got, 20-len(c.failed))
			}
		})
	}
}

func TestAuthAndHeaders(t *testing.T) {
	cases := []struct {
		name string
		fake esfake.Options
		cfg  Config
	}{
		{"basic", esfake.Options{Username: "elastic", Password: "s3cret"}, Config{Username: "elastic", Password: "s3cret"}},
		{"api key", esfake.Options{APIKey: "aWQ6a2V5"}, Config{APIKey: "aWQ6a2V5"}},
		{"bearer", esfake.Options{BearerToken: "tok"}, Config{BearerToken: "tok"}},
		{"headers", esfake.Options{RequireHeaders: map[string]string{"X-Tenant": "blue"}}, Config{Headers: map[string]string{"X-Tenant": "blue"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			es := esfake.New(c.fake)
			defer es.Close()
			c.cfg.URLs = []string{es.URL()}
			if err := newSink(t, c.cfg).Write(context.Background(), batch(t, "t", 1, numbered(3)...)); err != nil {
				t.Fatalf("with credentials: %v", err)
			}
			err := newSink(t, Config{URLs: []string{es.URL()}}).Write(context.Background(), batch(t, "t", 1, numbered(3)...))
			if err == nil || sinks.IsPermanent(err) {
				t.Fatalf("without credentials: want a retryable error, got %v", err)
			}
		})
	}
}

// The cluster behind TLS with a private CA, found through tls.ca_file.
func TestTLSWithCustomCA(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	ca := testcerts.NewCA(t, "es-ca")
	certPEM, keyPEM := ca.Issue(t, "127.0.0.1", true)
	dir := t.TempDir()
	target, _ := url.Parse(es.URL())
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	caFile := testcerts.WriteFile(t, dir, "ca.pem", ca.PEM)
	s := newSink(t, Config{URLs: []string{srv.URL}, TLS: TLSConfig{CAFile: caFile}})
	if err := s.Write(context.Background(), batch(t, "t", 1, numbered(3)...)); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	s2 := newSink(t, Config{URLs: []string{srv.URL}})
	if err := s2.Write(context.Background(), batch(t, "t", 1, numbered(3)...)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v", err)
	}
}

func TestOpenSearch(t *testing.T) {
	osrv := esfake.New(esfake.Options{OpenSearch: true})
	defer osrv.Close()
	err := newSink(t, Config{URLs: []string{osrv.URL()}}).Write(context.Background(), batch(t, "t", 1, numbered(3)...))
	if err == nil || !strings.Contains(err.Error(), "not Elasticsearch") {
		t.Errorf("without the opensearch option: %v", err)
	}
	s := newSink(t, Config{URLs: []string{osrv.URL()}, OpenSearch: true})
	if err := s.Write(context.Background(), batch(t, "t", 1, numbered(3)...)); err != nil || osrv.Count(DefaultIndex) != 3 {
		t.Errorf("with it: %v, %d documents", err, osrv.Count(DefaultIndex))
	}
	if v, err := s.Ping(context.Background()); err != nil || v != "opensearch 2.17.0" {
		t.Errorf("ping: %q, %v", v, err)
	}
}

// SigV4 through the sink: the cluster sees AWS's headers, the content hash
// is that of the gzip body it received, and no other credentials go along.
func TestSigV4(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_SESSION_TOKEN", "session")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	es := esfake.New(esfake.Options{OpenSearch: true})
	defer es.Close()
	target, _ := url.Parse(es.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var checked atomic.Int32
	var problem atomic.Value
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		auth := r.Header.Get("Authorization")
		switch {
		case !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || !strings.Contains(auth, "/eu-west-1/es/aws4_request"):
			problem.Store("authorization " + auth)
		case r.Header.Get("X-Amz-Content-Sha256") != hex.EncodeToString(sum[:]):
			problem.Store("content hash differs from the body received")
		case r.Header.Get("X-Amz-Security-Token") != "session" || r.Header.Get("X-Amz-Date") == "":
			problem.Store("missing token or date")
		}
		checked.Add(1)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	aws := &AWSConfig{Service: "es"}
	aws.Region = "eu-west-1"
	s := newSink(t, Config{URLs: []string{front.URL}, AWS: aws, OpenSearch: true})
	if err := s.Write(context.Background(), batch(t, "t", 1, numbered(5)...)); err != nil {
		t.Fatal(err)
	}
	if p := problem.Load(); p != nil || checked.Load() == 0 || es.Count(DefaultIndex) != 5 {
		t.Errorf("problem %v, %d requests checked, %d documents", p, checked.Load(), es.Count(DefaultIndex))
	}
}

func TestTemplateInstalledOnce(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	s := newSink(t, Config{URLs: []string{es.URL()}, LogstashFormat: true, LogstashPrefix: "k8s",
		Template: &TemplateConfig{Name: "sluice"}})
	for i := 0; i < 3; i++ {
		if err := s.Write(context.Background(), batch(t, "t", uint64(i), numbered(2)...)); err != nil {
			t.Fatal(err)
		}
	}
	body, ok := es.Template("sluice")
	if !ok {
		t.Fatal("no template installed")
	}
	var tpl struct {
		IndexPatterns []string `json:"index_patterns"`
		Template      struct {
			Mappings struct {
				Properties map[string]struct {
					Type string `json:"type"`
				} `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(body, &tpl); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tpl.IndexPatterns) != "[k8s-*]" || tpl.Template.Mappings.Properties["@timestamp"].Type != "date_nanos" {
		t.Errorf("template %s", body)
	}
	puts := 0
	for _, r := range es.Requests() {
		if r.Method == http.MethodPut && strings.HasPrefix(r.Path, "/_index_template/") {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("template put %d times, want once", puts)
	}
	// An existing template is left alone unless overwrite is set; a file
	// template is installed as it is.
	file := filepath.Join(t.TempDir(), "t.json")
	if err := os.WriteFile(file, []byte(`{"index_patterns":["k8s-*"],"priority":5}`), 0o600); err != nil {
		t.Fatal(err)
	}
	keep := newSink(t, Config{URLs: []string{es.URL()}, Template: &TemplateConfig{Name: "sluice", File: file}})
	if err := keep.Write(context.Background(), batch(t, "t", 9, numbered(1)...)); err != nil {
		t.Fatal(err)
	}
	if body2, _ := es.Template("sluice"); string(body2) != string(body) {
		t.Errorf("existing template replaced without overwrite: %s", body2)
	}
	over := newSink(t, Config{URLs: []string{es.URL()}, Template: &TemplateConfig{Name: "sluice", File: file, Overwrite: true}})
	if err := over.Write(context.Background(), batch(t, "t", 10, numbered(1)...)); err != nil {
		t.Fatal(err)
	}
	if body3, _ := es.Template("sluice"); !strings.Contains(string(body3), `"priority":5`) {
		t.Errorf("overwrite: %s", body3)
	}
}

func TestConfigValidate(t *testing.T) {
	aws := &AWSConfig{}
	aws.Region = "us-east-1"
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{URLs: []string{"ftp://x"}}, "urls[0]"},
		{Config{Index: "Logs"}, "index: \"Logs\" must be lowercase"},
		{Config{Index: "a${"}, "index: template"},
		{Config{LogstashFormat: true, LogstashPrefix: "_x"}, "logstash_prefix"},
		{Config{LogstashDateFormat: "%Q"}, "logstash_date_format"},
		{Config{TimeZone: "Mars/Olympus"}, "time_zone"},
		{Config{OpType: "upsert"}, "op_type"},
		{Config{ID: "uuid"}, "id:"},
		{Config{ReplaceDots: "some"}, "replace_dots"},
		{Config{ReplaceDotsWith: "."}, "replace_dots_with"},
		{Config{MaxRequestBytes: 10}, "max_request_bytes"},
		{Config{Compress: "zstd"}, "compress"},
		{Config{Password: "x"}, "password: needs username"},
		{Config{Username: "u", APIKey: "k"}, "at most one way"},
		{Config{BearerToken: "t", AWS: aws}, "at most one way"},
		{Config{RemoveKeys: []string{"a..b"}}, "remove_keys[0]"},
		{Config{TLS: TLSConfig{CertFile: "x"}}, "tls: cert_file and key_file"},
		{Config{TLS: TLSConfig{CAFile: "/nonexistent"}}, "tls.ca_file"},
		{Config{AWS: &AWSConfig{Service: "s3"}}, "aws.service"},
		{Config{Template: &TemplateConfig{}}, "template.name"},
		{Config{Index: "logs-${tag}", Template: &TemplateConfig{Name: "t"}}, "template.index_patterns"},
		{Config{IndexFallback: "Bad"}, "index_fallback"},
	}
	for _, c := range cases {
		c.cfg.SetDefaults()
		if c.cfg.AWS != nil && c.cfg.AWS.Service == "s3" {
			c.cfg.AWS.Region = "us-east-1"
		}
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.cfg, err, c.want)
		}
	}
	var ok Config
	ok.SetDefaults()
	if err := ok.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Destination {
		es := esfake.New(esfake.Options{})
		t.Cleanup(es.Close)
		return &fakeDest{es: es}
	})
}

type fakeDest struct{ es *esfake.Server }

func (d *fakeDest) NewSink(t *testing.T) sinks.Sink {
	return newSink(t, Config{URLs: []string{d.es.URL()}})
}

// Delivered reads every document's n. Record ids make a redelivered record
// overwrite itself, so the suite sees each record once.
func (d *fakeDest) Delivered(t *testing.T) []int {
	var ns []int
	for _, doc := range d.es.Docs(DefaultIndex) {
		ns = append(ns, int(doc["n"].(float64)))
	}
	sort.Ints(ns)
	return ns
}

// counterValue reads one of the sink's own counters, summed over the series
// whose labels include the values given.
func counterValue(t testing.TB, s *Sink, name string, labelValues ...string) float64 {
	t.Helper()
	var c interface {
		Collect(chan<- prometheus.Metric)
	}
	switch name {
	case "sluice_elasticsearch_conflicts_total":
		c = s.m.conflicts
	case "sluice_elasticsearch_item_failures_total":
		c = s.m.items
	case "sluice_elasticsearch_requests_total":
		c = s.m.requests
	default:
		t.Fatalf("unknown metric %s", name)
	}
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	sum := 0.0
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		match := true
		for _, want := range labelValues {
			found := false
			for _, l := range pb.GetLabel() {
				found = found || l.GetValue() == want
			}
			match = match && found
		}
		if match {
			sum += pb.GetCounter().GetValue()
		}
	}
	return sum
}

// Prepare, called at start, installs the template before any document and
// reports a cluster it cannot reach.
func TestPrepare(t *testing.T) {
	es := esfake.New(esfake.Options{})
	defer es.Close()
	s := newSink(t, Config{URLs: []string{es.URL()}, Template: &TemplateConfig{Name: "sluice"}})
	if err := s.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := es.Template("sluice"); !ok || es.Stats().BulkRequests != 0 {
		t.Errorf("template installed %v before %d bulk requests", ok, es.Stats().BulkRequests)
	}
	down := newSink(t, Config{URLs: []string{"http://127.0.0.1:1"}, Template: &TemplateConfig{Name: "sluice"}})
	if err := down.Prepare(context.Background()); err == nil {
		t.Error("Prepare succeeded without a cluster")
	}
}

// A cluster that answers 413 from the headers, before the body is read:
// the transport may still be sending the body when the halves are built,
// so they must not be built in its memory (run under -race).
func TestEarlyAnswerDoesNotReuseTheBody(t *testing.T) {
	for _, compress := range []string{CompressNone, CompressGzip} {
		es := esfake.New(esfake.Options{})
		defer es.Close()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/_bulk") && r.ContentLength > 256<<10 {
				http.Error(w, `{"error":{"type":"content_too_long_exception","reason":"too large"},"status":413}`, http.StatusRequestEntityTooLarge)
				return
			}
			es.ServeHTTP(w, r)
		}))
		defer srv.Close()
		random := make([]byte, 3<<10)
		recs := numbered(400)
		for i := range recs {
			_, _ = rand.NewChaCha8([32]byte{byte(i)}).Read(random)
			recs[i]["log"] = hex.EncodeToString(random)
		}
		s := newSink(t, Config{URLs: []string{srv.URL}, Compress: compress})
		if err := s.Write(context.Background(), batch(t, "t", 1, recs...)); err != nil {
			t.Fatalf("%s: %v", compress, err)
		}
		if n := es.Count(DefaultIndex); n != len(recs) {
			t.Errorf("%s: %d stored, want %d", compress, n, len(recs))
		}
	}
}
