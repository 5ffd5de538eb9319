package app

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/sluicelog/sluice/enrich/kube"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks"
)

// collectorExporter starts one of the Collector's own OTLP exporters
// pointed at the app, without a sending queue, so that ConsumeLogs returns
// only once sluice has answered.
func collectorExporter(t *testing.T, a *App, kind string) exporter.Logs {
	t.Helper()
	httpAddr, grpcAddr := a.OTLPAddrs()
	var (
		f   exporter.Factory
		cfg any
	)
	switch kind {
	case "otlphttp", "otlphttp/json":
		f = otlphttpexporter.NewFactory()
		c := f.CreateDefaultConfig().(*otlphttpexporter.Config)
		c.ClientConfig.Endpoint = "http://" + httpAddr.String()
		if kind == "otlphttp/json" {
			c.Encoding = otlphttpexporter.EncodingJSON
		}
		c.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
		cfg = c
	case "otlp":
		f = otlpexporter.NewFactory()
		c := f.CreateDefaultConfig().(*otlpexporter.Config)
		c.ClientConfig.Endpoint = grpcAddr.String()
		c.ClientConfig.TLS.Insecure = true
		c.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
		cfg = c
	}
	exp, err := f.CreateLogs(context.Background(), exportertest.NewNopSettings(f.Type()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := exp.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return exp
}

// otlpPodLogs is n log records of pod web-1, attributes seq from first on.
func otlpPodLogs(first, n int, t0 time.Time) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("k8s.namespace.name", "shop")
	ra.PutStr("k8s.pod.name", "web-1")
	ra.PutStr("k8s.container.name", "app")
	ra.PutStr("service.name", "web")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i := first; i < first+n; i++ {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(i)*time.Microsecond + 7)))
		lr.Body().SetStr(fmt.Sprintf(`{"msg":"order %d","amount":%d}`, i, i*10))
		lr.SetSeverityText("INFO")
		lr.Attributes().PutInt("seq", int64(i))
	}
	return ld
}

// TestCollectorExportersIntoTheSinks sends logs with the OpenTelemetry
// Collector's own exporters (OTLP/HTTP protobuf and JSON, OTLP/gRPC) and
// finds each record once in the file sink, enriched with the pod's
// metadata from its resource attributes and its JSON body merged.
func TestCollectorExportersIntoTheSinks(t *testing.T) {
	out := t.TempDir()
	cfg := enrichingConfig(t, out)
	validate(t, cfg)
	pods := mapPods{"shop/web-1": {Name: "web-1", Namespace: "shop", UID: "uid-web-1", Node: "node-a",
		Labels: map[string]string{"app": "web"}, Containers: []kube.Container{{Name: "app", Image: "shop/web:2.1"}}}}
	a := startApp(t, cfg, WithPods(pods))
	defer shutdown(t, a)

	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	const perExporter, batch = 600, 100
	kinds := []string{"otlphttp", "otlphttp/json", "otlp"}
	for k, kind := range kinds {
		exp := collectorExporter(t, a, kind)
		for first := k * perExporter; first < (k+1)*perExporter; first += batch {
			if err := exp.ConsumeLogs(context.Background(), otlpPodLogs(first, batch, t0)); err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
		}
	}
	total := perExporter * len(kinds)
	waitLines(t, out, total)
	waitDrained(t, a, "file")
	lines := filetest.Lines(t, out)
	got := map[int]int{}
	for _, l := range lines {
		attrs, _ := l["attributes"].(map[string]any)
		seq, ok := attrs["seq"].(float64)
		if !ok {
			t.Fatalf("line without attributes.seq: %v", l)
		}
		got[int(seq)]++
		k, _ := l["kubernetes"].(map[string]any)
		labels, _ := k["labels"].(map[string]any)
		if k["pod_name"] != "web-1" || k["namespace_name"] != "shop" || k["pod_id"] != "uid-web-1" ||
			k["container_image"] != "shop/web:2.1" || labels["app"] != "web" {
			t.Fatalf("line not enriched: %v", l)
		}
		data, _ := l["data"].(map[string]any)
		if data["amount"] != seq*10 {
			t.Fatalf("JSON body not merged: %v", l)
		}
		want := t0.Add(time.Duration(seq)*time.Microsecond + 7).UTC().Format("2006-01-02T15:04:05.000000000Z")
		if l["@timestamp"] != want {
			t.Fatalf("@timestamp %v, want %s (the record's nanoseconds)", l["@timestamp"], want)
		}
	}
	assertExactly(t, got, total)
	for _, l := range []string{"otlp_http", "otlp_grpc"} {
		want := float64(perExporter)
		if l == "otlp_http" {
			want *= 2
		}
		if n := counter(t, a.Registry(), "sluice_ingest_records_total", map[string]string{"listener": l}); n != want {
			t.Errorf("records stored on %s: %v, want %v", l, n, want)
		}
	}
}

