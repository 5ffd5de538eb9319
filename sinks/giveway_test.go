package sinks_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/sinktest"
)

// writeLog is a sink that takes a few milliseconds a write and reports
// each write's records.
type writeLog struct{ wrote chan int }

func (w *writeLog) Write(ctx context.Context, recs []sinks.Record) error {
	time.Sleep(2 * time.Millisecond)
	w.wrote <- len(recs)
	return nil
}

func (w *writeLog) Close(context.Context) error { return nil }

// While ingest is busy the first worker waits Ratio times as long as its
// write took and the second takes nothing; once ingest is done both go on.
func TestGiveWayWaitsWhileIngestStores(t *testing.T) {
	env := sinktest.NewEnv(t)
	env.Publish("t", map[string]any{"n": 1}, map[string]any{"n": 2}, map[string]any{"n": 3})
	var busy atomic.Bool
	busy.Store(true)
	s := &writeLog{wrote: make(chan int, 3)}
	env.Run(s, func(c *sinks.RunnerConfig) {
		c.MaxRecords, c.Concurrency = 1, 2
		// A wait of 2 s and more for each 2 ms write.
		c.GiveWay = sinks.GiveWay{Busy: busy.Load, Ratio: 1000, MaxDelay: time.Hour}
	})
	select {
	case <-s.wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("no first write")
	}
	select {
	case <-s.wrote:
		t.Fatal("a second batch was written while ingest was busy")
	case <-time.After(300 * time.Millisecond):
	}
	busy.Store(false)
	select {
	case <-s.wrote:
	case <-time.After(time.Second):
		t.Fatal("the wait went on after ingest was done")
	}
	env.SettleWithin(10 * time.Second)
	if got := len(s.wrote); got != 1 {
		t.Errorf("%d more writes once ingest was done, want 1", got+1)
	}
	if w := env.Counter("sluice_sink_gave_way_seconds_total", "", ""); w < 0.2 {
		t.Errorf("gave way for %.3fs, want the wait counted", w)
	}
}

// A sink that is MaxDelay behind does not give way: without the bound
// each batch here would wait 2 s and more.
func TestGiveWayNotBeyondMaxDelay(t *testing.T) {
	env := sinktest.NewEnv(t)
	env.Publish("t", map[string]any{"n": 1}, map[string]any{"n": 2}, map[string]any{"n": 3})
	time.Sleep(60 * time.Millisecond) // the records are older than MaxDelay
	s := &writeLog{wrote: make(chan int, 3)}
	env.Run(s, func(c *sinks.RunnerConfig) {
		c.MaxRecords, c.Concurrency = 1, 1
		c.GiveWay = sinks.GiveWay{Busy: func() bool { return true }, Ratio: 1000, MaxDelay: 50 * time.Millisecond}
	})
	env.SettleWithin(10 * time.Second)
	if got := len(s.wrote); got != 3 {
		t.Errorf("%d writes, want 3", got)
	}
	if w := env.Counter("sluice_sink_gave_way_seconds_total", "", ""); w >= 1 {
		t.Errorf("gave way for %.3fs behind MaxDelay, want at most MaxDelay a wait", w)
	}
}
