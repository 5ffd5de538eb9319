package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/enrich/kube"
	"github.com/sluicelog/sluice/internal/vltest"
	"github.com/sluicelog/sluice/sinks/elasticsearch"
)

// logsQL runs a LogsQL query and returns the JSON lines of the answer.
func logsQL(t *testing.T, base, query string) []map[string]any {
	t.Helper()
	res, err := http.PostForm(base+"/select/logsql/query", url.Values{"query": {query}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("query %q: %s: %s", query, res.Status, body)
	}
	var out []map[string]any
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("query %q: %v in %s", query, err, sc.Bytes())
		}
		out = append(out, m)
	}
	return out
}

// TestElasticsearchSinkIntoVictoriaLogs sends container logs over Forward
// with the Fluentd logger, enriches them with pod metadata and bulk-writes
// them through the Elasticsearch sink into a real server that speaks the
// bulk API, then reads them back: every record once, with its nanosecond
// time, its message and the nested kubernetes block (labels with dots
// replaced).
func TestElasticsearchSinkIntoVictoriaLogs(t *testing.T) {
	vl := vltest.Start(t)
	cfg := testConfig(t, t.TempDir(), t.TempDir())
	on := true
	cfg.Enrich.Enabled = &on
	cfg.Sinks = []config.SinkConfig{{Name: "es", Elasticsearch: &elasticsearch.Config{
		URLs: []string{vl + "/insert/elasticsearch"},
		// VictoriaLogs reads the message and time fields from these.
		Headers: map[string]string{"VL-Msg-Field": "log", "VL-Time-Field": "@timestamp",
			"VL-Stream-Fields": "kubernetes.namespace_name,kubernetes.pod_name"},
		MaxRequestBytes: 64 << 10, // several requests
	}}}
	cfg.Sinks[0].Batch.MaxRecords = 500
	validate(t, cfg)
	pods := mapPods{
		"shop/web-1": {Name: "web-1", Namespace: "shop", UID: "uid-web-1", Node: "node-a",
			Labels:      map[string]string{"app": "web", "app.kubernetes.io/name": "storefront"},
			Annotations: map[string]string{"prometheus.io/scrape": "true"},
			Containers:  []kube.Container{{Name: "nginx", Image: "nginx:1.27"}}},
	}
	a := startApp(t, cfg, WithPods(pods))
	defer shutdown(t, a)

	const n = 3000
	logger := fluentLogger(t, a.ForwardAddr())
	tag := "kube.var.log.containers.web-1_shop_nginx-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log"
	// VictoriaLogs is a real server with a clock of its own: it drops records
	// older than its retention (7 days by default) or too far ahead, so the
	// records carry times just before now, on a whole second so that the
	// nanoseconds below are exactly those sent.
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i)*time.Millisecond + 123457*time.Nanosecond)
		if err := logger.PostWithTime(tag, at, map[string]any{"log": fmt.Sprintf("GET /item/%d 200", i), "stream": "stdout", "seq": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := logger.Close(); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, a, "es")

	var count int
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		rows := logsQL(t, vl, "* | stats count() as n")
		if len(rows) == 1 {
			count, _ = strconv.Atoi(fmt.Sprint(rows[0]["n"]))
		}
		if count >= n {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if count != n {
		t.Fatalf("VictoriaLogs holds %d records, want %d", count, n)
	}
	// A row query can miss rows for a moment after stats already count
	// them (freshly ingested parts): ask until the record shows.
	var rows []map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if rows = logsQL(t, vl, `seq:=1234`); len(rows) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(rows) != 1 {
		t.Fatalf("record 1234 found %d times", len(rows))
	}
	got := rows[0]
	want := map[string]string{
		"_time":                      t0.Add(1234*time.Millisecond + 123457*time.Nanosecond).Format(time.RFC3339Nano),
		"_msg":                       "GET /item/1234 200",
		"stream":                     "stdout",
		"kubernetes.pod_name":        "web-1",
		"kubernetes.namespace_name":  "shop",
		"kubernetes.pod_id":          "uid-web-1",
		"kubernetes.host":            "node-a",
		"kubernetes.container_name":  "nginx",
		"kubernetes.container_image": "nginx:1.27",
		"kubernetes.labels.app":      "web",
		"kubernetes.labels.app_kubernetes_io/name":    "storefront",
		"kubernetes.annotations.prometheus_io/scrape": "true",
	}
	for k, v := range want {
		if fmt.Sprint(got[k]) != v {
			t.Errorf("%s = %v, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if strings.Contains(k, "app.kubernetes.io") {
			t.Errorf("label key with dots kept: %s", k)
		}
	}
	// Each record arrived once: as many distinct seq values as records.
	rows = logsQL(t, vl, "* | stats count_uniq(seq) as u")
	if len(rows) != 1 || fmt.Sprint(rows[0]["u"]) != strconv.Itoa(n) {
		t.Errorf("distinct seq values: %v", rows)
	}
}
