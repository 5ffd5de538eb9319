package tap

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

func testChunk(tag string, levels ...string) *chunk.Chunk {
	c := &chunk.Chunk{Tag: tag, Count: len(levels)}
	for i, l := range levels {
		c.Entries = append(c.Entries, forwardtest.Entry(time.Unix(1795332892, int64(i)), map[string]any{"level": l, "i": i})...)
	}
	return c
}

func drain(t *Tap) []map[string]any {
	var out []map[string]any
	for {
		select {
		case l := <-t.Lines():
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				panic(err)
			}
			out = append(out, m)
		default:
			return out
		}
	}
}

// A tap sees the records of its stage whose tag matches and for which the
// condition holds, as JSON lines with the time and the tag.
func TestTapSelects(t *testing.T) {
	h := NewHub(prometheus.NewRegistry())
	h.OfferChunk(StageIngest, testChunk("app", "info")) // no tap: nothing happens
	tp, err := h.Open(Query{Stage: StageIngest, Match: []string{"kube.**"}, Condition: `level == "error"`})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(tp)
	other, err := h.Open(Query{Stage: "es"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(other)
	h.OfferChunk(StageIngest, testChunk("kube.a", "info", "error", "error"))
	h.OfferChunk(StageIngest, testChunk("app", "error"))
	got := drain(tp)
	if len(got) != 2 || got[0]["tag"] != "kube.a" || got[0]["level"] != "error" || got[0]["@timestamp"] != "2026-11-22T07:34:52.000000001Z" {
		t.Fatalf("tap got %v", got)
	}
	if n := len(drain(other)); n != 0 {
		t.Errorf("the es tap saw %d ingest records", n)
	}
	if _, err := h.Open(Query{Stage: "x", Condition: "level =="}); err == nil || !strings.Contains(err.Error(), "condition") {
		t.Errorf("a bad condition: %v", err)
	}
}

// A reader that is behind loses records from its tap, counted, and the
// pipeline never waits; a limit counts only records sent.
func TestTapDropsRatherThanBlocks(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHub(reg)
	slow, _ := h.Open(Query{Stage: "s"})
	limited, _ := h.Open(Query{Stage: "s", Limit: 3})
	levels := make([]string, bufferLines+50)
	for i := range levels {
		levels[i] = "info"
	}
	c := testChunk("t", levels...)
	done := make(chan struct{})
	go func() {
		h.Offer("s", 1, func(int) (string, chunk.Entry) { e, _, _ := chunk.ReadEntry(c.Entries, 0); return c.Tag, e })
		h.OfferChunk("s", c)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("offering blocked on a tap nobody reads")
	}
	if n := len(drain(slow)); n != bufferLines {
		t.Errorf("the slow tap holds %d lines, want its buffer of %d", n, bufferLines)
	}
	if got := testutil.ToFloat64(h.records.WithLabelValues("full")); got != 51 {
		t.Errorf("full drops %v, want 51", got)
	}
	var lines []string
	if err := limited.Stream(context.Background(), func(l []byte) error { lines = append(lines, string(l)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 {
		t.Errorf("a tap limited to 3 streamed %d", len(lines))
	}
	h.Close(slow)
	h.Close(limited)
	if got := testutil.ToFloat64(h.sessions); got != 0 {
		t.Errorf("%v taps open after closing both", got)
	}
}

// A rate caps what a tap shows; the rest is counted as dropped for rate.
func TestTapRate(t *testing.T) {
	h := NewHub(prometheus.NewRegistry())
	tp, _ := h.Open(Query{Stage: "s", Rate: 5})
	defer h.Close(tp)
	levels := make([]string, 100)
	h.OfferChunk("s", testChunk("t", levels...))
	n := len(drain(tp))
	if n < 5 || n > 10 {
		t.Errorf("%d records through a tap of 5 a second, offered at once", n)
	}
	if got := testutil.ToFloat64(h.records.WithLabelValues("rate")); int(got) != 100-n {
		t.Errorf("rate drops %v, want %d", got, 100-n)
	}
}
