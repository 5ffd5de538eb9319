package forward

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// workers runs functions on goroutines that wait a while for the next one
// after each. A connection's acker starts for every chunk of a forwarder
// that waits for each ack before it sends the next: on a goroutine of its
// own every time, it would start on a small stack and grow it, copying the
// stack, once per chunk.
//
// The waiting workers are a stack: a function goes to the one that waited
// least. Handed out in turn instead, every worker of a burst (thousands of
// forwarders sending at the same second) would get work often enough never
// to end; from the stack, those the steady load does not need reach their
// idle time and end.
type workers struct {
	idle time.Duration   // how long a worker waits for another function
	done <-chan struct{} // closed: waiting workers end
	mu   sync.Mutex
	wait []*worker // waiting, the last to start waiting on top
	wg   sync.WaitGroup
	live atomic.Int64 // workers running or waiting
}

type worker struct {
	work chan func() // one function, sent by the Go that took it off the stack
}

func newWorkers(idle time.Duration, done <-chan struct{}) *workers {
	return &workers{idle: idle, done: done}
}

// Go runs f on the worker that waited least, or on a new one when none is
// waiting.
func (w *workers) Go(f func()) {
	w.mu.Lock()
	if n := len(w.wait); n > 0 {
		wk := w.wait[n-1]
		w.wait[n-1] = nil
		w.wait = w.wait[:n-1]
		w.mu.Unlock()
		wk.work <- f // buffered: never blocks
		return
	}
	w.mu.Unlock()
	w.wg.Add(1)
	w.live.Add(1)
	go w.run(f)
}

func (w *workers) run(f func()) {
	defer w.wg.Done()
	defer w.live.Add(-1)
	wk := &worker{work: make(chan func(), 1)}
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(w.idle)
		w.mu.Lock()
		w.wait = append(w.wait, wk)
		w.mu.Unlock()
		select {
		case f = <-wk.work:
			continue
		case <-idle.C:
		case <-w.done:
		}
		if !w.leave(wk) {
			// A Go took this worker off the stack: its function comes.
			f = <-wk.work
			continue
		}
		return
	}
}

// leave takes wk off the stack; false if a Go already did.
func (w *workers) leave(wk *worker) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if i := slices.Index(w.wait, wk); i >= 0 {
		w.wait = slices.Delete(w.wait, i, i+1)
		return true
	}
	return false
}

// Wait waits until every worker has ended; done must be closed and no Go
// may follow.
func (w *workers) Wait() { w.wg.Wait() }
