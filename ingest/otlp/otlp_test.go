package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/testcerts"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recPub is a Publisher that keeps copies of the chunks it stores, or
// fails with err.
type recPub struct {
	mu     sync.Mutex
	chunks []chunk.Chunk
	err    error
}

type donePending struct{ err error }

func (p donePending) Wait(ctx context.Context) error { return p.err }

func (p *recPub) Publish(c *chunk.Chunk) (chunk.Pending, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return donePending{p.err}, nil
	}
	cp := *c
	cp.Entries = bytes.Clone(c.Entries)
	p.chunks = append(p.chunks, cp)
	return donePending{}, nil
}

func (p *recPub) stored() []chunk.Chunk {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]chunk.Chunk(nil), p.chunks...)
}

// entry is a decoded stored entry.
type entry struct {
	sec, nsec int64
	rec       map[string]any
}

func decode(t *testing.T, c chunk.Chunk) []entry {
	t.Helper()
	var out []entry
	for off := 0; off < len(c.Entries); {
		e, next, err := chunk.ReadEntry(c.Entries, off)
		if err != nil {
			t.Fatalf("stored entry at %d: %v", off, err)
		}
		var rec map[string]any
		if err := msgpack.Unmarshal(e.Record, &rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{e.Sec, int64(e.Nsec), rec})
		off = next
	}
	if len(out) != c.Count {
		t.Fatalf("chunk %s counts %d, holds %d", c.Tag, c.Count, len(out))
	}
	return out
}

var pinned = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testConfig(edit func(*Config)) Config {
	c := Config{HTTP: ListenerConfig{Listen: "127.0.0.1:0"}, GRPC: GRPCConfig{Listen: "127.0.0.1:0"}}
	if edit != nil {
		edit(&c)
	}
	c.SetDefaults()
	return c
}

func start(t *testing.T, cfg Config, tokens []string, pub *recPub) (*Receiver, *prometheus.Registry) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r := New(cfg, tokens, pub, component.Settings{Registerer: reg, Now: func() time.Time { return pinned }})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return r, reg
}

// podLogs is n log records of one pod, each with every field set.
func podLogs(ns, pod, container string, n int) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("k8s.namespace.name", ns)
	ra.PutStr("k8s.pod.name", pod)
	ra.PutStr("k8s.pod.uid", "uid-"+pod)
	ra.PutStr("k8s.container.name", container)
	ra.PutStr("service.name", "checkout")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("app/logger")
	sl.Scope().SetVersion("1.2")
	for i := range n {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(pinned.Add(time.Duration(i)*time.Millisecond + 123)))
		lr.Body().SetStr("order placed")
		lr.SetSeverityText("INFO")
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
		lr.Attributes().PutInt("seq", int64(i))
		lr.Attributes().PutStr("user", "u1")
		lr.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		lr.SetSpanID(pcommon.SpanID{0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0, 1})
	}
	return ld
}

