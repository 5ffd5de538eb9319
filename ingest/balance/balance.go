// Package balance spreads long-lived ingest connections over the replicas
// that share a JetStream. A load balancer (a Kubernetes Service, an NLB)
// spreads only new connections, and forwarders keep theirs for hours, so
// replicas added by a scale-up would take no load. Each replica compares
// its own connections with the cluster's mean, from the replicas'
// announcements, and one with a surplus beyond a tolerance closes some of
// its connections between chunks, after their acks; the forwarders
// reconnect through the balancer and land wherever it sends them.
package balance

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"

	"github.com/sluicelog/sluice/queue"
)

// Config configures balancing.
type Config struct {
	// Enabled turns balancing on (the default).
	Enabled *bool `yaml:"enabled"`
	// Tolerance is how far above its fair share (the mean, rounded up) a
	// replica's connections may be, as a fraction of the mean, before it
	// sheds; MinSurplus is the least excess that counts, in connections.
	Tolerance  float64 `yaml:"tolerance"`
	MinSurplus int     `yaml:"min_surplus"`
	// Interval is how often a replica compares; keep it above the
	// announce interval, so that the counts reflect the last round.
	Interval time.Duration `yaml:"interval"`
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Enabled == nil {
		on := true
		c.Enabled = &on
	}
	if c.Tolerance == 0 {
		c.Tolerance = 0.2
	}
	if c.MinSurplus == 0 {
		c.MinSurplus = 1
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
}

// Validate reports the first unusable field, with its YAML name.
func (c Config) Validate() error {
	switch {
	case c.Tolerance < 0:
		return errors.New("tolerance: must not be negative")
	case c.MinSurplus < 1:
		return errors.New("min_surplus: must be at least 1")
	case c.Interval < 100*time.Millisecond:
		return errors.New("interval: must be at least 100ms")
	}
	return nil
}

// Surplus is how many connections a replica with mine of them should shed,
// given the connections of every replica taking part (its own included).
// Its fair share is the mean rounded up; it sheds the excess over that once
// the excess reaches the tolerance: tolerance times the mean, and at least
// min connections. With the defaults, 12 connections over three replicas
// settle at 4/4/4 and 13 at 5/4/4, never moving at the fair share.
func Surplus(mine int, counts []int, tolerance float64, min int) int {
	if len(counts) < 2 {
		return 0
	}
	sum := 0
	for _, n := range counts {
		sum += n
	}
	mean := float64(sum) / float64(len(counts))
	excess := mine - int(math.Ceil(mean))
	if excess <= 0 || float64(excess) < math.Max(tolerance*mean, float64(min)) {
		return 0
	}
	return excess
}

// Peers is the cluster as this replica sees it.
type Peers interface {
	ID() string
	List() []queue.Replica
}

// Shedder is a listener whose connections can be shed.
type Shedder interface {
	Connections() int
	Shed(n int, reason string) int
}

// Listener is one ingest listener that takes part: its connections and
// how to shed them, and the count each replica announced for it.
type Listener struct {
	Name string
	Shedder
	Announced func(queue.Replica) int
}

// Run compares every Interval until ctx ends, listener by listener, and
// sheds half the surplus (at least one connection) each round, so that the
// cluster converges over a few rounds instead of sending every surplus
// forwarder away at once. Replicas that are draining take no part; a
// draining replica does not shed (shutdown closes its connections anyway).
func Run(ctx context.Context, c Config, peers Peers, log *slog.Logger, listeners ...Listener) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reps := peers.List()
		me := false
		for _, r := range reps {
			if r.ID == peers.ID() {
				me = !r.Draining
			}
		}
		if !me {
			continue
		}
		for _, l := range listeners {
			mine := l.Connections()
			counts := []int{mine}
			for _, r := range reps {
				if r.ID != peers.ID() && !r.Draining {
					counts = append(counts, l.Announced(r))
				}
			}
			if surplus := Surplus(mine, counts, c.Tolerance, c.MinSurplus); surplus > 0 {
				n := l.Shed(max(1, surplus/2), "balance")
				log.Info("shedding connections to balance the cluster", "listener", l.Name, "connections", mine,
					"replicas", len(counts), "surplus", surplus, "shed", n)
			}
		}
	}
}
