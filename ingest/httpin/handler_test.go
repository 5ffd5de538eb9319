package httpin

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sluicelog/sluice/ingest/forward"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/msgp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memPub is an in-memory Publisher: it keeps copies of the chunks it
// stores, and can fail Publish or Wait.
type memPub struct {
	mu         sync.Mutex
	chunks     []chunk.Chunk
	publishErr error // returned by Publish
	waitErr    error // returned by Wait (nothing is stored)
}

type memPending struct{ err error }

func (p memPending) Wait(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return p.err
}

func (m *memPub) Publish(c *chunk.Chunk) (chunk.Pending, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.publishErr != nil {
		return nil, m.publishErr
	}
	if m.waitErr != nil {
		return memPending{err: m.waitErr}, nil
	}
	cp := *c
	cp.Entries = append([]byte(nil), c.Entries...)
	m.chunks = append(m.chunks, cp)
	return memPending{}, nil
}

func (m *memPub) stored() []chunk.Chunk {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]chunk.Chunk(nil), m.chunks...)
}

type env struct {
	h   *Handler
	pub *memPub
	reg *prometheus.Registry
	srv *httptest.Server
}

func newEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	var cfg Config
	if edit != nil {
		edit(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &env{pub: &memPub{}, reg: prometheus.NewRegistry()}
	e.h = NewHandler(cfg, e.pub, component.Settings{Registerer: e.reg, Now: func() time.Time { return t0 }})
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(func() { e.srv.Close(); e.h.Close() })
	return e
}

type req struct {
	path, ctype, encoding string
	header                map[string]string
	body                  []byte
	method                string
}

type resp struct {
	code int
	hdr  http.Header
	body string
}

func (e *env) do(t *testing.T, r req) resp {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	hr, err := http.NewRequest(r.method, e.srv.URL+r.path, bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.ctype != "" {
		hr.Header.Set("Content-Type", r.ctype)
	}
	if r.encoding != "" {
		hr.Header.Set("Content-Encoding", r.encoding)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(b)}
}

// ok posts r, expects 200 and one stored chunk, and returns its tag and
// records.
func (e *env) ok(t *testing.T, r req) (string, []rec) {
	t.Helper()
	before := len(e.pub.stored())
	res := e.do(t, r)
	if res.code != http.StatusOK || res.body != "" {
		t.Fatalf("status %d body %q, want 200 and no body", res.code, res.body)
	}
	st := e.pub.stored()
	if len(st) != before+1 {
		t.Fatalf("%d chunks stored, want %d", len(st), before+1)
	}
	c := st[len(st)-1]
	if c.ID != "" {
		t.Fatalf("chunk id %q", c.ID)
	}
	return c.Tag, walk(t, c.Entries, c.Count)
}

// fails posts r and expects code, an error message containing msg and
// nothing stored.
func (e *env) fails(t *testing.T, r req, code int, msg string) resp {
	t.Helper()
	before := len(e.pub.stored())
	res := e.do(t, r)
	if res.code != code {
		t.Fatalf("status %d (%s), want %d", res.code, res.body, code)
	}
	var body struct{ Error string }
	if err := json.Unmarshal([]byte(res.body), &body); err != nil || !strings.Contains(body.Error, msg) {
		t.Fatalf("body %q (%v), want an error containing %q", res.body, err, msg)
	}
	if n := len(e.pub.stored()); n != before {
		t.Fatalf("%d chunks stored after a rejected request", n-before)
	}
	return res
}

func form(k, v string) []byte { return []byte(url.Values{k: {v}}.Encode()) }

func gz(t *testing.T, p []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write(p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zs(t *testing.T, p []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(p, nil)
}

func deflate(t *testing.T, p []byte) []byte {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	_, _ = w.Write(p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkRecs compares times and records ("k=v" pairs of string values, in
// key order).
func checkRecs(t *testing.T, rs []rec, want ...string) {
	t.Helper()
	if len(rs) != len(want) {
		t.Fatalf("%d records, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		var parts []string
		parts = append(parts, time.Unix(r.Sec, int64(r.Nsec)).UTC().Format(time.RFC3339Nano))
		for _, k := range r.Keys {
			parts = append(parts, k+"="+toString(r.Rec[k]))
		}
		if got := strings.Join(parts, " "); got != want[i] {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

const now = "2026-11-22T07:00:00Z"

func TestFluentd(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("json object", func(t *testing.T) {
		tag, rs := e.ok(t, req{path: "/app.web", ctype: "application/json",
			body: []byte(`{"b":"1","a":"2","time":1700000000}`)})
		if tag != "app.web" {
			t.Fatalf("tag %q", tag)
		}
		checkRecs(t, rs, "2023-11-14T22:13:20Z b=1 a=2")
	})
	t.Run("json array", func(t *testing.T) {
		_, rs := e.ok(t, req{path: "/app", ctype: "application/json; charset=utf-8",
			body: []byte(`[{"log":"one"},{"log":"two","time":1700000000.5}]`)})
		checkRecs(t, rs, now+" log=one", "2023-11-14T22:13:20.5Z log=two")
	})
	t.Run("json= form", func(t *testing.T) {
		tag, rs := e.ok(t, req{path: "/test.tag.here", ctype: "application/x-www-form-urlencoded",
			body: form("json", `{"action":"login","user":"2"}`)})
		if tag != "test.tag.here" {
			t.Fatalf("tag %q", tag)
		}
		checkRecs(t, rs, now+" action=login user=2")
	})
	t.Run("msgpack= form", func(t *testing.T) {
		_, rs := e.ok(t, req{path: "/app", ctype: "application/x-www-form-urlencoded",
			body: form("msgpack", string(omap(t, "action", "login", "user", "2")))})
		checkRecs(t, rs, now+" action=login user=2")
	})
	t.Run("ndjson= form", func(t *testing.T) {
		_, rs := e.ok(t, req{path: "/app", ctype: "application/x-www-form-urlencoded",
			body: form("ndjson", "{\"a\":\"1\"}\n{\"a\":\"2\"}")})
		checkRecs(t, rs, now+" a=1", now+" a=2")
	})
	t.Run("time query", func(t *testing.T) {
		_, rs := e.ok(t, req{path: "/app?time=1500000000.25", ctype: "application/x-www-form-urlencoded",
			body: form("json", `{"log":"x","time":"1"}`)})
		checkRecs(t, rs, "2017-07-14T02:40:00.25Z log=x time=1")
		_, rs = e.ok(t, req{path: "/app?time=0", ctype: "application/json", body: []byte(`{"log":"x"}`)})
		checkRecs(t, rs, now+" log=x")
	})
	t.Run("msgpack maps", func(t *testing.T) {
		body := append(omap(t, "log", "one", "time", 1700000000), mp(t, []any{map[string]any{"log": "two"}})...)
		_, rs := e.ok(t, req{path: "/app", ctype: "application/msgpack", body: body})
		checkRecs(t, rs, "2023-11-14T22:13:20Z log=one", now+" log=two")
	})
	t.Run("msgpack entries", func(t *testing.T) {
		body := append(entry(t, time.Unix(1700000000, 7), "log", "one"), entry(t, time.Unix(1700000001, 0), "log", "two")...)
		_, rs := e.ok(t, req{path: "/app", ctype: "application/x-msgpack", body: body})
		checkRecs(t, rs, "2023-11-14T22:13:20.000000007Z log=one", "2023-11-14T22:13:21Z log=two")
	})
	t.Run("path with slashes", func(t *testing.T) {
		tag, _ := e.ok(t, req{path: "/a/b/c", ctype: "application/json", body: []byte(`{}`)})
		if tag != "a.b.c" {
			t.Fatalf("tag %q", tag)
		}
	})
}

func TestFluentBit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HeaderTag = "X-Fluent-Tag" })
	tagged := map[string]string{"X-Fluent-Tag": "kube.var.log.containers.app"}
	t.Run("json with date double", func(t *testing.T) {
		tag, rs := e.ok(t, req{path: "/", ctype: "application/json", header: tagged,
			body: []byte(`[{"date":1700000000.123456,"log":"one","stream":"stdout"},{"date":1700000001.5,"log":"two","stream":"stderr"}]`)})
		if tag != "kube.var.log.containers.app" {
			t.Fatalf("tag %q", tag)
		}
		checkRecs(t, rs, "2023-11-14T22:13:20.123456Z log=one stream=stdout", "2023-11-14T22:13:21.5Z log=two stream=stderr")
	})
	t.Run("json_lines", func(t *testing.T) {
		_, rs := e.ok(t, req{path: "/", ctype: "application/x-ndjson", header: tagged,
			body: []byte("{\"date\":1700000000,\"log\":\"one\"}\n{\"date\":1700000001,\"log\":\"two\"}\n")})
		checkRecs(t, rs, "2023-11-14T22:13:20Z log=one", "2023-11-14T22:13:21Z log=two")
	})
	t.Run("json_stream", func(t *testing.T) {
		_, rs := e.ok(t, req{path: "/", ctype: "application/json", header: tagged,
			body: []byte(`{"date":"2023-11-14T22:13:20.000681Z","log":"one"}{"date":"2023-11-14 22:13:21.5","log":"two"}`)})
		checkRecs(t, rs, "2023-11-14T22:13:20.000681Z log=one", "2023-11-14T22:13:21.5Z log=two")
	})
	t.Run("format query", func(t *testing.T) {
		_, rs := e.ok(t, req{path: "/app?format=json_lines", ctype: "text/plain",
			body: []byte("{\"date\":1700000000123,\"log\":\"ms\"}\n")})
		checkRecs(t, rs, "2023-11-14T22:13:20.123Z log=ms")
	})
	t.Run("msgpack", func(t *testing.T) {
		// Fluent Bit 2+ sends its chunk as it is: [[time, metadata], record].
		var body []byte
		for i, l := range []string{"one", "two"} {
			body = msgp.AppendArrayHeader(body, 2)
			body = msgp.AppendArrayHeader(body, 2)
			body = msgp.AppendEventTime(body, uint32(1700000000+i), 0)
			body = append(body, 0x80)
			body = append(body, omap(t, "log", l)...)
		}
		_, rs := e.ok(t, req{path: "/", ctype: "application/msgpack", header: tagged, body: body})
		checkRecs(t, rs, "2023-11-14T22:13:20Z log=one", "2023-11-14T22:13:21Z log=two")
	})
	t.Run("path tag without header", func(t *testing.T) {
		tag, _ := e.ok(t, req{path: "/from.path", ctype: "application/json", body: []byte(`{}`)})
		if tag != "from.path" {
			t.Fatalf("tag %q", tag)
		}
	})
}

func TestEncodings(t *testing.T) {
	e := newEnv(t, nil)
	body := []byte(`[{"log":"one"},{"log":"two"}]`)
	for _, c := range []struct {
		enc  string
		body []byte
	}{
		{"gzip", gz(t, body)},
		{"gzip", append(gz(t, body[:14]), gz(t, body[14:])...)}, // two members
		{"x-gzip", gz(t, body)},
		{"zstd", zs(t, body)},
		{"deflate", deflate(t, body)},
		{"identity", body},
	} {
		t.Run(c.enc, func(t *testing.T) {
			_, rs := e.ok(t, req{path: "/app", ctype: "application/json", encoding: c.enc, body: c.body})
			checkRecs(t, rs, now+" log=one", now+" log=two")
		})
	}
}

func TestMountedUnderChi(t *testing.T) {
	e := newEnv(t, nil)
	r := chi.NewRouter()
	r.Mount("/v1/ingest", e.h)
	srv := httptest.NewServer(r)
	defer srv.Close()
	res, err := http.Post(srv.URL+"/v1/ingest/a/b.c", "application/json", strings.NewReader(`{"log":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if st := e.pub.stored(); len(st) != 1 || st[0].Tag != "a.b.c" {
		t.Fatalf("stored %+v", st)
	}
	res, err = http.Post(srv.URL+"/v1/ingest/", "application/json", strings.NewReader(`{"log":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Fatalf("empty tag below the mount: status %d", res.StatusCode)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxBodyBytes = 64 << 10
		c.MaxDecompressedBytes = 1 << 20
		c.MaxRecords = 1000
	})
	js := "application/json"
	for _, c := range []struct {
		name string
		r    req
		code int
		msg  string
	}{
		{"invalid json", req{path: "/app", ctype: js, body: []byte(`{"a":1,}`)}, 400, "invalid JSON"},
		{"number in array", req{path: "/app", ctype: js, body: []byte(`[{"a":1},{"a":2},3]`)}, 400, "record 2 is a number, want an object"},
		{"body over the cap", req{path: "/app", ctype: js, body: []byte(`{"a":"` + strings.Repeat("x", 70<<10) + `"}`)}, 413, "above the limit"},
		{"gzip bomb", req{path: "/app", ctype: js, encoding: "gzip",
			body: gz(t, []byte(`{"a":"`+strings.Repeat("x", 2<<20)+`"}`))}, 413, "inflates above"},
		{"zstd bomb", req{path: "/app", ctype: js, encoding: "zstd",
			body: zs(t, []byte(`{"a":"`+strings.Repeat("x", 2<<20)+`"}`))}, 413, "inflates above"},
		{"corrupt gzip", req{path: "/app", ctype: js, encoding: "gzip", body: []byte("not gzip at all")}, 400, "gzip body"},
		{"truncated gzip", req{path: "/app", ctype: js, encoding: "gzip", body: gz(t, []byte(`{"a":1}`))[:15]}, 400, "gzip body"},
		{"corrupt zstd", req{path: "/app", ctype: js, encoding: "zstd", body: []byte("not zstd")}, 400, "zstd body"},
		{"unknown encoding", req{path: "/app", ctype: js, encoding: "br", body: []byte(`{}`)}, 415, "Content-Encoding"},
		{"unknown content type", req{path: "/app", ctype: "text/csv", body: []byte("a,b")}, 415, "text/csv"},
		{"GET", req{path: "/app", method: http.MethodGet}, 405, "use POST"},
		{"PUT", req{path: "/app", method: http.MethodPut, body: []byte(`{}`)}, 405, "use POST"},
		{"empty tag", req{path: "/", ctype: js, body: []byte(`{}`)}, 400, "tag is empty"},
		{"control char in tag", req{path: "/a%01b", ctype: js, body: []byte(`{}`)}, 400, "control character"},
		{"form without field", req{path: "/app", ctype: "application/x-www-form-urlencoded", body: []byte("x=1")}, 400, "'json', 'ndjson' or 'msgpack'"},
		{"bad time query", req{path: "/app?time=soon", ctype: js, body: []byte(`{}`)}, 400, "time query parameter"},
		{"bad format query", req{path: "/app?format=xml", ctype: js, body: []byte(`{}`)}, 400, "format query parameter"},
		{"bad msgpack", req{path: "/app", ctype: "application/msgpack", body: []byte{0x81, 0xa1, 'a', 0xc1}}, 400, "invalid msgpack"},
		{"too many records", req{path: "/app", ctype: js, body: []byte(strings.Repeat(`{}`, 1001))}, 413, "more than 1000 records"},
	} {
		t.Run(c.name, func(t *testing.T) { e.fails(t, c.r, c.code, c.msg) })
	}
	if n := testutil.ToFloat64(e.h.m.Rejected.WithLabelValues(ReasonJSON)); n != 1 {
		t.Fatalf("rejected{bad_json} = %v", n)
	}
	if n := testutil.ToFloat64(e.h.m.Requests.WithLabelValues("413")); n != 4 {
		t.Fatalf("requests{413} = %v", n)
	}
	if res := e.do(t, req{path: "/app", method: http.MethodGet}); res.hdr.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", res.hdr.Get("Allow"))
	}
}

func TestBodyCapChunked(t *testing.T) {
	// Without a Content-Length the cap applies while reading.
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 4 << 10 })
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(`{"a":"` + strings.Repeat("x", 8<<10) + `"}`))
		pw.Close()
	}()
	res, err := http.Post(e.srv.URL+"/app", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if len(e.pub.stored()) != 0 {
		t.Fatal("stored")
	}
}

func TestBackpressure(t *testing.T) {
	full := &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}
	for _, c := range []struct {
		name       string
		publishErr error
		waitErr    error
		code       int
		retryAfter string
	}{
		{"stream full on wait", nil, full, 429, "1"},
		{"stream full on publish", full, nil, 429, "1"},
		{"stalled", jetstream.ErrTooManyStalledMsgs, nil, 429, "1"},
		{"no responders", nats.ErrNoResponders, nil, 503, "5"},
		{"unavailable", nil, &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "jetstream unavailable"}, 503, "5"},
		{"timeout", nil, jetstream.ErrAsyncPublishTimeout, 503, "5"},
		{"other", nil, errors.New("boom"), 503, "5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.pub.publishErr, e.pub.waitErr = c.publishErr, c.waitErr
			res := e.fails(t, req{path: "/app", ctype: "application/json", body: []byte(`{"a":1}`)}, c.code, "retry later")
			if got := res.hdr.Get("Retry-After"); got != c.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, c.retryAfter)
			}
			if n := testutil.ToFloat64(e.h.m.Records); n != 0 {
				t.Fatalf("records counted: %v", n)
			}
		})
	}
}

func TestStoreTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StoreTimeout = time.Millisecond })
	e.h.pub = blockPub{}
	res := e.do(t, req{path: "/app", ctype: "application/json", body: []byte(`{"a":1}`)})
	if res.code != 503 || res.hdr.Get("Retry-After") != "5" {
		t.Fatalf("status %d %q", res.code, res.body)
	}
}

// blockPub never stores.
type blockPub struct{}

func (blockPub) Publish(*chunk.Chunk) (chunk.Pending, error) { return blockPending{}, nil }

type blockPending struct{}

func (blockPending) Wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	e.ok(t, req{path: "/app", ctype: "application/json", body: []byte(`[{"a":1},{"a":2}]`)})
	e.ok(t, req{path: "/app", ctype: "application/json", body: []byte(`{"a":1}`)})
	if n := testutil.ToFloat64(e.h.m.Records); n != 3 {
		t.Fatalf("records %v", n)
	}
	var bytesStored int
	for _, c := range e.pub.stored() {
		bytesStored += len(c.Entries)
	}
	if n := testutil.ToFloat64(e.h.m.Bytes); n != float64(bytesStored) {
		t.Fatalf("bytes %v, want %d", n, bytesStored)
	}
	if n := testutil.ToFloat64(e.h.m.Requests.WithLabelValues("200")); n != 2 {
		t.Fatalf("requests{200} %v", n)
	}
	// An empty body is answered without storing anything.
	if res := e.do(t, req{path: "/app", ctype: "application/json", body: []byte(`[]`)}); res.code != 200 || len(e.pub.stored()) != 2 {
		t.Fatalf("empty body: %d, %d chunks", res.code, len(e.pub.stored()))
	}
}