func TestRecordFromLogRecord(t *testing.T) {
	cv := converter{tag: mustTag(t, DefaultTag), maxRecord: 1 << 20, now: func() time.Time { return pinned }}
	ld := podLogs("shop", "checkout-7d9", "app", 2)
	// A record with a structured body and no time but the observed one.
	lr := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().AppendEmpty()
	lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(pinned.Add(time.Second)))
	m := lr.Body().SetEmptyMap()
	m.PutStr("msg", "structured")
	m.PutEmptySlice("list").AppendEmpty().SetDouble(1.5)
	lr.SetEventName("order.placed")
	var b batch
	cv.convert(ld, &b, 0)
	defer b.release()
	if len(b.chunks) != 1 || b.chunks[0].Tag != "otlp.shop.checkout-7d9.app" || b.records != 3 || b.rejectedCount() != 0 {
		t.Fatalf("chunks %d (tag %q), records %d, rejected %d", len(b.chunks), b.chunks[0].Tag, b.records, b.rejectedCount())
	}
	es := decode(t, *b.chunks[0])
	first := es[0]
	if first.sec != pinned.Unix() || first.nsec != 123 {
		t.Fatalf("time %d.%09d, want the record's nanoseconds", first.sec, first.nsec)
	}
	r := first.rec
	want := map[string]any{"log": "order placed", "severity_text": "INFO", "severity_number": int8(9),
		"trace_id": hex.EncodeToString([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}),
		"span_id":  "0a0b0c0d0e0f0001"}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %#v, want %#v", k, r[k], v)
		}
	}
	attrs, _ := r["attributes"].(map[string]any)
	if attrs["seq"] != int8(0) || attrs["user"] != "u1" {
		t.Errorf("attributes %v", r["attributes"])
	}
	k8s, _ := r["kubernetes"].(map[string]any)
	if k8s["namespace_name"] != "shop" || k8s["pod_name"] != "checkout-7d9" || k8s["pod_id"] != "uid-checkout-7d9" || k8s["container_name"] != "app" || len(k8s) != 4 {
		t.Errorf("kubernetes %v", k8s)
	}
	res, _ := r["resource"].(map[string]any)
	if res["service.name"] != "checkout" || len(res) != 1 {
		// The k8s.* attributes are in the kubernetes block, not repeated here.
		t.Errorf("resource %v", res)
	}
	scope, _ := r["scope"].(map[string]any)
	if scope["name"] != "app/logger" || scope["version"] != "1.2" {
		t.Errorf("scope %v", scope)
	}
	if es[1].rec["attributes"].(map[string]any)["seq"] != int8(1) || es[1].nsec != int64(time.Millisecond+123) {
		t.Errorf("second record %v at .%09d", es[1].rec, es[1].nsec)
	}
	third := es[2]
	if third.sec != pinned.Unix()+1 || third.rec["event_name"] != "order.placed" {
		t.Errorf("third record at %d: %v", third.sec, third.rec)
	}
	body, _ := third.rec["log"].(map[string]any)
	if body["msg"] != "structured" || body["list"].([]any)[0] != 1.5 {
		t.Errorf("structured body %v", third.rec["log"])
	}
	if _, ok := third.rec["severity_text"]; ok {
		t.Errorf("absent fields must stay absent: %v", third.rec)
	}
}

