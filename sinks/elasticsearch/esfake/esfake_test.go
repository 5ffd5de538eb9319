package esfake

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/klauspost/compress/gzip"
)

func client(t *testing.T, s *Server) *elasticsearch.Client {
	t.Helper()
	c, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.URL()}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type bulkAnswer struct {
	Errors bool `json:"errors"`
	Items  []map[string]struct {
		ID     string `json:"_id"`
		Result string `json:"result"`
		Status int    `json:"status"`
		Error  struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	} `json:"items"`
}

// bulk sends body through the real client and decodes the answer.
func bulk(t *testing.T, c *elasticsearch.Client, body string, header http.Header) (int, bulkAnswer, string) {
	t.Helper()
	res, err := esapi.BulkRequest{Body: strings.NewReader(body), Header: header}.Do(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var a bulkAnswer
	if res.StatusCode == 200 {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("%v in %s", err, raw)
		}
	}
	return res.StatusCode, a, string(raw)
}

func statuses(a bulkAnswer) []int {
	var out []int
	for _, it := range a.Items {
		for _, v := range it {
			out = append(out, v.Status)
		}
	}
	return out
}

func TestBulkItemsAndIDs(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := client(t, s)
	body := `{"index":{"_index":"logs","_id":"1"}}
{"msg":"a"}
{"create":{"_index":"logs","_id":"2"}}
{"msg":"b"}
{"create":{"_index":"logs","_id":"1"}}
{"msg":"again"}
{"index":{"_index":"logs","_id":"1"}}
{"msg":"overwritten"}
{"index":{"_index":"logs"}}
{"msg":"generated id"}
{"index":{"_index":"Logs"}}
{"msg":"bad index"}
{"index":{"_index":"logs","_id":"3"}}
not json
`
	code, a, raw := bulk(t, c, body, nil)
	if code != 200 || !a.Errors {
		t.Fatalf("%d %s", code, raw)
	}
	if got := statuses(a); !equal(got, []int{201, 201, 409, 200, 201, 400, 400}) {
		t.Errorf("statuses %v", got)
	}
	if !strings.HasPrefix(raw, `{"errors":true,"took":`) {
		t.Errorf("answer starts %.40s", raw)
	}
	conflict := a.Items[2]["create"]
	if conflict.Error.Type != "version_conflict_engine_exception" || !strings.Contains(conflict.Error.Reason, "document already exists (current version [1])") {
		t.Errorf("409: %+v", conflict)
	}
	if e := a.Items[5]["index"].Error; e.Type != "invalid_index_name_exception" || !strings.Contains(e.Reason, "must be lowercase") {
		t.Errorf("bad index: %+v", e)
	}
	if e := a.Items[6]["index"].Error; e.Type != "document_parsing_exception" {
		t.Errorf("bad source: %+v", e)
	}
	if d, _ := s.Doc("logs", "1"); d["msg"] != "overwritten" || s.Count("logs") != 3 || len(a.Items[4]["index"].ID) != 20 {
		t.Errorf("stored %v, %d docs, generated id %q", d, s.Count("logs"), a.Items[4]["index"].ID)
	}
	// All good: errors false, first.
	_, a, raw = bulk(t, c, "{\"index\":{\"_index\":\"logs\"}}\n{\"msg\":\"c\"}\n", nil)
	if a.Errors || !strings.HasPrefix(raw, `{"errors":false,`) {
		t.Errorf("clean bulk: %s", raw)
	}
	if st := s.Stats(); st.ItemStatus[409] != 1 || st.ItemStatus[201] != 4 || st.BulkRequests != 2 || st.Items != 8 {
		t.Errorf("stats %+v", st)
	}
}

func TestWholeRequestErrors(t *testing.T) {
	s := New(Options{MaxContentLength: 100})
	defer s.Close()
	c := client(t, s)
	for body, want := range map[string]string{
		"{\"index\":{\"_index\":\"logs\"}}\n{\"a\":1}": "must be terminated by a newline",
		"\"index\"\n{}\n":                       "Malformed action/metadata line [1]",
		"{\"upsert\":{\"_index\":\"x\"}}\n{}\n": "expected field [create], [delete], [index] or [update]",
		"\n":                                    "no requests added",
		"{\"index\":{}}\n{\"a\":1}\n":           "index is missing",
		"{\"index\":{\"_index\":\"x\"}}\n{\"a\":\"" + strings.Repeat("y", 100) + "\"}\n": "request body is too large",
	} {
		code, _, raw := bulk(t, c, body, nil)
		if code < 400 || !strings.Contains(raw, want) {
			t.Errorf("%q: %d %s, want %q", body, code, raw, want)
		}
	}
	res, err := http.Get(s.URL() + "/nothing/here")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 400 || !strings.Contains(string(raw), "no handler found for uri [/nothing/here] and method [GET]") {
		t.Errorf("unknown path: %d %s", res.StatusCode, raw)
	}
}

