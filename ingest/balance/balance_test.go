package balance

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sluicelog/sluice/queue"
)

func TestSurplus(t *testing.T) {
	for _, tc := range []struct {
		mine   int
		counts []int
		want   int
	}{
		{12, []int{12}, 0},           // alone: nowhere to send them
		{12, []int{12, 0, 0}, 8},     // mean 4: down to 4
		{5, []int{5, 4, 3}, 1},       // fair share 4: one over, and one is the minimum
		{5, []int{5, 4, 4}, 0},       // 13 over three: fair share 5
		{6, []int{6, 3, 3}, 2},       // mean 4, 6 is above 5
		{4, []int{4, 4, 4}, 0},       // balanced
		{101, []int{101, 80, 80}, 0}, // mean 87, 101 within 20%
		{120, []int{120, 80, 80}, 26},
		{0, []int{0, 10}, 0},
	} {
		if got := Surplus(tc.mine, tc.counts, 0.2, 1); got != tc.want {
			t.Errorf("Surplus(%d, %v) = %d, want %d", tc.mine, tc.counts, got, tc.want)
		}
	}
}

type fakePeers struct {
	mu   sync.Mutex
	reps []queue.Replica
}

func (p *fakePeers) ID() string { return "me" }
func (p *fakePeers) List() []queue.Replica {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]queue.Replica(nil), p.reps...)
}

type fakeShedder struct {
	mu    sync.Mutex
	conns int
	shed  []int
}

func (s *fakeShedder) Connections() int { s.mu.Lock(); defer s.mu.Unlock(); return s.conns }
func (s *fakeShedder) Shed(n int, reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns -= n
	s.shed = append(s.shed, n)
	return n
}

// Run sheds half the surplus a round until within the tolerance, ignores
// draining replicas, and does nothing while this replica drains.
func TestRunConverges(t *testing.T) {
	peers := &fakePeers{reps: []queue.Replica{{ID: "me"}, {ID: "b"}, {ID: "c"}, {ID: "old", ForwardConnections: 30, Draining: true}}}
	s := &fakeShedder{conns: 12}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(ctx, Config{Tolerance: 0.2, MinSurplus: 1, Interval: 10 * time.Millisecond}, peers, slog.New(slog.DiscardHandler), fwd(s))
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.Connections() > 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // more rounds: nothing more to shed
	cancel()
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	// 12 vs fair share 4: excess 8, shed 4; 8 vs 3: excess 5, shed 2;
	// 6 vs 2: excess 4, shed 2; 4 vs 2: excess 2, shed 1; 3 vs 1: excess
	// 2, shed 1; 2 vs 1: excess 1, shed 1; 1 vs 1: none.
	want := []int{4, 2, 2, 1, 1, 1}
	if len(s.shed) != len(want) {
		t.Fatalf("shed %v, want %v", s.shed, want)
	}
	for i := range want {
		if s.shed[i] != want[i] {
			t.Fatalf("shed %v, want %v", s.shed, want)
		}
	}

	// Draining: no shedding at all.
	peers.reps[0].Draining = true
	s.conns, s.shed = 12, nil
	s.mu.Unlock()
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		Run(ctx, Config{Tolerance: 0.2, MinSurplus: 1, Interval: 10 * time.Millisecond}, peers, slog.New(slog.DiscardHandler), fwd(s))
		close(done)
	}()
	time.Sleep(60 * time.Millisecond)
	cancel()
	<-done
	s.mu.Lock()
	if len(s.shed) != 0 {
		t.Errorf("a draining replica shed %v", s.shed)
	}
}

func fwd(s Shedder) Listener {
	return Listener{Name: "forward", Shedder: s, Announced: func(r queue.Replica) int { return r.ForwardConnections }}
}