func mustTag(t testing.TB, s string) []tagPart {
	t.Helper()
	p, err := parseTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTagFromResource(t *testing.T) {
	ld := plog.NewLogs()
	for _, attrs := range []map[string]string{
		{"k8s.namespace.name": "a", "k8s.pod.name": "p", "k8s.container.name": "c", "service.name": "s"},
		{"k8s.namespace.name": "a"},
		{"service.name": "s"},
		{"k8s.namespace.name": "a", "k8s.pod.name": "p", "k8s.container.name": "c"}, // the first again: one chunk
	} {
		rl := ld.ResourceLogs().AppendEmpty()
		for k, v := range attrs {
			rl.Resource().Attributes().PutStr(k, v)
		}
		rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("x")
	}
	for _, tc := range []struct {
		tmpl string
		want []string
		n    []int
	}{
		{DefaultTag, []string{"otlp.a.p.c", "otlp.a._._", "otlp._._._"}, []int{2, 1, 1}},
		{"svc.${service.name}", []string{"svc.s", "svc._"}, []int{2, 2}},
		{"all", []string{"all"}, []int{4}},
	} {
		cv := converter{tag: mustTag(t, tc.tmpl), maxRecord: 1 << 20, now: time.Now}
		var b batch
		cv.convert(ld, &b, 0)
		var tags []string
		var counts []int
		for _, c := range b.chunks {
			tags = append(tags, c.Tag)
			counts = append(counts, c.Count)
		}
		if strings.Join(tags, " ") != strings.Join(tc.want, " ") || len(counts) != len(tc.n) {
			t.Fatalf("%s: tags %v, want %v", tc.tmpl, tags, tc.want)
		}
		for i := range counts {
			if counts[i] != tc.n[i] {
				t.Fatalf("%s: counts %v, want %v", tc.tmpl, counts, tc.n)
			}
		}
		b.release()
	}
	for _, bad := range []string{"", "otlp.${", "x.${}"} {
		c := testConfig(nil)
		c.Tag = bad
		if bad == "" {
			c.Tag = "${}" // "" takes the default
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tag:") {
			t.Errorf("tag %q: %v", c.Tag, err)
		}
	}
}

func post(t *testing.T, url, ctype, enc string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHTTPProtobufJSONAndGzip(t *testing.T) {
	pub := &recPub{}
	r, reg := start(t, testConfig(nil), nil, pub)
	url := "http://" + r.HTTPAddr().String() + LogsPath
	req := plogotlp.NewExportRequestFromLogs(podLogs("shop", "web-1", "app", 3))
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	for _, tc := range []struct {
		ctype, enc string
		body       []byte
	}{
		{contentProtobuf, "", pb},
		{contentJSON, "", js},
		{contentProtobuf, "gzip", gz(t, pb)},
		{contentJSON + "; charset=utf-8", "gzip", gz(t, js)},
	} {
		before := len(pub.stored())
		res, body := post(t, url, tc.ctype, tc.enc, tc.body)
		if res.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", tc.ctype, tc.enc, res.StatusCode, body)
		}
		resp := plogotlp.NewExportResponse()
		var err error
		if strings.HasPrefix(tc.ctype, contentJSON) {
			err = resp.UnmarshalJSON(body)
		} else {
			err = resp.UnmarshalProto(body)
		}
		if err != nil || resp.PartialSuccess().RejectedLogRecords() != 0 {
			t.Fatalf("%s: response %q: %v", tc.ctype, body, err)
		}
		if got := res.Header.Get("Content-Type"); !strings.HasPrefix(tc.ctype, got) {
			t.Fatalf("answered in %q to %q", got, tc.ctype)
		}
		st := pub.stored()
		if len(st) != before+1 || st[before].Tag != "otlp.shop.web-1.app" || st[before].Count != 3 {
			t.Fatalf("%s %s: stored %+v", tc.ctype, tc.enc, st[before:])
		}
		if es := decode(t, st[before]); es[2].rec["log"] != "order placed" {
			t.Fatalf("stored %v", es[2].rec)
		}
	}
	if n := testutil.ToFloat64(r.httpM.Records); n != 12 {
		t.Fatalf("sluice_ingest_records_total{listener=otlp_http} %v, want 12", n)
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_http_requests_total"); err != nil || n != 1 {
		t.Fatalf("requests series %d %v", n, err)
	}
}

// rpcStatus decodes an OTLP/HTTP error body.
func rpcStatus(t *testing.T, ctype string, body []byte) *spb.Status {
	t.Helper()
	s := &spb.Status{}
	var err error
	if ctype == contentJSON {
		err = protojson.Unmarshal(body, s)
	} else {
		err = proto.Unmarshal(body, s)
	}
	if err != nil {
		t.Fatalf("error body %q is not a google.rpc.Status: %v", body, err)
	}
	return s
}

func TestHTTPRefusals(t *testing.T) {
	pub := &recPub{}
	r, reg := start(t, testConfig(func(c *Config) { c.MaxBodyBytes = 4 << 10 }), nil, pub)
	url := "http://" + r.HTTPAddr().String() + LogsPath
	big, _ := plogotlp.NewExportRequestFromLogs(podLogs("a", "b", "c", 100)).MarshalProto()
	for _, tc := range []struct {
		name, ctype, enc string
		body             []byte
		code             int
		reason           string
		msg              string
	}{
		{"not protobuf", contentProtobuf, "", []byte{0xff, 0xff, 0xff}, 400, ReasonDecode, "not an OTLP"},
		{"not json", contentJSON, "", []byte(`{"resourceLogs": [`), 400, ReasonDecode, "not an OTLP"},
		{"bad gzip", contentProtobuf, "gzip", []byte("plain"), 400, "bad_compression", "gzip"},
		{"other type", "text/plain", "", []byte("x"), 415, ReasonContentType, "application/x-protobuf"},
		{"other encoding", contentProtobuf, "br", []byte("x"), 415, "bad_encoding", "br"},
		{"too large", contentProtobuf, "", big, 413, "too_large", "limit"},
	} {
		res, body := post(t, url, tc.ctype, tc.enc, tc.body)
		if res.StatusCode != tc.code {
			t.Fatalf("%s: %d %q, want %d", tc.name, res.StatusCode, body, tc.code)
		}
		ct := contentProtobuf
		if tc.ctype == contentJSON {
			ct = contentJSON
		}
		if s := rpcStatus(t, ct, body); !strings.Contains(s.GetMessage(), tc.msg) || s.GetCode() == 0 {
			t.Fatalf("%s: status %v", tc.name, s)
		}
		if n := testutil.ToFloat64(r.httpM.Rejected.WithLabelValues(tc.reason)); n < 1 {
			t.Fatalf("%s: rejected{reason=%s} %v", tc.name, tc.reason, n)
		}
	}
	res, _ := post(t, "http://"+r.HTTPAddr().String()+"/v1/traces", contentProtobuf, "", []byte{})
	if res.StatusCode != 404 {
		t.Fatalf("/v1/traces: %d", res.StatusCode)
	}
	greq, _ := http.NewRequest(http.MethodGet, url, nil)
	gres, err := http.DefaultClient.Do(greq)
	if err != nil {
		t.Fatal(err)
	}
	gres.Body.Close()
	if gres.StatusCode != 405 || gres.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d", gres.StatusCode)
	}
	if len(pub.stored()) != 0 {
		t.Fatalf("refused requests stored %d chunks", len(pub.stored()))
	}
	if n := testutil.ToFloat64(r.httpM.Requests.WithLabelValues("400")); n != 3 {
		t.Fatalf("400 answers counted %v", n)
	}
	_ = reg
}

