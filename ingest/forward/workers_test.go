package forward

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// goroutineID is the number runtime.Stack gives the calling goroutine.
func goroutineID() string {
	b := make([]byte, 64)
	return strings.Fields(string(b[:runtime.Stack(b, false)]))[1]
}

// Functions given one after another, each done before the next, run on the
// goroutine that ran the first: a worker waits for the next one.
func TestWorkersReuseAWaitingGoroutine(t *testing.T) {
	done := make(chan struct{})
	w := newWorkers(time.Minute, done)
	defer func() { close(done); w.Wait() }()
	ids := map[string]int{}
	const n = 50
	for range n {
		ran := make(chan string)
		w.Go(func() { ran <- goroutineID() })
		ids[<-ran]++
		// Time for the worker to get back to waiting; a worker that is
		// late only makes Go start another.
		time.Sleep(2 * time.Millisecond)
	}
	if len(ids) > n/5 {
		t.Fatalf("%d functions ran on %d goroutines, want most on one: %v", n, len(ids), ids)
	}
}

// Every function runs once, however many arrive at once, and waiting
// workers end when done is closed, however long their idle time.
func TestWorkersRunEveryFunctionAndEnd(t *testing.T) {
	done := make(chan struct{})
	w := newWorkers(time.Hour, done)
	var runs atomic.Int64
	var callers sync.WaitGroup
	for range 20 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			for range 100 {
				w.Go(func() { runs.Add(1) })
			}
		}()
	}
	callers.Wait()
	close(done)
	waitEnded(t, w, "workers still running 10 s after done was closed")
	if got := runs.Load(); got != 2000 {
		t.Fatalf("%d runs, want 2000", got)
	}
}

// A worker with nothing to do for its idle time ends by itself.
func TestWorkersEndWhenIdle(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	w := newWorkers(10*time.Millisecond, done)
	ran := make(chan struct{})
	w.Go(func() { close(ran) })
	<-ran
	waitEnded(t, w, "an idle worker still running 10 s after its 10 ms idle time")
}

// After a burst, the workers the steady load does not need end: work goes
// to the worker that waited least, so the others reach their idle time. (A
// worker picked in turn would get work every 100 ms here, below the idle
// time, and all 100 would live on.)
func TestWorkersShrinkAfterABurst(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	w := newWorkers(300*time.Millisecond, done)
	release := make(chan struct{})
	var started sync.WaitGroup
	for range 100 {
		started.Add(1)
		w.Go(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
	if n := w.live.Load(); n != 100 {
		t.Fatalf("%d workers for a burst of 100 functions at once", n)
	}
	for deadline := time.Now().Add(900 * time.Millisecond); time.Now().Before(deadline); {
		ran := make(chan struct{})
		w.Go(func() { close(ran) })
		<-ran
		time.Sleep(time.Millisecond)
	}
	if n := w.live.Load(); n > 10 {
		t.Errorf("%d workers live after 900 ms of one function at a time, want a few", n)
	}
}

// waitEnded fails with msg unless every worker of w ends within 10 s.
func waitEnded(t *testing.T, w *workers, msg string) {
	t.Helper()
	ended := make(chan struct{})
	go func() { w.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
	}
}
