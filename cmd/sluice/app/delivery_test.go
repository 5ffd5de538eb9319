package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/file"
)

func sendChunks(t *testing.T, addr string, from, chunks, per int) {
	t.Helper()
	c, err := forwardtest.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < chunks; i++ {
		id := fmt.Sprintf("r%d", from+i*per)
		if err := c.SendAck(packedChunk("app", from+i*per, per, id), id, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRewindSink keeps a replay window (limits retention) and rewinds the
// file sink to a sequence and to a time: the records from there on arrive
// again.
func TestRewindSink(t *testing.T) {
	out := t.TempDir()
	cfg := testConfig(t, t.TempDir(), out)
	cfg.NATS.Stream.Retention = "limits"
	a := startApp(t, cfg)
	defer shutdown(t, a)
	addr := a.ForwardAddr().String()

	sendChunks(t, addr, 0, 2, 5) // records 0..9, messages 1 and 2
	waitLines(t, out, 10)
	waitDrained(t, a, "file")
	between := time.Now()
	sendChunks(t, addr, 10, 1, 5) // records 10..14, message 3
	waitLines(t, out, 15)
	waitDrained(t, a, "file")

	ctx := context.Background()
	if seq, err := a.RewindSink(ctx, "file", 2); err != nil || seq != 2 {
		t.Fatalf("rewind to 2: %d, %v", seq, err)
	}
	waitLines(t, out, 25)
	waitDrained(t, a, "file")
	got := filetest.Seqs(t, filetest.Lines(t, out))
	for i := 0; i < 15; i++ {
		want := 1
		if i >= 5 {
			want = 2 // messages 2 and 3 again
		}
		if got[i] != want {
			t.Fatalf("after rewinding to sequence 2, record %d arrived %d times, want %d", i, got[i], want)
		}
	}

	seq, err := a.RewindSinkToTime(ctx, "file", between)
	if err != nil || seq != 3 {
		t.Fatalf("rewind to %s: sequence %d, %v; want 3", between, seq, err)
	}
	waitLines(t, out, 30)
	waitDrained(t, a, "file")
	got = filetest.Seqs(t, filetest.Lines(t, out))
	for i := 10; i < 15; i++ {
		if got[i] != 3 {
			t.Fatalf("after rewinding to the time of message 3, record %d arrived %d times, want 3", i, got[i])
		}
	}
	if _, err := a.RewindSink(ctx, "nope", 1); err == nil {
		t.Fatal("rewinding an unknown sink succeeded")
	}
}

// TestDownSinkHoldsOnlyItself runs two sinks; one is down. The other goes
// on writing; when the stream is full, ingest stops acknowledging; when the
// down sink returns, everything arrives at both and the acks resume.
func TestDownSinkHoldsOnlyItself(t *testing.T) {
	store, outUp, outDown := t.TempDir(), t.TempDir(), t.TempDir()
	cfg := testConfig(t, store, outUp)
	cfg.NATS.Stream.MaxBytes = 1 << 20
	cfg.NATS.Stream.Compression = queue.CompressionNone // fill it with the bytes sent
	cfg.Sinks = append(cfg.Sinks, config.SinkConfig{Name: "down", File: &file.Config{Path: outDown}})
	validate(t, cfg)
	down := &blockingSink{release: make(chan struct{}), calls: make(chan struct{}, 1)}
	a := startApp(t, cfg, WithSinkWrapper(func(name string, s sinks.Sink) sinks.Sink {
		if name == "down" {
			down.Sink = s
			return down
		}
		return s
	}))
	defer shutdown(t, a)

	const chunks, per = 30, 400 // ~100 KB a chunk, 3 MB in all; the stream holds 1 MiB
	errc, stalled := fillStream(t, a, chunks, per)
	if stalled >= chunks {
		t.Fatal("every chunk was acknowledged although the stream was full")
	}
	// The healthy sink wrote every acknowledged record meanwhile.
	if lines := waitLines(t, outUp, stalled*per); len(lines) < stalled*per {
		t.Fatalf("the healthy sink wrote %d lines of %d acknowledged records", len(lines), stalled*per)
	}
	if n := len(filetest.Lines(t, outDown)); n != 0 {
		t.Fatalf("the down sink wrote %d lines", n)
	}
	close(down.release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{outUp, outDown} {
		waitLines(t, out, chunks*per)
	}
	waitDrained(t, a, "file")
	waitDrained(t, a, "down")
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, outUp)), chunks*per)
	assertExactly(t, filetest.Seqs(t, filetest.Lines(t, outDown)), chunks*per)
	t.Logf("acks stopped after %d of %d chunks while the down sink held the stream full", stalled, chunks)
}