func TestRecordsRefusedAloneArePartialSuccess(t *testing.T) {
	pub := &recPub{}
	r, _ := start(t, testConfig(func(c *Config) { c.MaxRecordBytes = 2 << 10 }), nil, pub)
	ld := podLogs("a", "p", "c", 3)
	lrs := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	lrs.AppendEmpty().Body().SetStr(strings.Repeat("x", 4<<10)) // too large
	deep := lrs.AppendEmpty().Body().SetEmptyMap()              // too deep
	for range maxDepth + 5 {
		deep = deep.PutEmptyMap("d")
	}
	lrs.AppendEmpty().SetTimestamp(pcommon.Timestamp(uint64(1) << 63)) // after 2106
	// JSON: the protobuf decoder refuses the whole request beyond 100
	// levels of messages, before sluice sees it.
	body, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalJSON()
	res, b := post(t, "http://"+r.HTTPAddr().String()+LogsPath, contentJSON, "", body)
	if res.StatusCode != 200 {
		t.Fatalf("%d %q", res.StatusCode, b)
	}
	resp := plogotlp.NewExportResponse()
	if err := resp.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedLogRecords() != 3 || !strings.Contains(ps.ErrorMessage(), "above the limit") {
		t.Fatalf("partial success %d %q", ps.RejectedLogRecords(), ps.ErrorMessage())
	}
	st := pub.stored()
	if len(st) != 1 || st[0].Count != 3 || len(decode(t, st[0])) != 3 {
		t.Fatalf("stored %+v", st)
	}
	for reason, want := range map[string]float64{ReasonTooLarge: 1, ReasonTooDeep: 1, ReasonTime: 1} {
		if n := testutil.ToFloat64(r.rejectedRecords.WithLabelValues(ListenerHTTP, reason)); n != want {
			t.Errorf("rejected records %s: %v", reason, n)
		}
	}
}

