package sinktest

import (
	"context"
	"sync"
	"testing"

	"github.com/sluicelog/sluice/sinks"
)

// memDest is an in-memory destination: the suite run against it checks the
// suite and the runner without any real sink.
type memDest struct {
	mu sync.Mutex
	ns []int
}

type memSink struct{ d *memDest }

func (s memSink) Write(_ context.Context, recs []sinks.Record) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	for i := range recs {
		s.d.ns = append(s.d.ns, recordN(nil, recs[i].Record))
	}
	return nil
}

func (memSink) Close(context.Context) error { return nil }

func (d *memDest) NewSink(*testing.T) sinks.Sink { return memSink{d} }

func (d *memDest) Delivered(*testing.T) []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int(nil), d.ns...)
}

func TestSuiteOnMemory(t *testing.T) {
	Run(t, func(*testing.T) Destination { return &memDest{} })
}