func TestMetricsShareRegistryWithForward(t *testing.T) {
	reg := prometheus.NewRegistry()
	set := component.Settings{Registerer: reg}
	var fc forward.Config
	fc.SetDefaults()
	_ = forward.New(fc, &memPub{}, set)
	var cfg Config
	cfg.SetDefaults()
	h := NewHandler(cfg, &memPub{}, set) // must not panic
	defer h.Close()
	h.m.Records.Add(2)
	if n, err := testutil.GatherAndCount(reg, "sluice_ingest_records_total"); err != nil || n != 2 {
		t.Fatalf("series %d, %v", n, err)
	}
}

func TestConfig(t *testing.T) {
	var c Config
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":9880" || c.MaxBodyBytes != 16<<20 || c.MaxDecompressedBytes != 64<<20 ||
		c.MaxRecords != 100000 || strings.Join(c.TimeKeys, ",") != "date,time" {
		t.Fatalf("defaults %+v", c)
	}
	c = Config{Listen: "nohostport", MaxBodyBytes: 10, MaxRecords: -1, HeaderTag: "X Tag", TimeKeys: []string{""}}
	c.SetDefaults()
	err := c.Validate()
	for _, f := range []string{"listen:", "max_body_bytes:", "max_records:", "header_tag:", "time_keys[0]:"} {
		if err == nil || !strings.Contains(err.Error(), "\n"+f) && !strings.HasPrefix(err.Error(), f) {
			t.Fatalf("error %v lacks %s", err, f)
		}
	}
	c = Config{Listen: ListenDisabled, TimeKeys: []string{}}
	c.SetDefaults()
	if err := c.Validate(); err != nil || len(c.TimeKeys) != 0 {
		t.Fatalf("%v %v", err, c.TimeKeys)
	}
}