// TestOTLPBackpressureWithTheCollectorExporter fills the stream while the
// sink is down: OTLP/HTTP answers 429 with Retry-After, the Collector's
// exporter keeps retrying, and once the sink drains the stream every record
// arrives exactly once.
func TestOTLPBackpressureWithTheCollectorExporter(t *testing.T) {
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	cfg.NATS.Stream.MaxBytes = 1 << 20
	cfg.NATS.Stream.Compression = queue.CompressionNone // fill it with the bytes sent
	validate(t, cfg)
	bs := &blockingSink{release: make(chan struct{}), calls: make(chan struct{}, 1)}
	a := startApp(t, cfg, WithSinkWrapper(func(_ string, s sinks.Sink) sinks.Sink { bs.Sink = s; return bs }))
	defer shutdown(t, a)
	httpAddr, _ := a.OTLPAddrs()
	url := "http://" + httpAddr.String() + "/v1/logs"
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	const batch = 200
	stored := 0
	for ; stored < 100*batch; stored += batch { // far more than the 1 MiB stream
		ld := otlpPodLogs(stored, batch, t0)
		body, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
		res, err := httpClient.Post(url, "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 429 {
			if res.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			break
		}
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
	if stored == 100*batch {
		t.Fatal("the full stream never refused a request")
	}
	exp := collectorExporter(t, a, "otlphttp")
	done := make(chan error, 1)
	go func() { done <- exp.ConsumeLogs(context.Background(), otlpPodLogs(stored, batch, t0)) }()
	refused := func() float64 {
		return counter(t, a.Registry(), "sluice_http_requests_total", map[string]string{"listener": "otlp_http", "code": "429"})
	}
	for deadline := time.Now().Add(30 * time.Second); refused() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the exporter's request was never refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(bs.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the exporter gave up: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the exporter's retry never succeeded")
	}
	stored += batch
	waitLines(t, out, stored)
	waitDrained(t, a, "file")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out), "attributes", "seq"), stored)
}

// A request sent again (a client retrying after a timeout) is stored once:
// its chunks' message ids come from their tag and entries.
func TestOTLPResentRequestStoredOnce(t *testing.T) {
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	a := startApp(t, cfg)
	defer shutdown(t, a)
	httpAddr, _ := a.OTLPAddrs()
	url := "http://" + httpAddr.String() + "/v1/logs"
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	ld := otlpPodLogs(0, 50, t0)
	// A second resource: the request becomes two chunks.
	other := otlpPodLogs(50, 50, t0)
	other.ResourceLogs().At(0).Resource().Attributes().PutStr("k8s.pod.name", "web-2")
	other.ResourceLogs().MoveAndAppendTo(ld.ResourceLogs())
	body, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	for range 3 {
		res, err := httpClient.Post(url, "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
	// Another request is stored as usual.
	ld2 := otlpPodLogs(100, 1, t0)
	body2, _ := plogotlp.NewExportRequestFromLogs(ld2).MarshalProto()
	res, err := httpClient.Post(url, "application/x-protobuf", bytes.NewReader(body2))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	waitLines(t, out, 101)
	waitDrained(t, a, "file")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, out), "attributes", "seq"), 101)
}
