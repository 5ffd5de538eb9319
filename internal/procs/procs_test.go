package procs

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func testPolicy() Policy {
	return Policy{Max: 4, Interval: 100 * time.Millisecond,
		Raise: 0.8, RaiseWindow: 500 * time.Millisecond,
		Lower: 0.5, LowerWindow: 2 * time.Second}
}

// feed gives the controller n samples of 100 ms at the given cores and
// returns the Ps after each.
func feed(c *Controller, n int, cores float64) []int {
	var got []int
	for range n {
		got = append(got, c.Sample(time.Duration(cores*float64(100*time.Millisecond)), 100*time.Millisecond))
	}
	return got
}

func TestControllerLowersAfterAQuietWindow(t *testing.T) {
	c := NewController(testPolicy())
	if c.Procs() != 4 {
		t.Fatalf("starts on %d Ps, want all 4", c.Procs())
	}
	got := feed(c, 20, 0.3)
	for i, n := range got[:19] {
		if n != 4 {
			t.Fatalf("went to %d Ps after %d samples, before the 2 s window was full", n, i+1)
		}
	}
	if got[19] != 1 {
		t.Fatalf("%d Ps after 2 s at 0.3 cores, want 1", got[19])
	}
}

func TestControllerStaysOnAllPsWhileBusy(t *testing.T) {
	c := NewController(testPolicy())
	// Half a core and more on average, however it comes: steady, or in
	// bursts between quiet samples.
	for _, n := range feed(c, 50, 0.6) {
		if n != 4 {
			t.Fatalf("went to %d Ps at 0.6 cores", n)
		}
	}
	for range 10 {
		feed(c, 1, 3.0)
		for _, n := range feed(c, 4, 0.1) {
			if n != 4 {
				t.Fatalf("went to %d Ps at 0.68 cores on average", n)
			}
		}
	}
}

func TestControllerRaisesOnSustainedLoadNotOnABurst(t *testing.T) {
	c := NewController(testPolicy())
	feed(c, 20, 0)
	if c.Procs() != 1 {
		t.Fatalf("%d Ps when idle", c.Procs())
	}
	// A fleet's second: one busy tenth, then quiet. 0.5 s averages stay
	// under 0.8 cores.
	for range 5 {
		feed(c, 1, 1.0)
		if n := feed(c, 9, 0.1)[8]; n != 1 {
			t.Fatalf("a burst gave back %d Ps", n)
		}
	}
	got := feed(c, 5, 0.95)
	if got[3] != 1 || got[4] != 4 {
		t.Fatalf("Ps over half a second at 0.95 cores: %v, want all 4 at the fifth sample", got)
	}
	// Back on all Ps, the raise's samples do not count towards lowering.
	if n := feed(c, 19, 0.2)[18]; n != 4 {
		t.Fatalf("%d Ps before a full quiet window after the raise", n)
	}
}

func TestControllerWithOneP(t *testing.T) {
	p := testPolicy()
	p.Max = 1
	c := NewController(p)
	for _, cores := range []float64{0, 2, 0} {
		if n := feed(c, 30, cores)[29]; n != 1 {
			t.Fatalf("%d Ps with Max 1", n)
		}
	}
}

// Run sets GOMAXPROCS from the samples and gives every P back when it
// ends.
func TestRunSetsGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	var cpu atomic.Int64 // the fake process CPU time, ns
	busy := atomic.Bool{}
	p := Policy{Max: 2, Interval: 5 * time.Millisecond, Raise: 0.8, RaiseWindow: 20 * time.Millisecond, Lower: 0.5, LowerWindow: 50 * time.Millisecond}
	start := time.Now()
	cpuTime := func() (time.Duration, error) {
		if busy.Load() {
			// A full core from here on: CPU time keeps up with the clock.
			return time.Since(start), nil
		}
		return time.Duration(cpu.Load()), nil
	}
	var changes atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(ctx, p, cpuTime, func(int) { changes.Add(1) })
		close(done)
	}()
	waitProcs := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for runtime.GOMAXPROCS(0) != want {
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS %d, want %d", runtime.GOMAXPROCS(0), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitProcs(1) // idle
	busy.Store(true)
	waitProcs(2)
	busy.Store(false)
	cpu.Store(int64(time.Since(start)))
	waitProcs(1)
	cancel()
	<-done
	if n := runtime.GOMAXPROCS(0); n != 2 {
		t.Errorf("GOMAXPROCS %d after Run ended, want 2", n)
	}
	if changes.Load() < 3 {
		t.Errorf("%d changes reported, want at least 3 (one P, every P, one P)", changes.Load())
	}
}

func TestCPUTimeCounts(t *testing.T) {
	before, err := CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		now, err := CPUTime()
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 20*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time grew %v in 10 s of spinning", now-before)
		}
	}
	_ = x
}