func TestBackpressureAnswers(t *testing.T) {
	full := &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}
	body, _ := plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 2)).MarshalProto()
	for _, tc := range []struct {
		err        error
		code       int
		retryAfter string
		grpc       codes.Code
	}{
		{full, 429, "1", codes.ResourceExhausted},
		{nats.ErrTimeout, 503, "5", codes.Unavailable},
		{errors.New("disk on fire"), 503, "5", codes.Unavailable},
	} {
		pub := &recPub{err: tc.err}
		r, _ := start(t, testConfig(nil), nil, pub)
		res, b := post(t, "http://"+r.HTTPAddr().String()+LogsPath, contentProtobuf, "", body)
		if res.StatusCode != tc.code || res.Header.Get("Retry-After") != tc.retryAfter {
			t.Fatalf("%v: %d Retry-After %q", tc.err, res.StatusCode, res.Header.Get("Retry-After"))
		}
		if s := rpcStatus(t, contentProtobuf, b); codes.Code(s.GetCode()) != tc.grpc {
			t.Fatalf("%v: status %v", tc.err, s)
		}
		cl := grpcClient(t, r, nil)
		_, err := cl.Export(context.Background(), plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 2)))
		st := status.Convert(err)
		if st.Code() != tc.grpc || len(st.Details()) != 1 {
			t.Fatalf("%v: grpc %v", tc.err, err)
		}
		if ri, ok := st.Details()[0].(*errdetails.RetryInfo); !ok || ri.GetRetryDelay().AsDuration().String() != tc.retryAfter+"s" {
			t.Fatalf("%v: details %v", tc.err, st.Details())
		}
	}
}

func grpcClient(t *testing.T, r *Receiver, creds credentials.TransportCredentials) plogotlp.GRPCClient {
	t.Helper()
	return plogotlp.NewGRPCClient(grpcConn(t, r, creds))
}

// grpcConn is a client connection to the gRPC listener, plaintext unless
// creds are given.
func grpcConn(t *testing.T, r *Receiver, creds ...credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	c := insecure.NewCredentials()
	if len(creds) > 0 && creds[0] != nil {
		c = creds[0]
	}
	cc, err := grpc.NewClient(r.GRPCAddr().String(), grpc.WithTransportCredentials(c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestGRPCExport(t *testing.T) {
	pub := &recPub{}
	r, _ := start(t, testConfig(nil), nil, pub)
	cl := grpcClient(t, r, nil)
	ld := podLogs("shop", "web-1", "app", 5)
	ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().AppendEmpty().SetTimestamp(pcommon.Timestamp(uint64(1) << 63))
	resp, err := cl.Export(context.Background(), plogotlp.NewExportRequestFromLogs(ld), grpc.UseCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.PartialSuccess().RejectedLogRecords() != 1 {
		t.Fatalf("partial success %d", resp.PartialSuccess().RejectedLogRecords())
	}
	st := pub.stored()
	if len(st) != 1 || st[0].Tag != "otlp.shop.web-1.app" || st[0].Count != 5 {
		t.Fatalf("stored %+v", st)
	}
	if n := testutil.ToFloat64(r.grpcM.Records); n != 5 {
		t.Fatalf("records{otlp_grpc} %v", n)
	}
}

func TestTokensOnBothListeners(t *testing.T) {
	pub := &recPub{}
	r, reg := start(t, testConfig(nil), []string{"s3cret"}, pub)
	body, _ := plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 1)).MarshalProto()
	url := "http://" + r.HTTPAddr().String() + LogsPath
	if res, _ := post(t, url, contentProtobuf, "", body); res.StatusCode != 401 {
		t.Fatalf("no token: %d", res.StatusCode)
	}
	if res, _ := post(t, url, contentProtobuf, "", body, "Authorization", "Bearer nope"); res.StatusCode != 401 {
		t.Fatalf("wrong token: %d", res.StatusCode)
	}
	if res, b := post(t, url, contentProtobuf, "", body, "Authorization", "Bearer s3cret"); res.StatusCode != 200 {
		t.Fatalf("token: %d %q", res.StatusCode, b)
	}
	cl := grpcClient(t, r, nil)
	req := plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 1))
	if _, err := cl.Export(context.Background(), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("grpc without token: %v", err)
	}
	bad := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer nope")
	if _, err := cl.Export(bad, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("grpc wrong token: %v", err)
	}
	// The standard health service answers without a token, for probes and
	// load balancers' health checks.
	hc := healthpb.NewHealthClient(grpcConn(t, r))
	if res, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v", res, err)
	}
	good := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer s3cret")
	if _, err := cl.Export(good, req); err != nil {
		t.Fatal(err)
	}
	if len(pub.stored()) != 2 {
		t.Fatalf("stored %d chunks, want 2", len(pub.stored()))
	}
	for _, l := range []string{ListenerHTTP, ListenerGRPC} {
		for _, reason := range []string{"missing", "bad_token"} {
			if n := testutil.ToFloat64(r.auth.WithLabelValues(l, reason)); n != 1 {
				t.Errorf("auth failures %s %s: %v", l, reason, n)
			}
		}
	}
	_ = reg
}

