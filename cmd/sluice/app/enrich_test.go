package app

import (
	"context"
	"testing"
	"time"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/enrich/kube"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

type mapPods map[string]*kube.Pod

func (m mapPods) Pod(_ context.Context, ns, name string) (*kube.Pod, bool) {
	p, ok := m[ns+"/"+name]
	return p, ok
}

// enrichingConfig is testConfig writing to out, with enrichment on and
// JSON logs merged under "data".
func enrichingConfig(t testing.TB, out string) *config.Config {
	cfg := testConfig(t, t.TempDir(), out)
	on := true
	cfg.Enrich.Enabled = &on
	cfg.Enrich.MergeLog = &on
	cfg.Enrich.MergeLogKey = "data"
	return cfg
}

// TestEnrichmentInTheSinkPipeline sends container records over Forward and
// finds them enriched in the file sink; an excluded pod's records are
// dropped (counted), never written.
func TestEnrichmentInTheSinkPipeline(t *testing.T) {
	out := t.TempDir()
	cfg := enrichingConfig(t, out)
	id := "b90a89309ac90fff2972822c66f11736933000c5aa6376dff0c11a441fa427ee"
	pods := mapPods{
		"default/nginx-1": {Name: "nginx-1", Namespace: "default", UID: "uid-1", Node: "node-1",
			Labels:      map[string]string{"app": "nginx"},
			Annotations: map[string]string{"fluentbit.io/parser": "nginx"},
			Containers:  []kube.Container{{Name: "nginx", Image: "nginx:1.27"}}},
		"default/noisy": {Name: "noisy", Namespace: "default", UID: "uid-2",
			Annotations: map[string]string{"fluentbit.io/exclude": "true"}},
	}
	a := startApp(t, cfg, WithPods(pods))
	defer shutdown(t, a)

	c := dialForward(t, a)
	defer c.Close()
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	line := `10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612 "-" "hey/0.0.1"`
	var p []byte
	for i := 0; i < 5; i++ {
		p = append(p, forwardtest.Entry(t0, map[string]any{"log": line, "stream": "stdout", "seq": i})...)
	}
	if err := c.SendAck(forwardtest.Packed("kube.var.log.containers.nginx-1_default_nginx-"+id+".log", p, forwardtest.Options{Chunk: "a"}), "a", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	noisy := forwardtest.Packed("kube.var.log.containers.noisy_default_app-"+id+".log",
		forwardtest.Entry(t0, map[string]any{"log": "drop me", "seq": 99}), forwardtest.Options{Chunk: "b"})
	if err := c.SendAck(noisy, "b", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitLines(t, out, 5)
	waitDrained(t, a, "file")
	lines := filetest.Lines(t, out)
	assertExactly(t, filetest.Seqs(t, lines), 5)
	for _, l := range lines {
		data, _ := l["data"].(map[string]any)
		k, _ := l["kubernetes"].(map[string]any)
		if data["code"] != "200" || data["agent"] != "hey/0.0.1" || k["pod_name"] != "nginx-1" || k["container_image"] != "nginx:1.27" {
			t.Fatalf("line not enriched: %v", l)
		}
		// The access line's own time became the event time.
		if l["@timestamp"] != "2019-12-19T17:41:12.000000000Z" {
			t.Fatalf("@timestamp %v", l["@timestamp"])
		}
	}
	if got := counter(t, a.Registry(), "sluice_sink_records_dropped_total", map[string]string{"sink": "file"}); got != 1 {
		t.Fatalf("dropped %v, want the 1 record of the excluded pod", got)
	}
}
