package forward

import (
	"sync"
	"time"
)

// workers runs functions on goroutines that wait a while for the next one
// after each. A connection's acker starts for every chunk of a forwarder
// that waits for each ack before it sends the next: on a goroutine of its
// own every time, it would start on a small stack and grow it, copying the
// stack, once per chunk.
type workers struct {
	idle time.Duration   // how long a worker waits for another function
	done <-chan struct{} // closed: waiting workers end
	work chan func()     // unbuffered: a send reaches a waiting worker only
	wg   sync.WaitGroup
}

func newWorkers(idle time.Duration, done <-chan struct{}) *workers {
	return &workers{idle: idle, done: done, work: make(chan func())}
}

// Go runs f on a waiting worker, or on a new one when none is waiting.
func (w *workers) Go(f func()) {
	select {
	case w.work <- f:
	default:
		w.wg.Add(1)
		go w.run(f)
	}
}

func (w *workers) run(f func()) {
	defer w.wg.Done()
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(w.idle)
		select {
		case f = <-w.work:
		case <-idle.C:
			return
		case <-w.done:
			return
		}
	}
}

// Wait waits until every worker has ended; done must be closed and no Go
// may follow.
func (w *workers) Wait() { w.wg.Wait() }