func TestTLSOnBothListeners(t *testing.T) {
	ca := testcerts.NewCA(t, "otlp-ca")
	tc := testcerts.Files(t, ca, nil)
	pub := &recPub{}
	r, _ := start(t, testConfig(func(c *Config) { c.HTTP.TLS, c.GRPC.TLS = tc, tc }), nil, pub)
	body, _ := plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 2)).MarshalProto()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	res, err := hc.Post("https://"+r.HTTPAddr().String()+LogsPath, contentProtobuf, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("https: %d", res.StatusCode)
	}
	hc.CloseIdleConnections()
	cl := grpcClient(t, r, credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()}))
	if _, err := cl.Export(context.Background(), plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 2))); err != nil {
		t.Fatal(err)
	}
	plain := grpcClient(t, r, nil)
	if _, err := plain.Export(context.Background(), plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 2))); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext to a TLS listener: %v", err)
	}
	if len(pub.stored()) != 2 {
		t.Fatalf("stored %d", len(pub.stored()))
	}
}

// Balancing sheds OTLP/HTTP keep-alive connections as it does HTTP
// ingest's: the next answer on a shed connection says Connection: close,
// and the connection no longer counts.
func TestShedOTLPConnections(t *testing.T) {
	pub := &recPub{}
	r, reg := start(t, testConfig(nil), nil, pub)
	body, _ := plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 1)).MarshalProto()
	url := "http://" + r.HTTPAddr().String() + LogsPath
	if res, _ := post(t, url, contentProtobuf, "", body); res.Close || res.StatusCode != 200 {
		t.Fatalf("first answer: %d, close %v", res.StatusCode, res.Close)
	}
	if n := r.Connections(); n != 1 {
		t.Fatalf("connections %d, want the one kept alive", n)
	}
	if n := r.Shed(5, "balance"); n != 1 {
		t.Fatalf("shed %d, want 1", n)
	}
	if n := r.Connections(); n != 0 {
		t.Fatalf("connections %d after shedding", n)
	}
	res, _ := post(t, url, contentProtobuf, "", body)
	if res.StatusCode != 200 || !res.Close {
		t.Fatalf("answer on the shed connection: %d, close %v", res.StatusCode, res.Close)
	}
	if len(pub.stored()) != 2 {
		t.Fatalf("stored %d chunks", len(pub.stored()))
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_ingest_connections_shed_total"); err != nil || n != 1 {
		t.Fatalf("shed series %d %v", n, err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// otlp.grpc.max_connection_age sends clients GOAWAY once their connection
// is that old: a client exporting for a while dials more than once, and no
// export fails.
func TestGRPCMaxConnectionAge(t *testing.T) {
	pub := &recPub{}
	r, _ := start(t, testConfig(func(c *Config) { c.GRPC.MaxConnectionAge = 100 * time.Millisecond }), nil, pub)
	var mu sync.Mutex
	dials := 0
	cc, err := grpc.NewClient(r.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			mu.Lock()
			dials++
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cl := plogotlp.NewGRPCClient(cc)
	exports := 0
	for deadline := time.Now().Add(10 * time.Second); ; exports++ {
		mu.Lock()
		n := dials
		mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dials after %d exports in 10 s: connections are not aged out", n, exports)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cl.Export(ctx, plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 1)), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			t.Fatalf("export %d: %v", exports, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(pub.stored()) != exports {
		t.Fatalf("stored %d chunks of %d exports", len(pub.stored()), exports)
	}
}

// slowPub stores after a delay, once released.
type slowPub struct {
	recPub
	release chan struct{}
	entered chan struct{}
}

type slowPending struct{ release chan struct{} }

func (p slowPending) Wait(ctx context.Context) error {
	select {
	case <-p.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *slowPub) Publish(c *chunk.Chunk) (chunk.Pending, error) {
	if _, err := p.recPub.Publish(c); err != nil {
		return nil, err
	}
	p.entered <- struct{}{}
	return slowPending{p.release}, nil
}

// Shutdown answers the requests in flight once their records are stored,
// on both listeners, and takes no new ones.
func TestShutdownAnswersRequestsInFlight(t *testing.T) {
	pub := &slowPub{release: make(chan struct{}), entered: make(chan struct{}, 2)}
	cfg := testConfig(nil)
	r := New(cfg, nil, pub, component.Settings{})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	body, _ := plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 3)).MarshalProto()
	url := "http://" + r.HTTPAddr().String() + LogsPath
	httpDone := make(chan int, 1)
	go func() {
		res, err := http.Post(url, contentProtobuf, bytes.NewReader(body))
		if err != nil {
			httpDone <- 0
			return
		}
		res.Body.Close()
		httpDone <- res.StatusCode
	}()
	cl := grpcClient(t, r, nil)
	grpcDone := make(chan error, 1)
	go func() {
		_, err := cl.Export(context.Background(), plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 3)))
		grpcDone <- err
	}()
	<-pub.entered
	<-pub.entered // both requests wait for storage
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- r.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // Shutdown is waiting for them
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned before the requests in flight were answered: %v", err)
	default:
	}
	close(pub.release)
	if code := <-httpDone; code != 200 {
		t.Fatalf("OTLP/HTTP request in flight: %d", code)
	}
	if err := <-grpcDone; err != nil {
		t.Fatalf("OTLP/gRPC request in flight: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Post(url, contentProtobuf, bytes.NewReader(body)); err == nil {
		t.Fatal("a request after Shutdown was taken")
	}
	http.DefaultClient.CloseIdleConnections()
}

