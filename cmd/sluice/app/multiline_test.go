package app

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/ingest/multiline"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

func traceChunk(tag, id string, lines ...string) []byte {
	var p []byte
	for _, l := range lines {
		p = append(p, forwardtest.Entry(time.Unix(1795332892, 0), map[string]any{"log": l + "\n", "stream": "stderr"})...)
	}
	return forwardtest.Packed(tag, p, forwardtest.Options{Chunk: id})
}

// Lines of a Java exception over three chunks arrive as one record; a chunk
// whose lines are in an open group is acknowledged only once the group is
// stored: when a later line ends it, when flush_interval passes, or when the
// connection ends.
func TestMultilineAtIngest(t *testing.T) {
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	cfg.Forward.Multiline = multiline.Config{Parser: "java", FlushInterval: 1500 * time.Millisecond}
	validate(t, cfg)
	a := startApp(t, cfg)
	defer shutdown(t, a)
	c := dialForward(t, a)
	const tag = "kube.var.log.containers.api_shop_java-1.log"
	send := func(value []byte) {
		t.Helper()
		if _, err := c.Write(value); err != nil {
			t.Fatal(err)
		}
	}
	noAck := func(within time.Duration) {
		t.Helper()
		if id, err := c.ReadAck(within); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ack %q (%v) while its lines are in an open group", id, err)
		}
	}
	send(traceChunk(tag, "A", "request failed", "java.lang.IllegalStateException: locked", "\tat a.B.c(B.java:1)"))
	noAck(300 * time.Millisecond)
	send(traceChunk(tag, "B", "\tat a.B.d(B.java:2)", "Caused by: java.io.IOException: gone"))
	noAck(300 * time.Millisecond)
	send(traceChunk(tag, "C", "\t... 3 more", "INFO next"))
	acks := map[string]bool{}
	for i := 0; i < 3; i++ {
		id, err := c.ReadAck(5 * time.Second)
		if err != nil {
			t.Fatalf("acks so far %v: %v", acks, err)
		}
		acks[id] = true
	}
	if !acks["A"] || !acks["B"] || !acks["C"] {
		t.Fatalf("acks %v", acks)
	}
	// A group left open is stored after flush_interval, and its chunk acked.
	start := time.Now()
	send(traceChunk(tag, "D", "java.lang.Error: stuck", "\tat x.Y.z(Y.java:9)"))
	if id, err := c.ReadAck(10 * time.Second); err != nil || id != "D" {
		t.Fatalf("ack %q, %v", id, err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("acked after %v, before flush_interval", waited)
	}
	// One left open when the connection ends is stored too.
	send(traceChunk(tag, "E", "java.lang.Error: last", "\tat x.Y.w(Y.java:10)"))
	time.Sleep(100 * time.Millisecond)
	c.Close()

	lines := waitLines(t, out, 5)
	var logs []string
	for _, l := range lines {
		logs = append(logs, l["log"].(string))
	}
	want := []string{
		"request failed\n",
		"java.lang.IllegalStateException: locked\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\nCaused by: java.io.IOException: gone\n\t... 3 more\n",
		"INFO next\n",
		"java.lang.Error: stuck\n\tat x.Y.z(Y.java:9)\n",
		"java.lang.Error: last\n\tat x.Y.w(Y.java:10)\n",
	}
	got := strings.Join(logs, "|")
	for _, w := range want {
		if strings.Count(got, w) != 1 {
			t.Errorf("record %q found %d times in %q", w, strings.Count(got, w), got)
		}
	}
	if len(logs) != 5 {
		t.Errorf("%d records, want 5", len(logs))
	}
	for reason, n := range map[string]float64{"ended": 1, "timeout": 1, "close": 1} {
		if v := counter(t, a.Registry(), "sluice_multiline_groups_total", map[string]string{"reason": reason}); v != n {
			t.Errorf("groups stored (%s): %v, want %v", reason, v, n)
		}
	}
}
