package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/sinks/file"
)

// Two sinks on one stream: one takes everything, the other only error
// records of kube.** tags (a tag pattern and a condition). The three tags'
// chunks come at once from three forwarders and are stored in one batch
// message: the pattern picks records by their own chunk's tag.
func TestRoutingByTagAndCondition(t *testing.T) {
	all, errs := t.TempDir(), t.TempDir()
	cfg := testConfig(t, t.TempDir(), all)
	cfg.NATS.Batch.Linger = 300 * time.Millisecond
	cfg.Sinks = append(cfg.Sinks, config.SinkConfig{Name: "errors", File: &file.Config{Path: errs},
		Match: []string{"kube.**"}, Condition: `level == "error" && status >= 500`})
	validate(t, cfg)
	a := startApp(t, cfg)
	defer shutdown(t, a)
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	errc := make(chan error, 3)
	var sends []func()
	want := map[int]int{}
	seq := 0
	for ci, tag := range []string{"kube.var.log.web", "sys.kernel", "kube.api"} {
		var p []byte
		for i := 0; i < 40; i++ {
			level := []string{"info", "warn", "error", "error"}[i%4]
			status := 200 + 100*(i%4) // the error records: 400 and 500
			if tag != "sys.kernel" && level == "error" && status >= 500 {
				want[seq] = 1
			}
			p = append(p, forwardtest.Entry(t0, map[string]any{"seq": seq, "level": level, "status": status})...)
			seq++
		}
		id := fmt.Sprintf("c%d", ci)
		c := dialForward(t, a)
		defer c.Close()
		sends = append(sends, func() {
			errc <- c.SendAck(forwardtest.Packed(tag, p, forwardtest.Options{Chunk: id}), id, 10*time.Second)
		})
	}
	for _, send := range sends { // every connection is up: they send at once
		go send()
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	waitLines(t, all, seq)
	waitDrained(t, a, "file")
	waitDrained(t, a, "errors")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, all)), seq)
	got := filetest.Seqs(t, filetest.Lines(t, errs))
	if len(got) != len(want) || len(want) != 20 {
		t.Fatalf("errors sink holds %d records, want %d: %v", len(got), len(want), got)
	}
	for s := range want {
		if got[s] != 1 {
			t.Errorf("record %d: %d times in the errors sink", s, got[s])
		}
	}
	if last := lastSeq(t, a); last != 1 {
		t.Errorf("%d messages stored, want the three chunks in one", last)
	}
	reg := a.Registry()
	for reason, n := range map[string]float64{"match": 40, "condition": 60} {
		if v := counter(t, reg, "sluice_sink_records_filtered_total", map[string]string{"sink": "errors", "reason": reason}); v != n {
			t.Errorf("filtered by %s: %v, want %v", reason, v, n)
		}
	}
}
