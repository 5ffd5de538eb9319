package app

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/testcerts"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks"
)

func post(t *testing.T, client *http.Client, url, token, ctype string, body []byte, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func lastSeq(t *testing.T, a *App) uint64 {
	t.Helper()
	s, err := a.Queue().JetStream().Stream(context.Background(), a.Queue().StreamName())
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// TestHTTPIngest posts every kind of body through both HTTP ports with the
// ingest token and checks what reaches the file sink.
func TestHTTPIngest(t *testing.T) {
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	cfg.HTTP.Auth = api.AuthConfig{Tokens: []string{"ingest-token"}}
	cfg.API.Auth = api.AuthConfig{Tokens: []string{"api-token"}}
	a := startApp(t, cfg)
	defer shutdown(t, a)
	ingest := "http://" + a.HTTPAddr().String()
	apiIngest := "http://" + a.APIAddr().String() + "/v1/ingest"

	// Credentials: none, and the API's token, are refused and counted.
	for _, tok := range []string{"", "api-token"} {
		if code, _, _ := post(t, httpClient, ingest+"/app", tok, "application/json", []byte(`{"seq":999}`), nil); code != 401 {
			t.Fatalf("token %q: %d, want 401", tok, code)
		}
	}
	if got := counter(t, a.Registry(), "sluice_auth_failures_total", map[string]string{"listener": "http"}); got != 2 {
		t.Fatalf("http auth failures %v, want 2", got)
	}

	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	fmt.Fprint(w, `{"seq":5,"date":1795332892.5}`+"\n"+`{"seq":6,"date":"2026-11-22T07:34:52.25Z"}`)
	w.Close()
	cases := []struct {
		url, ctype string
		body       []byte
		hdr        map[string]string
	}{
		{ingest + "/app.web", "application/json", []byte(`[{"seq":0,"log":"a"},{"seq":1,"log":"b"}]`), nil},
		{apiIngest + "/app.api", "application/x-ndjson", []byte("{\"seq\":2}\n{\"seq\":3}\n"), nil},
		{ingest + "/ignored?time=1795332892", "application/json", []byte(`{"seq":4}`), map[string]string{}},
		{ingest + "/app.gz", "application/x-ndjson", gz.Bytes(), map[string]string{"Content-Encoding": "gzip"}},
	}
	for _, c := range cases {
		if code, _, body := post(t, httpClient, c.url, "ingest-token", c.ctype, c.body, c.hdr); code != 200 {
			t.Fatalf("POST %s: %d %s", c.url, code, body)
		}
	}
	// A bad body stores nothing.
	before := lastSeq(t, a)
	if code, _, body := post(t, httpClient, ingest+"/app", "ingest-token", "application/json", []byte(`[{"seq":7},42]`), nil); code != 400 || !strings.Contains(body, "record 1") {
		t.Fatalf("bad body: %d %s", code, body)
	}
	if lastSeq(t, a) != before {
		t.Fatal("a rejected body was stored")
	}

	lines := waitLines(t, out, 7)
	waitDrained(t, a, "file")
	lines = filetest.Lines(t, out)
	assertExactly(t, filetest.Seqs(t, lines), 7)
	byseq := map[int]map[string]any{}
	for _, l := range lines {
		byseq[int(l["seq"].(float64))] = l
	}
	for seq, want := range map[int]string{0: "app.web", 2: "app.api", 4: "ignored", 5: "app.gz"} {
		if byseq[seq]["tag"] != want {
			t.Errorf("record %d has tag %v, want %s", seq, byseq[seq]["tag"], want)
		}
	}
	for seq, want := range map[int]string{4: "2026-11-22T07:34:52.000000000Z", 5: "2026-11-22T07:34:52.500000000Z", 6: "2026-11-22T07:34:52.250000000Z"} {
		if byseq[seq]["@timestamp"] != want {
			t.Errorf("record %d has time %v, want %s", seq, byseq[seq]["@timestamp"], want)
		}
		if _, kept := byseq[seq]["date"]; kept {
			t.Errorf("record %d kept its date key", seq)
		}
	}
	if got := counter(t, a.Registry(), "sluice_ingest_records_total", map[string]string{"listener": "http"}); got != 7 {
		t.Errorf("http records in %v, want 7", got)
	}
}

// TestHTTPIngestBackpressure fills the stream while the sink is down: HTTP
// clients get 429 with Retry-After, nothing is lost, and posts succeed
// again once the sink drains the stream.
func TestHTTPIngestBackpressure(t *testing.T) {
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	cfg.NATS.Stream.MaxBytes = 1 << 20
	cfg.NATS.Stream.Compression = queue.CompressionNone // fill it with the bytes sent
	bs := &blockingSink{release: make(chan struct{}), calls: make(chan struct{}, 1)}
	a := startApp(t, cfg, WithSinkWrapper(func(_ string, s sinks.Sink) sinks.Sink { bs.Sink = s; return bs }))
	defer shutdown(t, a)
	url := "http://" + a.HTTPAddr().String() + "/app"
	body := func(from int) []byte {
		var b strings.Builder
		for i := from; i < from+200; i++ {
			fmt.Fprintf(&b, "{\"seq\":%d,\"log\":%q}\n", i, strings.Repeat("x", 400))
		}
		return []byte(b.String())
	}
	stored := 0
	var code int
	var hdr http.Header
	for i := 0; i < 40; i++ { // 40 x ~85 KB: more than the 1 MiB stream
		code, hdr, _ = post(t, httpClient, url, "", "application/x-ndjson", body(stored), nil)
		if code != 200 {
			break
		}
		stored += 200
	}
	if code != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("full stream: %d Retry-After %q, want 429 with Retry-After", code, hdr.Get("Retry-After"))
	}
	close(bs.release)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, _ = post(t, httpClient, url, "", "application/x-ndjson", body(stored), nil)
		if code == 200 {
			stored += 200
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("posts still refused (%d) after the sink came back", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitLines(t, out, stored)
	waitDrained(t, a, "file")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out)), stored)
}

// TestHTTPTLS serves HTTP ingest with mutual TLS and the API with TLS, on
// certificates from a CA generated here.
func TestHTTPTLS(t *testing.T) {
	ca, clientCA, other := testcerts.NewCA(t, "sluice-ca"), testcerts.NewCA(t, "clients-ca"), testcerts.NewCA(t, "other-ca")
	cfg := testConfig(t, t.TempDir(), t.TempDir())
	cfg.HTTP.TLS = testcerts.Files(t, ca, clientCA)
	cfg.API.TLS = testcerts.Files(t, ca, nil)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)
	defer shutdown(t, a)
	client := func(roots *testcerts.CA, cert *testcerts.CA) *http.Client {
		tc := &tls.Config{RootCAs: roots.Pool()}
		if cert != nil {
			tc.Certificates = []tls.Certificate{cert.ClientCert(t)}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	url := "https://" + a.HTTPAddr().String() + "/app"
	if code, _, body := post(t, client(ca, clientCA), url, "", "application/json", []byte(`{"seq":1}`), nil); code != 200 {
		t.Fatalf("verified client with a certificate: %d %s", code, body)
	}
	for name, c := range map[string]*http.Client{
		"no client certificate":            client(ca, nil),
		"client certificate of another CA": client(ca, other),
		"server not trusted":               client(other, clientCA),
	} {
		req, _ := http.NewRequest("POST", url, strings.NewReader(`{"seq":2}`))
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s: %s, want a TLS failure", name, resp.Status)
		}
	}
	resp, err := client(ca, nil).Get("https://" + a.APIAddr().String() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("API over TLS: %v %v", resp, err)
	}
	resp.Body.Close()
}