// Mutual TLS, as on the HTTP listener: with client_ca_file, a client
// without a certificate from that CA is refused on both listeners.
func TestMutualTLSOnBothListeners(t *testing.T) {
	ca, clients := testcerts.NewCA(t, "otlp-ca"), testcerts.NewCA(t, "agents")
	tc := testcerts.Files(t, ca, clients)
	pub := &recPub{}
	r, _ := start(t, testConfig(func(c *Config) { c.HTTP.TLS, c.GRPC.TLS = tc, tc }), nil, pub)
	body, _ := plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 2)).MarshalProto()
	for _, withCert := range []bool{false, true} {
		cfg := &tls.Config{RootCAs: ca.Pool()}
		if withCert {
			cfg.Certificates = []tls.Certificate{clients.ClientCert(t)}
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		res, err := hc.Post("https://"+r.HTTPAddr().String()+LogsPath, contentProtobuf, bytes.NewReader(body))
		if withCert != (err == nil) {
			t.Fatalf("https, client certificate %v: %v", withCert, err)
		}
		if err == nil {
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("https with a certificate: %d", res.StatusCode)
			}
		}
		hc.CloseIdleConnections()
		cl := grpcClient(t, r, credentials.NewTLS(cfg))
		_, err = cl.Export(context.Background(), plogotlp.NewExportRequestFromLogs(podLogs("a", "p", "c", 2)))
		if withCert != (err == nil) {
			t.Fatalf("grpc, client certificate %v: %v", withCert, err)
		}
	}
	if len(pub.stored()) != 2 {
		t.Fatalf("stored %d chunks, want the 2 sent with a certificate", len(pub.stored()))
	}
}
