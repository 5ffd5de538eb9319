package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ReplicasConfig configures how replicas announce themselves to each other.
type ReplicasConfig struct {
	// ID names this replica; empty takes the host name (a pod's name).
	ID string `yaml:"id"`
	// Bucket is the JetStream key-value bucket of the announcements.
	Bucket string `yaml:"bucket"`
	// AnnounceInterval is how often a replica announces itself.
	AnnounceInterval time.Duration `yaml:"announce_interval"`
	// TTL is how long a replica that stopped announcing stays listed.
	TTL time.Duration `yaml:"ttl"`
}

// SetDefaults fills zero values.
func (c *ReplicasConfig) SetDefaults() {
	if c.Bucket == "" {
		c.Bucket = "sluice_replicas"
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = 2 * time.Second
	}
	if c.TTL == 0 {
		c.TTL = 10 * time.Second
	}
}

// Validate reports the first unusable field, with its YAML name.
func (c ReplicasConfig) Validate() error {
	switch {
	case c.ID != "" && !validKey(c.ID):
		return fmt.Errorf("id: %q may hold only letters, digits, '-', '_' and '='", c.ID)
	case c.AnnounceInterval < 100*time.Millisecond:
		return errors.New("announce_interval: must be at least 100ms")
	case c.TTL < 2*c.AnnounceInterval:
		return fmt.Errorf("ttl: must be at least twice announce_interval (%s), or one late announcement drops a live replica", c.AnnounceInterval)
	}
	return nil
}

// validKey reports whether s can be a key of the bucket on its own (one
// subject token).
func validKey(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=") == ""
}

// KeyFor turns a host name into a replica id: characters a key cannot hold
// become '_'.
func KeyFor(host string) string {
	b := []byte(host)
	for i, c := range b {
		if !validKey(string(c)) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "replica"
	}
	return string(b)
}

// Replica is what a replica announces about itself.
type Replica struct {
	ID                 string `json:"id"`
	ForwardConnections int    `json:"forward_connections"`
	HTTPConnections    int    `json:"http_connections"`
	// OTLPConnections are OTLP/HTTP's; gRPC clients spread by
	// otlp.grpc.max_connection_age instead.
	OTLPConnections int       `json:"otlp_connections"`
	RecordsPerSec   float64   `json:"records_per_sec"`
	Draining        bool      `json:"draining"`
	Announced       time.Time `json:"announced"`
}

// Replicas announces this replica in a key-value bucket (one key per
// replica, rewritten every AnnounceInterval, dropped by the bucket after
// TTL) and keeps a view of every replica's latest announcement from a watch
// on the bucket. A replica that stops announcing leaves the view once its
// announcement is older than TTL, also if the bucket's expiry has not
// reached it yet; one that shuts down deletes its key and leaves at once.
type Replicas struct {
	cfg   ReplicasConfig
	kv    jetstream.KeyValue
	self  func() Replica
	now   func() time.Time
	gauge prometheus.Gauge

	mu   sync.Mutex
	view map[string]Replica

	cancel context.CancelFunc
	done   chan struct{}
}

// StartReplicas creates (or binds to) the bucket, announces this replica
// once, and keeps announcing what self reports until Close. self is called
// from the announcing goroutine; its ID and Announced are filled in.
func (q *Queue) StartReplicas(ctx context.Context, cfg ReplicasConfig, self func() Replica, reg prometheus.Registerer) (*Replicas, error) {
	var kv jetstream.KeyValue
	err := attempts(ctx, streamRequestTimeout, func(ctx context.Context) (err error) {
		kv, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "sluice replicas: one announcement per replica",
			History:     1,
			TTL:         cfg.TTL,
			Storage:     jetstream.MemoryStorage,
			Replicas:    q.cfg.Stream.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: replicas bucket %s: %w", cfg.Bucket, err)
	}
	r := &Replicas{cfg: cfg, kv: kv, self: self, now: time.Now, view: map[string]Replica{}, done: make(chan struct{}),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_cluster_replicas",
			Help: "Replicas that announced themselves within the TTL, this one included."})}
	if err := reg.Register(r.gauge); err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: watch replicas: %w", err)
	}
	if err := r.announce(ctx); err != nil {
		w.Stop()
		return nil, err
	}
	run, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.loop(run, w)
	return r, nil
}

func (r *Replicas) loop(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(r.done)
	defer w.Stop()
	t := time.NewTicker(r.cfg.AnnounceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				r.apply(e)
			}
		case <-t.C:
			actx, cancel := context.WithTimeout(ctx, r.cfg.AnnounceInterval)
			_ = r.announce(actx) // a failed announcement is retried next tick; the TTL allows for it
			cancel()
		}
	}
}

// announce writes this replica's state under its key.
func (r *Replicas) announce(ctx context.Context) error {
	me := r.self()
	me.ID, me.Announced = r.cfg.ID, r.now().UTC()
	b, err := json.Marshal(me)
	if err != nil {
		return err
	}
	if _, err := r.kv.Put(ctx, r.cfg.ID, b); err != nil {
		return fmt.Errorf("queue: announce replica %s: %w", r.cfg.ID, err)
	}
	r.mu.Lock()
	r.view[me.ID] = me
	r.mu.Unlock()
	r.gauge.Set(float64(len(r.List())))
	return nil
}

// apply takes one update of the watch into the view.
func (r *Replicas) apply(e jetstream.KeyValueEntry) {
	defer func() { r.gauge.Set(float64(len(r.List()))) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(r.view, e.Key())
		return
	}
	var rep Replica
	if json.Unmarshal(e.Value(), &rep) != nil || rep.ID != e.Key() {
		return // not an announcement of ours
	}
	// Judge age by when JetStream stored it: replicas' clocks may differ.
	rep.Announced = e.Created()
	r.view[rep.ID] = rep
}

// List returns the replicas whose latest announcement is within the TTL,
// by id.
func (r *Replicas) List() []Replica {
	now := r.now()
	r.mu.Lock()
	out := make([]Replica, 0, len(r.view))
	for _, rep := range r.view {
		if now.Sub(rep.Announced) <= r.cfg.TTL {
			out = append(out, rep)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Replica) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ID is this replica's id.
func (r *Replicas) ID() string { return r.cfg.ID }

// Announce announces this replica now rather than at the next tick (when
// it starts draining, say).
func (r *Replicas) Announce(ctx context.Context) error { return r.announce(ctx) }

// Stop stops announcing and watching, and leaves the key to expire, as a
// crash would.
func (r *Replicas) Stop() {
	r.cancel()
	<-r.done
}

// Close stops announcing and deletes this replica's key, so that the
// others drop it at once.
func (r *Replicas) Close(ctx context.Context) error {
	r.Stop()
	err := r.kv.Delete(ctx, r.cfg.ID)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("queue: leave replicas: %w", err)
	}
	return nil
}