func TestGzipAndDefaultIndex(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("{\"index\":{\"_id\":\"a\"}}\n{\"x\":1}\n"))
	zw.Close()
	res, err := esapi.BulkRequest{Index: "dflt", Body: &buf, Header: http.Header{"Content-Encoding": {"gzip"}}}.Do(context.Background(), client(t, s))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if _, ok := s.Doc("dflt", "a"); !ok || res.StatusCode != 200 {
		t.Fatalf("%d, indices %v", res.StatusCode, s.Indices())
	}
	if b := s.BulkRequests(); len(b) != 1 || !b[0].Gzip || b[0].BodyBytes <= 0 || b[0].Path != "/dflt/_bulk" {
		t.Errorf("%+v", b)
	}
}

// Dynamic mapping conflicts, the reason for replace-dots.
func TestMappingConflicts(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := client(t, s)
	body := `{"index":{"_index":"k"}}
{"kubernetes":{"labels":{"app":"web"}}}
{"index":{"_index":"k"}}
{"kubernetes":{"labels":{"app.kubernetes.io/name":"web"}}}
{"index":{"_index":"k"}}
{"kubernetes":{"labels":{"app_kubernetes_io/name":"web"}}}
{"index":{"_index":"k"}}
{"code":200}
{"index":{"_index":"k"}}
{"code":"not a number"}
{"index":{"_index":"k"}}
{"code":"404"}
{"index":{"_index":"k"}}
{"obj":{"a":1}}
{"index":{"_index":"k"}}
{"obj":"flat"}
`
	_, a, _ := bulk(t, c, body, nil)
	if got := statuses(a); !equal(got, []int{201, 400, 201, 201, 400, 201, 201, 400}) {
		t.Fatalf("statuses %v", got)
	}
	if r := a.Items[1]["index"].Error.Reason; !strings.Contains(r, "object mapping for [kubernetes.labels.app]") && !strings.Contains(r, "can't merge a non object mapping [kubernetes.labels.app]") {
		t.Errorf("conflict reason %q", r)
	}
	if r := a.Items[4]["index"].Error.Reason; !strings.Contains(r, "failed to parse field [code] of type [long]") {
		t.Errorf("number reason %q", r)
	}
	if r := a.Items[7]["index"].Error.Reason; !strings.Contains(r, "object mapping for [obj] tried to parse field [obj] as object, but found a concrete value") {
		t.Errorf("object reason %q", r)
	}
}

func TestDataStreamsAndTemplates(t *testing.T) {
	s := New(Options{NoAutoCreate: true})
	defer s.Close()
	c := client(t, s)
	res, err := esapi.IndicesPutIndexTemplateRequest{Name: "t", Body: strings.NewReader(`{"index_patterns":["logs-*"],"data_stream":{}}`)}.Do(context.Background(), c)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("put template: %v %v", err, res)
	}
	res.Body.Close()
	res, _ = esapi.IndicesPutIndexTemplateRequest{Name: "bad", Body: strings.NewReader(`{}`)}.Do(context.Background(), c)
	if res.StatusCode != 400 {
		t.Errorf("template without patterns: %d", res.StatusCode)
	}
	res.Body.Close()
	res, _ = esapi.IndicesExistsIndexTemplateRequest{Name: "t"}.Do(context.Background(), c)
	if res.StatusCode != 200 {
		t.Errorf("exists: %d", res.StatusCode)
	}
	res.Body.Close()
	body := `{"create":{"_index":"logs-app"}}
{"@timestamp":"2026-11-22T07:34:52Z","m":1}
{"index":{"_index":"logs-app"}}
{"@timestamp":"2026-11-22T07:34:52Z","m":2}
{"create":{"_index":"logs-app"}}
{"m":3}
{"index":{"_index":"missing"}}
{"m":4}
`
	_, a, _ := bulk(t, c, body, nil)
	if got := statuses(a); !equal(got, []int{201, 400, 400, 404}) {
		t.Fatalf("statuses %v", got)
	}
	if r := a.Items[1]["index"].Error.Reason; r != "only write ops with an op_type of create are allowed in data streams" {
		t.Errorf("%q", r)
	}
	if r := a.Items[2]["create"].Error.Reason; !strings.Contains(r, "data stream timestamp field [@timestamp] is missing") {
		t.Errorf("%q", r)
	}
	if e := a.Items[3]["index"].Error; e.Type != "index_not_found_exception" {
		t.Errorf("%+v", e)
	}
	res, _ = esapi.CountRequest{Index: []string{"logs-app"}}.Do(context.Background(), c)
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(raw), `"count":1`) {
		t.Errorf("count %s", raw)
	}
}

