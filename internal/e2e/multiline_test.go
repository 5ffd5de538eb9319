package e2e

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

func mlChunk(id string, lines ...string) []byte {
	var p []byte
	for _, l := range lines {
		p = append(p, forwardtest.Entry(time.Now(), map[string]any{"log": l + "\n", "stream": "stderr"})...)
	}
	return forwardtest.Packed("kube.var.log.containers.api_shop_java-1.log", p, forwardtest.Options{Chunk: id})
}

// mlLogs counts the log field of the lines the file sinks wrote into dir
// so far.
func mlLogs(t *testing.T, dir string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, m := range filetest.Written(t, dir) {
		got[m["log"].(string)]++
	}
	return got
}

// sluice is killed (SIGKILL) while a chunk's lines are in an open group:
// the chunk was not acknowledged, the forwarder sends it again to the next
// sluice, and every line reaches the sink, the group joined with the lines
// of the next chunk. The resend is not taken for a duplicate of the part of
// the chunk that was stored before the kill.
func TestMultilineKilledWithGroupOpen(t *testing.T) {
	skipShort(t, "starts sluice processes")
	srv := repStartNATS(t)
	out := t.TempDir()
	ml := "  multiline:\n    parser: java\n    flush_interval: 1m\n"
	first := repStartReplica(t, "ml1", srv.ClientURL(), out, ml)
	c, err := forwardtest.Dial(first.forward)
	if err != nil {
		t.Fatal(err)
	}
	a := mlChunk("A", "single before", "java.lang.Error: boom", "\tat a.B.c(B.java:1)")
	if _, err := c.Write(a); err != nil {
		t.Fatal(err)
	}
	if id, err := c.ReadAck(time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ack %q (%v) for a chunk with lines in an open group", id, err)
	}
	// The line outside the group is stored (and written) before the kill.
	deadline := time.Now().Add(20 * time.Second)
	for mlLogs(t, out)["single before\n"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the single line was not written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	c.Close()

	// The forwarder resends the unacknowledged chunk to the next sluice.
	second := repStartReplica(t, "ml2", srv.ClientURL(), out, ml)
	c2, err := forwardtest.Dial(second.forward)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, v := range [][]byte{a, mlChunk("B", "\tat a.B.d(B.java:2)", "INFO after")} {
		if _, err := c2.Write(v); err != nil {
			t.Fatal(err)
		}
	}
	acks := map[string]bool{}
	for len(acks) < 2 {
		id, err := c2.ReadAck(10 * time.Second)
		if err != nil {
			t.Fatalf("acks %v: %v", acks, err)
		}
		acks[id] = true
	}
	want := map[string]int{
		"single before\n": 1,
		"java.lang.Error: boom\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\n": 1,
		"INFO after\n": 1,
	}
	var got map[string]int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got = mlLogs(t, out)
		if len(got) == len(want) && got["INFO after\n"] == 1 {
			break
		}
	}
	for l, n := range want {
		if got[l] != n {
			t.Errorf("%q written %d times, want %d (all: %v)", l, got[l], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("lines written: %v", got)
	}
}
