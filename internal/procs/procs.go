// Package procs lets the Go scheduler run on a single P while sluice needs
// less than most of one core, and on all of them once it needs more.
//
// With several Ps, a goroutine that readies another (a connection handing
// its chunk to the publisher, nats-server's loops handing a message on, the
// PubAck waking the acker) wakes an idle P's thread to run it, and on a VM
// that wake-up is costly. sluice hands every chunk through a dozen
// goroutines, so at light load much of its CPU went to waking threads: on
// the two-core benchmark machine one P took 9% less CPU per record for a
// fleet of 2,000 forwarders and 20% less for four fat connections
// (docs/PERFORMANCE.md). One P caps sluice at one core, so the controller
// gives the scheduler every P back as soon as sluice uses most of one.
package procs

import (
	"context"
	"os"
	"runtime"
	"time"
)

// Policy is when the controller moves between one P and all of them. CPU
// use is averaged over windows, so that a burst (thousands of forwarders
// sending in the same tenth of a second) does not count as a busy second.
type Policy struct {
	// Max is the number of Ps when busy: GOMAXPROCS as the runtime set it
	// (from the CPU count or the container's CPU limit).
	Max int
	// Interval is how often CPU use is sampled.
	Interval time.Duration
	// On one P, more than Raise cores of CPU on average over RaiseWindow
	// gives back every P.
	Raise       float64
	RaiseWindow time.Duration
	// On every P, less than Lower cores on average over LowerWindow goes
	// back to one P.
	Lower       float64
	LowerWindow time.Duration
}

// DefaultPolicy samples every 100 ms, gives back every P above 0.8 of a
// core over half a second and goes back to one below half a core over 5 s.
func DefaultPolicy(max int) Policy {
	return Policy{Max: max, Interval: 100 * time.Millisecond,
		Raise: 0.8, RaiseWindow: 500 * time.Millisecond,
		Lower: 0.5, LowerWindow: 5 * time.Second}
}

// sample is CPU time used over a span of wall time.
type sample struct{ cpu, wall time.Duration }

// Controller decides the number of Ps from samples of CPU use.
type Controller struct {
	p       Policy
	procs   int      // current
	samples []sample // since the last change, at most LowerWindow's worth
}

// NewController starts on every P: a process that has just started may
// meet a storm of forwarders reconnecting (a rollout), and it goes to one
// P after LowerWindow if it does not.
func NewController(p Policy) *Controller {
	return &Controller{p: p, procs: p.Max}
}

// Procs is the current number of Ps.
func (c *Controller) Procs() int { return c.procs }

// Sample takes the CPU the process used over the last wall time and
// returns the number of Ps to run on.
func (c *Controller) Sample(cpu, wall time.Duration) int {
	if wall <= 0 || c.p.Max <= 1 {
		return c.procs
	}
	c.samples = append(c.samples, sample{cpu, wall})
	if c.procs == 1 {
		if cores, full := c.mean(c.p.RaiseWindow); full && cores > c.p.Raise {
			c.change(c.p.Max)
		}
	} else if cores, full := c.mean(c.p.LowerWindow); full && cores < c.p.Lower {
		c.change(1)
	}
	// Keep only what the longer window needs.
	var span time.Duration
	for i := len(c.samples) - 1; i >= 0; i-- {
		if span += c.samples[i].wall; span >= max(c.p.RaiseWindow, c.p.LowerWindow) {
			c.samples = append(c.samples[:0], c.samples[i:]...)
			break
		}
	}
	return c.procs
}

// mean is the CPU use, in cores, over the last window of samples, and
// whether the samples since the last change span the window.
func (c *Controller) mean(window time.Duration) (cores float64, full bool) {
	var cpu, wall time.Duration
	for i := len(c.samples) - 1; i >= 0 && wall < window; i-- {
		cpu += c.samples[i].cpu
		wall += c.samples[i].wall
	}
	return float64(cpu) / float64(wall), wall >= window
}

func (c *Controller) change(procs int) {
	c.procs = procs
	c.samples = c.samples[:0]
}

// Adapt runs the controller with DefaultPolicy over the runtime's
// GOMAXPROCS until ctx ends. It leaves GOMAXPROCS alone when the
// environment variable set it, and with one P there is nothing to adapt.
func Adapt(ctx context.Context, onChange func(procs int)) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	Run(ctx, DefaultPolicy(runtime.GOMAXPROCS(0)), CPUTime, onChange)
}

// Run samples the process's CPU time every interval and sets GOMAXPROCS
// as the controller decides, until ctx ends; then it gives back every P.
// cpuTime is the process's CPU time so far (user and system); onChange,
// if not nil, is told each change.
func Run(ctx context.Context, p Policy, cpuTime func() (time.Duration, error), onChange func(procs int)) {
	lastCPU, err := cpuTime()
	if err != nil || p.Max <= 1 {
		return
	}
	c := NewController(p)
	defer func() {
		if c.Procs() != p.Max {
			runtime.GOMAXPROCS(p.Max)
		}
	}()
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	lastWall := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu, err := cpuTime()
			if err != nil {
				return
			}
			before := c.Procs()
			if n := c.Sample(cpu-lastCPU, now.Sub(lastWall)); n != before {
				runtime.GOMAXPROCS(n)
				if onChange != nil {
					onChange(n)
				}
			}
			lastCPU, lastWall = cpu, now
		}
	}
}