func TestProductHeaderAndAuth(t *testing.T) {
	es := New(Options{Username: "elastic", Password: "pw"})
	defer es.Close()
	res, err := http.Get(es.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || res.Header.Get("X-Elastic-Product") != "Elasticsearch" || res.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no credentials: %d %v", res.StatusCode, res.Header)
	}
	c, _ := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{es.URL()}, Username: "elastic", Password: "pw"})
	if res, err := c.Info(); err != nil || res.StatusCode != 200 {
		t.Errorf("info with credentials: %v %v", err, res)
	}

	os := New(Options{OpenSearch: true})
	defer os.Close()
	if _, err := client(t, os).Info(); err == nil || !strings.Contains(err.Error(), "not Elasticsearch") {
		t.Errorf("the real client should refuse a server without the product header: %v", err)
	}
}

func TestFaultsAndDelay(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := client(t, s)
	s.FailRequests(1, 429, "3")
	res, err := esapi.BulkRequest{Body: strings.NewReader("{\"index\":{\"_index\":\"x\"}}\n{}\n")}.Do(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "3" || !strings.Contains(string(raw), "es_rejected_execution_exception") {
		t.Errorf("429: %d %s", res.StatusCode, raw)
	}
	s.SetItemFault(func(it Item) (int, string, string) {
		if it.Seq == 1 {
			return 503, "unavailable_shards_exception", "not ready"
		}
		return 0, "", ""
	})
	_, a, _ := bulk(t, c, "{\"index\":{\"_index\":\"x\"}}\n{}\n{\"index\":{\"_index\":\"x\"}}\n{}\n", nil)
	if got := statuses(a); !equal(got, []int{201, 503}) {
		t.Errorf("item fault: %v", got)
	}
	s.SetItemFault(nil)
	s.SetDelay(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = esapi.BulkRequest{Body: strings.NewReader("{\"index\":{\"_index\":\"x\"}}\n{}\n")}.Do(ctx, c)
	if err == nil || time.Since(start) > 4*time.Second {
		t.Errorf("delay: %v after %v", err, time.Since(start))
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// _count over indices, patterns and _all, with q=field:value, through the
// real client.
func TestCount(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := client(t, s)
	body := `{"index":{"_index":"logs-a"}}
{"run":"x","k":{"pod":"p1"}}
{"index":{"_index":"logs-a"}}
{"run":"y","k":{"pod":"p2"}}
{"index":{"_index":"logs-b"}}
{"run":"x","k":{"pod":"p1"}}
{"index":{"_index":"other"}}
{"run":"x"}
`
	if code, a, raw := bulk(t, c, body, nil); code != 200 || a.Errors {
		t.Fatalf("%d %s", code, raw)
	}
	count := func(index []string, q string) (int, int, string) {
		t.Helper()
		res, err := esapi.CountRequest{Index: index, Query: q}.Do(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var v struct{ Count int }
		_ = json.Unmarshal(raw, &v)
		return res.StatusCode, v.Count, string(raw)
	}
	for _, tc := range []struct {
		index []string
		q     string
		want  int
	}{
		{[]string{"logs-a"}, "", 2},
		{[]string{"logs-a"}, "run:x", 1},
		{[]string{"logs-*"}, "run:x", 2},
		{[]string{"_all"}, "run:x", 3},
		{[]string{"logs-b", "other"}, "", 2},
		{[]string{"logs-*"}, "k.pod:p1", 2},
		{[]string{"nomatch-*"}, "", 0},
	} {
		if code, n, raw := count(tc.index, tc.q); code != 200 || n != tc.want {
			t.Errorf("%v q=%q: %d %d, want %d (%s)", tc.index, tc.q, code, n, tc.want, raw)
		}
	}
	if code, _, raw := count([]string{"missing"}, ""); code != 404 || !strings.Contains(raw, "index_not_found_exception") {
		t.Errorf("missing index: %d %s", code, raw)
	}
	if code, _, raw := count([]string{"logs-a"}, "run:x AND k.pod:p1"); code != 400 || !strings.Contains(raw, "only q=field:value") {
		t.Errorf("unsupported query: %d %s", code, raw)
	}
}
