package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/sinks"
)

// rejectingSink rejects records whose seq is a multiple of 4 while bad is set.
type rejectingSink struct {
	sinks.Sink
	bad atomic.Bool
}

func (s *rejectingSink) Write(ctx context.Context, recs []sinks.Record) error {
	if !s.bad.Load() {
		return s.Sink.Write(ctx, recs)
	}
	failed := map[int]error{}
	var pass []sinks.Record
	var idx []int
	for i := range recs {
		var m struct {
			Seq int `msgpack:"seq"`
		}
		if err := msgpack.Unmarshal(recs[i].Record, &m); err != nil {
			return err
		}
		if m.Seq%4 == 0 {
			failed[i] = sinks.Permanent(fmt.Errorf("mapper_parsing_exception: field [seq] of record %d", m.Seq))
		} else {
			pass = append(pass, recs[i])
			idx = append(idx, i)
		}
	}
	if err := s.Sink.Write(ctx, pass); err != nil {
		return err
	}
	if len(failed) > 0 {
		return &sinks.PartialError{Failed: failed}
	}
	return nil
}

func apiCall(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestOperatorAPI(t *testing.T) {
	const token = "op-s3cret-token"
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	cfg.API.Auth = api.AuthConfig{Tokens: []string{token}}
	cfg.NATS.Stream.Retention = "limits"
	rs := &rejectingSink{}
	rs.bad.Store(true)
	a := startApp(t, cfg, WithSinkWrapper(func(_ string, s sinks.Sink) sinks.Sink { rs.Sink = s; return rs }))
	defer shutdown(t, a)
	base := "http://" + a.APIAddr().String()

	// Probes are open; metrics and the operator API need the token.
	if code, _ := apiCall(t, "GET", base+"/healthz", "", ""); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := apiCall(t, "GET", base+"/metrics", "", ""); code != 401 {
		t.Fatalf("/metrics without a token: %d, want 401", code)
	}
	if code, _ := apiCall(t, "GET", base+"/v1/status", "wrong", ""); code != 401 {
		t.Fatalf("/v1/status with a wrong token: %d, want 401", code)
	}
	if got := counter(t, a.Registry(), "sluice_auth_failures_total", map[string]string{"listener": "api"}); got != 2 {
		t.Fatalf("auth failures %v, want 2", got)
	}

	const n = 40 // seq 0..39: 10 are multiples of 4
	sendChunks(t, a.ForwardAddr().String(), 0, 4, 10)
	waitLines(t, out, n-10)
	waitDrained(t, a, "file")

	code, body := apiCall(t, "GET", base+"/v1/status", token, "")
	if code != 200 {
		t.Fatalf("/v1/status: %d %s", code, body)
	}
	if strings.Contains(string(body), token) {
		t.Fatal("the status shows the API token")
	}
	var st api.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Sinks) != 1 || st.Sinks[0].Delivered != n-10 || st.Sinks[0].Dead != 10 || st.Sinks[0].DeadLetters != 10 ||
		st.Sinks[0].Lag != 0 || st.Stream.LastSeq != 4 || !st.Stream.Connected || st.Listeners[0].Name != "forward" {
		t.Fatalf("status %s", body)
	}

	// Metrics moved by exactly the load.
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_ingest_records_total", map[string]string{"listener": "forward"}, n},
		{"sluice_sink_records_total", map[string]string{"outcome": "delivered"}, n - 10},
		{"sluice_sink_records_total", map[string]string{"outcome": "dead"}, 10},
		{"sluice_sink_messages_acked_total", nil, 4},
		{"sluice_sink_consumer_lag_messages", map[string]string{"sink": "file"}, 0},
	} {
		if got := counter(t, a.Registry(), m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}

	code, body = apiCall(t, "GET", base+"/v1/sinks/file/dead-letters?limit=100", token, "")
	var list struct {
		DeadLetters []api.DeadLetter `json:"dead_letters"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.DeadLetters) != 10 {
		t.Fatalf("dead letters: %d %s %v", code, body, err)
	}
	var dl api.DeadLetter
	for _, d := range list.DeadLetters {
		if d.Origin == "1-0" { // the first record of the first message
			dl = d
		}
	}
	if dl.Sink != "file" || dl.Tag != "app" || !strings.Contains(dl.Error, "mapper_parsing_exception") || dl.Attempts != 1 ||
		!strings.Contains(string(dl.Record), `"seq":0`) || dl.Origin != "1-0" {
		t.Fatalf("dead letter %+v record %s", dl, dl.Record)
	}
	code, body = apiCall(t, "GET", fmt.Sprintf("%s/v1/dead-letters/%d", base, dl.Seq), token, "")
	var one api.DeadLetter
	if err := json.Unmarshal(body, &one); code != 200 || err != nil || one.Origin != dl.Origin {
		t.Fatalf("dead letter %d: %d %s", dl.Seq, code, body)
	}
	if code, _ := apiCall(t, "GET", base+"/v1/dead-letters/99999", token, ""); code != 404 {
		t.Fatalf("unknown dead letter: %d, want 404", code)
	}

	// The destination is fixed: replay.
	rs.bad.Store(false)
	code, body = apiCall(t, "POST", base+"/v1/sinks/file/dead-letters/replay", token, "")
	if code != 200 || !strings.Contains(string(body), `"replayed":10`) {
		t.Fatalf("replay: %d %s", code, body)
	}
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out)), n)
	if code, body := apiCall(t, "GET", base+"/v1/sinks/file/dead-letters", token, ""); code != 200 || !strings.Contains(string(body), `"dead_letters":[]`) {
		t.Fatalf("dead letters after replay: %d %s", code, body)
	}

	// Rewind to the last message: its 10 records come again.
	for _, bad := range []string{`{}`, `{"seq": 1, "time": "2026-01-01T00:00:00Z"}`, `nope`} {
		if code, body := apiCall(t, "POST", base+"/v1/sinks/file/rewind", token, bad); code != 400 {
			t.Fatalf("rewind with %s: %d %s", bad, code, body)
		}
	}
	if code, _ := apiCall(t, "POST", base+"/v1/sinks/nope/rewind", token, `{"seq": 1}`); code != 404 {
		t.Fatalf("rewind of an unknown sink: %d, want 404", code)
	}
	code, body = apiCall(t, "POST", base+"/v1/sinks/file/rewind", token, `{"seq": 4}`)
	if code != 200 || !strings.Contains(string(body), `"reset_seq":4`) {
		t.Fatalf("rewind: %d %s", code, body)
	}
	waitLines(t, out, n+10)
	waitDrained(t, a, "file")
	got := filetest.Seqs(t, filetest.Lines(t, out))
	for i := 30; i < 40; i++ {
		if got[i] != 2 {
			t.Fatalf("record %d arrived %d times after the rewind, want 2", i, got[i])
		}
	}
}

// api.pprof serves Go's profiles behind the API's auth; without it there
// are none.
func TestPprof(t *testing.T) {
	const token = "prof-token"
	for _, on := range []bool{false, true} {
		cfg := testConfig(t, t.TempDir(), t.TempDir())
		cfg.API.Auth = api.AuthConfig{Tokens: []string{token}}
		cfg.API.Pprof = on
		a := startApp(t, cfg)
		base := "http://" + a.APIAddr().String() + "/debug/pprof/"
		code, body := apiCall(t, "GET", base+"goroutine?debug=1", token, "")
		if on && (code != 200 || !strings.Contains(string(body), "goroutine profile:")) {
			t.Errorf("pprof on: %d %.200s", code, body)
		}
		if !on && code != 404 {
			t.Errorf("pprof off: %d", code)
		}
		if code, _ := apiCall(t, "GET", base+"goroutine?debug=1", "", ""); on && code != 401 {
			t.Errorf("pprof without a token: %d", code)
		}
	}
}

// countingCollector counts how often a registry collects it.
type countingCollector struct{ n atomic.Int64 }

func (c *countingCollector) Describe(chan<- *prometheus.Desc) {}
func (c *countingCollector) Collect(chan<- prometheus.Metric) { c.n.Add(1) }

// The replica announcements read the records every listener stored
// without running the registry's other collectors (JetStream requests,
// /proc reads), and /metrics still has the listeners' counters.
func TestAnnouncementReadsOnlyIngestMetrics(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir(), t.TempDir()))
	defer shutdown(t, a)
	costly := &countingCollector{}
	a.Registry().MustRegister(costly)

	c := dialForward(t, a)
	defer c.Close()
	if err := c.SendAck(packedChunk("app", 0, 30, "YQ=="), "YQ==", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	url := "http://" + a.HTTPAddr().String() + "/app"
	if code, _, body := post(t, httpClient, url, "", "application/x-ndjson", []byte("{\"a\":1}\n{\"a\":2}\n"), nil); code != 200 {
		t.Fatalf("post: %d %s", code, body)
	}

	if n := a.ingestedRecords(); n != 32 {
		t.Errorf("ingested records %v, want 32", n)
	}
	if n := costly.n.Load(); n != 0 {
		t.Errorf("reading the ingested records ran the other collectors %d times", n)
	}
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	if f, h := listenerValue(mfs, "sluice_ingest_records_total", "forward"), listenerValue(mfs, "sluice_ingest_records_total", "http"); f != 30 || h != 2 {
		t.Errorf("/metrics registry: forward %v, http %v records, want 30 and 2", f, h)
	}
}