// startIngestServer serves a Handler over memPub on a loopback port.
func startIngestServer(t *testing.T) (*Server, *memPub) {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0"}
	cfg.SetDefaults()
	pub := &memPub{}
	h := NewHandler(cfg, pub, component.Settings{})
	t.Cleanup(h.Close)
	s := NewServer(cfg, h, component.Settings{})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, pub
}

func TestServer(t *testing.T) {
	s, pub := startIngestServer(t)
	res, err := http.Post("http://"+s.Addr().String()+"/app", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || len(pub.stored()) != 1 {
		t.Fatalf("status %d", res.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// Shedding marks the longest-open keep-alive connections: the next response
// on each says Connection: close and the connection ends; the others stay.
// Marked connections no longer count toward Connections.
func TestServerShed(t *testing.T) {
	s, _ := startIngestServer(t)
	defer s.Shutdown(context.Background())
	url := "http://" + s.Addr().String() + "/app"
	clients := make([]*http.Client, 3)
	post := func(i int) *http.Response {
		t.Helper()
		res, err := clients[i].Post(url, "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("client %d: %s", i, res.Status)
		}
		return res
	}
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{}}
		defer clients[i].CloseIdleConnections()
		post(i)
		time.Sleep(10 * time.Millisecond) // distinct opening times
	}
	if n := s.Connections(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
	if n := s.Shed(2, "balance"); n != 2 {
		t.Fatalf("Shed(2) asked %d", n)
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections not asked to close, want 1", n)
	}
	for i := range clients {
		res := post(i)
		if closing := res.Close || res.Header.Get("Connection") == "close"; closing != (i < 2) {
			t.Errorf("client %d: Connection: close is %v, want %v", i, closing, i < 2)
		}
	}
	if got := testutil.ToFloat64(s.shed.WithLabelValues("balance")); got != 2 {
		t.Errorf("shed counter %v, want 2", got)
	}
}
