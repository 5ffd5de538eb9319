package sinks_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks"
)

// countingSink counts what it is given and writes nothing.
type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Write(_ context.Context, recs []sinks.Record) error {
	s.n.Add(int64(len(recs)))
	return nil
}
func (s *countingSink) Close(context.Context) error { return nil }

// BenchmarkRunnerDrain measures the runner alone: one op is one queue
// message of 1,000 records of about 250 bytes, fetched from the embedded
// JetStream, batched, handed to a sink that keeps nothing, and acked.
//
//	go test -run '^$' -bench RunnerDrain -benchtime 400x ./sinks/
func BenchmarkRunnerDrain(b *testing.B) {
	for _, per := range []int{1000, 10} {
		b.Run(fmt.Sprintf("records=%d", per), func(b *testing.B) { benchDrain(b, per) })
	}
}

func benchDrain(b *testing.B, per int) {
	cfg := queue.Config{}
	cfg.Embedded.StoreDir = b.TempDir()
	cfg.SetDefaults()
	q, err := queue.Open(context.Background(), cfg, component.Settings{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	cons, err := q.Consumer(context.Background(), "bench", queue.ConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	var p []byte
	line := strings.Repeat("x", 180)
	for i := 0; i < per; i++ {
		p = append(p, forwardtest.Entry(time.Unix(1795332892, int64(i)), map[string]any{"log": line, "stream": "stdout", "n": i})...)
	}
	for i := 0; i < b.N; i++ {
		pend, err := q.Publish(&chunk.Chunk{Tag: "kube.app", Count: per, Entries: p})
		if err != nil {
			b.Fatal(err)
		}
		if err := pend.Wait(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	s := &countingSink{}
	b.ReportAllocs()
	b.ResetTimer()
	pull, err := q.NewPuller(cons)
	if err != nil {
		b.Fatal(err)
	}
	r := sinks.NewRunner("bench", s, pull, q, sinks.RunnerConfig{Concurrency: 2, PullMessages: 64, BufferBytes: 32 << 20}, component.Settings{})
	if err := r.Start(); err != nil {
		b.Fatal(err)
	}
	want := int64(b.N * per)
	for s.n.Load() < want {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "records/s")
}
