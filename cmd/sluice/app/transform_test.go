package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"gopkg.in/yaml.v3"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/file"
	"github.com/sluicelog/sluice/sinks/transform"
)

func steps(t *testing.T, src string) []transform.Step {
	t.Helper()
	var s []transform.Step
	if err := yaml.Unmarshal([]byte(src), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Global transforms run after enrichment and before routing, a sink's own
// after its route; a drop step drops everywhere; no secret reaches a sink or
// the dead-letter stream, and replayed dead letters are transformed too.
func TestTransformsGlobalAndPerSink(t *testing.T) {
	all, shop, audit := t.TempDir(), t.TempDir(), t.TempDir()
	cfg := testConfig(t, t.TempDir(), all)
	cfg.Transforms = steps(t, `
- drop: true
  condition: 'level == "debug"'
- set: {cluster: prod-eu-1, origin: "${tag[0]}"}
- rename: {stream: source}
- redact: {fields: [log], patterns: [email]}
`)
	cfg.Sinks = append(cfg.Sinks,
		config.SinkConfig{Name: "shop", File: &file.Config{Path: shop}, Condition: `source == "stderr"`,
			Transforms: steps(t, `
- keep: [seq, log, cluster]
- set: {sink: shop}
`)},
		config.SinkConfig{Name: "audit", File: &file.Config{Path: audit}, Retry: config.RetryConfig{MaxAttempts: 1}})
	validate(t, cfg)
	rs := &rejectingSink{}
	rs.bad.Store(true)
	a := startApp(t, cfg, WithSinkWrapper(func(name string, s sinks.Sink) sinks.Sink {
		if name == "audit" {
			rs.Sink = s
			return rs
		}
		return s
	}))
	defer shutdown(t, a)
	c := dialForward(t, a)
	defer c.Close()
	const n = 40
	var p []byte
	t0 := time.Unix(1795332892, 0)
	for i := 0; i < n; i++ {
		level := map[bool]string{true: "debug", false: "info"}[i%5 == 4]
		stream := map[bool]string{true: "stderr", false: "stdout"}[i%2 == 1]
		p = append(p, forwardtest.Entry(t0, map[string]any{"seq": i, "level": level, "stream": stream,
			"log": fmt.Sprintf("user bob%d@example.com did %d", i, i)})...)
	}
	if err := c.SendAck(forwardtest.Packed("kube.app", p, forwardtest.Options{Chunk: "t1"}), "t1", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i := 0; i < n; i++ {
		if i%5 != 4 {
			kept++
		}
	}
	lines := waitLines(t, all, kept)
	waitDrained(t, a, "file")
	waitDrained(t, a, "shop")
	waitDrained(t, a, "audit")
	for _, l := range lines {
		seq := int(l["seq"].(float64))
		if seq%5 == 4 {
			t.Errorf("debug record %d not dropped", seq)
		}
		if l["cluster"] != "prod-eu-1" || l["origin"] != "kube" || l["stream"] != nil || l["source"] == nil {
			t.Errorf("record %d not transformed: %v", seq, l)
		}
		if s := l["log"].(string); strings.Contains(s, "@example.com") || !strings.Contains(s, "[REDACTED]") {
			t.Errorf("record %d: log %q", seq, s)
		}
	}
	shopLines := filetest.Lines(t, shop)
	for _, l := range shopLines {
		seq := int(l["seq"].(float64))
		if seq%2 != 1 || l["sink"] != "shop" || len(l) != 6 { // seq, log, cluster, sink; the file sink adds @timestamp and tag
			t.Errorf("shop record %v", l)
		}
	}
	if want := kept / 2; len(shopLines) != want {
		t.Errorf("shop sink holds %d records, want %d (the stderr ones)", len(shopLines), want)
	}

	// The audit sink refused seq%4 == 0 for good: dead letters, scrubbed.
	dls, err := a.Queue().DeadLetters(context.Background(), "audit", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) == 0 {
		t.Fatal("no dead letters")
	}
	for _, d := range dls {
		e, _, err := chunk.ReadEntry(d.Entry, 0)
		if err != nil {
			t.Fatalf("dead letter entry: %v", err)
		}
		var rec map[string]any
		if err := msgpack.Unmarshal(e.Record, &rec); err != nil {
			t.Fatal(err)
		}
		if s := fmt.Sprint(rec["log"]); strings.Contains(s, "@example.com") {
			t.Errorf("a secret survived in a dead letter: %v", rec)
		}
		if e.Sec != t0.Unix() {
			t.Errorf("dead letter time %d, want %d", e.Sec, t0.Unix())
		}
	}
	// Replayed, they are transformed like the rest.
	rs.bad.Store(false)
	if got, err := a.ReplayDeadLetters(context.Background(), "audit", 100); err != nil || got != len(dls) {
		t.Fatalf("replayed %d, %v; want %d", got, err, len(dls))
	}
	for _, l := range filetest.Lines(t, audit) {
		if l["cluster"] != "prod-eu-1" || strings.Contains(fmt.Sprint(l["log"]), "@example.com") {
			t.Errorf("audit record not transformed: %v", l)
		}
	}
	if got := counter(t, a.Registry(), "sluice_transform_dropped_total", map[string]string{"pipeline": "global"}); got != float64(3*(n-kept)) {
		t.Errorf("dropped counter %v, want %d (each sink's runner drops them)", got, 3*(n-kept))
	}
	if got := counter(t, a.Registry(), "sluice_transform_redactions_total", map[string]string{"pipeline": "global", "rule": "email"}); got < float64(kept) {
		t.Errorf("redactions %v, want at least %d", got, kept)
	}
}
