// Package app wires sluice together: the queue, the sinks with their
// runners, the Forward listener and the API. cmd/sluice runs one App; tests
// run several.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/api/tap"
	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/enrich"
	"github.com/sluicelog/sluice/enrich/kube"
	"github.com/sluicelog/sluice/ingest/balance"
	"github.com/sluicelog/sluice/ingest/forward"
	"github.com/sluicelog/sluice/ingest/httpin"
	"github.com/sluicelog/sluice/ingest/otlp"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/units"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/cloudwatch"
	"github.com/sluicelog/sluice/sinks/elasticsearch"
	"github.com/sluicelog/sluice/sinks/file"
	"github.com/sluicelog/sluice/sinks/firehose"
	"github.com/sluicelog/sluice/sinks/route"
	"github.com/sluicelog/sluice/sinks/s3"
	"github.com/sluicelog/sluice/sinks/transform"
)

// App is one running sluice.
type App struct {
	cfg *config.Config
	set component.Settings
	reg *prometheus.Registry
	// ingestReg holds the ingest listeners' metrics, which reg has too:
	// the replica announcements read them every few seconds without
	// running reg's costly collectors (JetStream requests, /proc reads).
	ingestReg *prometheus.Registry
	q         *queue.Queue
	sinks     []sinks.Sink
	runners   []*sinks.Runner
	forward   *forward.Server
	ingest    *httpin.Handler
	http      *httpin.Server
	otlp      *otlp.Receiver
	api       *api.Server
	wrap      func(name string, s sinks.Sink) sinks.Sink
	kube      *kube.Cache
	pods      enrich.Pods // for tests: pod metadata without a cluster
	byName    map[string]*sinks.Runner
	// hub hands live records to taps (/v1/tap).
	hub *tap.Hub
	// replicas announces this replica and lists the others; stopBalance
	// ends the balancing (nil when off).
	replicas    *queue.Replicas
	stopBalance func()
	// extraListeners report the listeners beside Forward for the status.
	extraListeners []func() api.ListenerStatus
	// stopping is set when Shutdown begins: readiness fails from then on so
	// that load balancers stop sending new connections.
	stopping atomic.Bool
}

// Option changes how an App is built.
type Option func(*App)

// WithSinkWrapper wraps every sink as it is built: tests use it to pause or
// fail a sink; it could also add instrumentation.
func WithSinkWrapper(wrap func(name string, s sinks.Sink) sinks.Sink) Option {
	return func(a *App) { a.wrap = wrap }
}

// New builds the pieces without starting them. cfg must be validated.
// set.Registerer is ignored: the app has its own registry, served at /metrics.
func New(cfg *config.Config, set component.Settings, opts ...Option) *App {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	set.Registerer = reg
	a := &App{cfg: cfg, set: set.Defaults(), reg: reg, ingestReg: prometheus.NewRegistry(),
		byName: make(map[string]*sinks.Runner)}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Start opens the queue, creates every sink's consumer (before any ingest,
// so that no message is published with nobody interested), starts the
// runners, then the listeners. On error everything started is stopped.
func (a *App) Start(ctx context.Context) (err error) {
	log := a.set.Logger
	defer func() {
		if err != nil {
			a.Kill()
		}
	}()
	if a.q, err = queue.Open(ctx, a.cfg.NATS, a.set); err != nil {
		return err
	}
	enrichment, err := a.startEnrichment(ctx)
	if err != nil {
		return err
	}
	a.hub = tap.NewHub(a.reg)
	tm := transform.NewMetrics(a.reg)
	global, err := transform.Compile(a.cfg.Transforms, "global", tm)
	if err != nil {
		return fmt.Errorf("transforms%w", err)
	}
	reshape := pipelineTransform(enrichment, global)
	for _, sc := range a.cfg.Sinks {
		sink, err := a.newSink(ctx, sc)
		if err != nil {
			return fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		if p, ok := sink.(preparer); ok {
			// Reach the destination now (an index template before the
			// first document); if it is down, the first write tries again.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := p.Prepare(pctx)
			cancel()
			if err != nil {
				a.set.Logger.Warn("sink destination not ready at start; writes will retry", "sink", sc.Name, "err", err)
			}
		}
		if a.wrap != nil {
			sink = a.wrap(sc.Name, sink)
		}
		a.sinks = append(a.sinks, sink)
		cons, err := a.q.Consumer(ctx, sc.Name, queue.ConsumerConfig{MaxAckPending: sc.MaxAckPending, AckWait: sc.AckWait})
		if err != nil {
			return err
		}
		stages, err := sinkStages(sc, reshape, global, tm)
		if err != nil {
			return err
		}
		rc := sinks.RunnerConfig{
			MaxRecords: sc.Batch.MaxRecords, MaxBytes: int(sc.Batch.MaxBytes), Linger: sc.Batch.Linger,
			Concurrency: sc.Concurrency, MaxAttempts: sc.Retry.MaxAttempts,
			BackoffMin: sc.Retry.BackoffMin, BackoffMax: sc.Retry.BackoffMax,
			WriteTimeout: sc.WriteTimeout, AckWait: sc.AckWait,
			PullMessages: min(64, sc.MaxAckPending),
			Observe:      a.observe(sc.Name),
			BufferBytes:  max(32<<20, 2*a.q.MaxMessageBytes()),
			Seen:         a.q.Seen(),
		}
		rc.GiveWay = giveWay(sc.GiveWay, a.q.Storing)
		rc.Transform, rc.MatchTag, rc.Keep, rc.Reshape, rc.Scrub = stages.Transform, stages.MatchTag, stages.Keep, stages.Reshape, stages.Scrub
		pull, err := a.q.NewPuller(cons)
		if err != nil {
			return err
		}
		r := sinks.NewRunner(sc.Name, sink, pull, a.q, rc, a.set)
		if err := r.Start(); err != nil {
			return err
		}
		a.runners = append(a.runners, r)
		a.byName[sc.Name] = r
	}
	pub := tappingPublisher{a.q, a.hub}
	a.forward = forward.New(a.cfg.Forward, pub, a.ingestSettings())
	if err := a.forward.Start(ctx); err != nil {
		return err
	}
	httpCfg := a.cfg.HTTP.Config
	// One entry above the queue's message size could never be stored.
	httpCfg.MaxRecordBytes = min(httpCfg.MaxRecordBytes, units.ByteSize(a.q.MaxMessageBytes()))
	tokens, err := a.cfg.HTTP.Auth.Load()
	if err != nil {
		return fmt.Errorf("http.auth.%w", err)
	}
	a.ingest = httpin.NewHandler(httpCfg, pub, a.ingestSettings())
	ingest := api.BearerAuth("http", api.NewTokens(tokens), api.AuthFailures(a.reg))(a.ingest)
	if httpCfg.Listen != httpin.ListenDisabled {
		a.http = httpin.NewServer(httpCfg, ingest, a.ingestSettings())
		if err := a.http.Start(ctx); err != nil {
			return err
		}
		a.extraListeners = append(a.extraListeners, func() api.ListenerStatus {
			return api.ListenerStatus{Name: "http", Addr: a.http.Addr().String()}
		})
	}
	if err := a.startOTLP(ctx, pub); err != nil {
		return err
	}
	if a.replicas, err = a.startReplicas(ctx); err != nil {
		return err
	}
	if b := a.cfg.Cluster.Balance; *b.Enabled {
		bctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			ls := []balance.Listener{{Name: "forward", Shedder: a.forward, Announced: func(r queue.Replica) int { return r.ForwardConnections }}}
			if a.http != nil {
				ls = append(ls, balance.Listener{Name: "http", Shedder: a.http, Announced: func(r queue.Replica) int { return r.HTTPConnections }})
			}
			if a.otlp != nil && a.otlp.HTTPAddr() != nil {
				ls = append(ls, balance.Listener{Name: otlp.ListenerHTTP, Shedder: a.otlp, Announced: func(r queue.Replica) int { return r.OTLPConnections }})
			}
			balance.Run(bctx, b, a.replicas, a.set.Logger, ls...)
		}()
		a.stopBalance = func() { cancel(); <-done }
	}
	names := make([]string, len(a.cfg.Sinks))
	for i, sc := range a.cfg.Sinks {
		names[i] = sc.Name
	}
	a.reg.MustRegister(queue.NewConsumerCollector(a.q, names))
	if a.api, err = api.New(a.cfg.API, api.Deps{
		Gatherer: a.reg,
		Checks: []api.Check{
			{Name: "jetstream", Check: a.q.Healthy},
			{Name: "listeners", Check: a.listenersReady},
		},
		Operator:  operator{a},
		Ingest:    ingest,
		Tap:       a.hub,
		TapStages: names,
	}, a.set); err != nil {
		return err
	}
	if err := a.api.Start(ctx); err != nil {
		return err
	}
	log.Info("sluice started", "config", a.cfg.Summary())
	return nil
}

// startOTLP starts the OTLP listeners that are on.
func (a *App) startOTLP(ctx context.Context, pub httpin.Publisher) error {
	cfg := a.cfg.OTLP.Config
	if cfg.HTTP.Listen == otlp.ListenDisabled && cfg.GRPC.Listen == otlp.ListenDisabled {
		return nil
	}
	// One record above the queue's message size could never be stored.
	cfg.MaxRecordBytes = min(cfg.MaxRecordBytes, units.ByteSize(a.q.MaxMessageBytes()))
	tokens, err := a.cfg.OTLP.Auth.Load()
	if err != nil {
		return fmt.Errorf("otlp.auth.%w", err)
	}
	a.otlp = otlp.New(cfg, tokens, pub, a.ingestSettings())
	if err := a.otlp.Start(ctx); err != nil {
		return err
	}
	for _, l := range []struct {
		name string
		addr net.Addr
	}{{otlp.ListenerHTTP, a.otlp.HTTPAddr()}, {otlp.ListenerGRPC, a.otlp.GRPCAddr()}} {
		if l.addr != nil {
			a.extraListeners = append(a.extraListeners, func() api.ListenerStatus {
				return api.ListenerStatus{Name: l.name, Addr: l.addr.String()}
			})
		}
	}
	return nil
}

// OTLPAddrs returns the OTLP/HTTP and OTLP/gRPC listeners' addresses (nil
// when off).
func (a *App) OTLPAddrs() (httpAddr, grpcAddr net.Addr) {
	if a.otlp == nil {
		return nil, nil
	}
	return a.otlp.HTTPAddr(), a.otlp.GRPCAddr()
}

// startReplicas announces this replica to the others sharing the
// JetStream: its connections, its ingest rate over the last interval, and
// whether it is draining.
func (a *App) startReplicas(ctx context.Context) (*queue.Replicas, error) {
	cfg := a.cfg.Cluster
	if cfg.ID == "" {
		// A pod's name is unique, but several replicas may share a host
		// outside Kubernetes: a random suffix keeps them apart.
		host, _ := os.Hostname()
		cfg.ID = queue.KeyFor(host) + "-" + strings.ToLower(nuid.Next()[16:])
	}
	var lastN float64
	lastT := a.set.Now()
	self := func() queue.Replica {
		n := a.ingestedRecords()
		now := a.set.Now()
		var rate float64
		if d := now.Sub(lastT).Seconds(); d > 0 {
			rate = (n - lastN) / d
		}
		lastN, lastT = n, now
		me := queue.Replica{Draining: a.stopping.Load(), RecordsPerSec: rate,
			ForwardConnections: a.forward.Connections()}
		if a.http != nil {
			me.HTTPConnections = a.http.Connections()
		}
		if a.otlp != nil {
			me.OTLPConnections = a.otlp.Connections()
		}
		return me
	}
	r, err := a.q.StartReplicas(ctx, cfg.ReplicasConfig, self, a.reg)
	if err != nil {
		return nil, err
	}
	a.set.Logger.Info("announced to the cluster", "replica", r.ID(), "replicas", len(r.List()))
	return r, nil
}

// tappingPublisher offers each chunk to the ingest taps as it is stored.
type tappingPublisher struct {
	*queue.Queue
	hub *tap.Hub
}

func (p tappingPublisher) Publish(c *chunk.Chunk) (chunk.Pending, error) {
	p.hub.OfferChunk(tap.StageIngest, c)
	return p.Queue.Publish(c)
}

// observe offers a sink's batches to its taps.
func (a *App) observe(sink string) func([]sinks.Record) {
	return func(recs []sinks.Record) {
		a.hub.Offer(sink, len(recs), func(i int) (string, chunk.Entry) { return recs[i].Tag, recs[i].Entry })
	}
}

// giveWay is a sink runner's GiveWay for its give_way setting (defaults
// set), none when it is off.
func giveWay(g config.GiveWayConfig, storing func() bool) sinks.GiveWay {
	if g.Enabled == nil || !*g.Enabled {
		return sinks.GiveWay{}
	}
	return sinks.GiveWay{Busy: storing, Ratio: g.Ratio, MaxDelay: g.MaxDelay}
}

// sinkStages builds what a sink's runner applies to its records before the
// sink: the pipeline (enrichment, then the global transforms), the sink's
// match and condition, its own transforms, and the scrubbing of dead
// letters. The server and the config tests (RunTests) use it alike.
func sinkStages(sc config.SinkConfig, pipeline sinks.Transform, global *transform.Pipeline, tm *transform.Metrics) (sinks.RunnerConfig, error) {
	var rc sinks.RunnerConfig
	match, err := route.Compile(sc.Match)
	if err != nil {
		return rc, fmt.Errorf("sink %s: match: %w", sc.Name, err)
	}
	own, err := transform.Compile(sc.Transforms, sc.Name, tm)
	if err != nil {
		return rc, fmt.Errorf("sinks: %s: transforms%w", sc.Name, err)
	}
	if global.Redacts() || own.Redacts() {
		// Dead letters keep the record as it came in: with every redact
		// rule applied to every string, so no secret survives.
		rc.Scrub = func(dst []byte, e chunk.Entry) []byte { return transform.ScrubEntry(dst, e, global, own) }
	}
	if sc.Condition != "" {
		cond, err := route.CompileCondition(sc.Condition)
		if err != nil {
			return rc, fmt.Errorf("sink %s: condition: %w", sc.Name, err)
		}
		rc.Keep = cond.Eval
	}
	rc.Transform, rc.MatchTag, rc.Reshape = pipeline, match.Match, pipelineTransform(nil, own)
	return rc, nil
}

// preparer is a sink with work to do before its first write.
type preparer interface {
	Prepare(ctx context.Context) error
}

func (a *App) newSink(ctx context.Context, sc config.SinkConfig) (sinks.Sink, error) {
	switch {
	case sc.File != nil:
		return file.New(*sc.File, sc.Name, a.set.Logger, a.set.Now)
	case sc.Elasticsearch != nil:
		return elasticsearch.New(ctx, *sc.Elasticsearch, sc.Name, a.set)
	case sc.CloudWatch != nil:
		return cloudwatch.New(ctx, *sc.CloudWatch, sc.Name, a.set)
	case sc.Firehose != nil:
		return firehose.New(ctx, *sc.Firehose, sc.Name, a.set)
	case sc.S3 != nil:
		return s3.New(ctx, *sc.S3, sc.Name, a.set)
	}
	return nil, errors.New("no destination configured")
}

// WithPods makes the app enrich with these pods instead of a cluster's.
func WithPods(p enrich.Pods) Option { return func(a *App) { a.pods = p } }

// startEnrichment builds the enricher: with the Kubernetes cache when a
// cluster is configured or found, and returns the sinks' transform, or nil
// when enrichment is off.
func (a *App) startEnrichment(ctx context.Context) (sinks.Transform, error) {
	ec := a.cfg.Enrich
	if ec.Enabled != nil && !*ec.Enabled {
		return nil, nil
	}
	pods := a.pods
	if pods == nil && (ec.Kubernetes.Enabled == nil || *ec.Kubernetes.Enabled) {
		client, err := kube.NewClient(ec.Kubernetes)
		switch {
		case errors.Is(err, kube.ErrNoCluster) && ec.Kubernetes.Enabled == nil:
			a.set.Logger.Info("no Kubernetes cluster found: records are not enriched with pod metadata")
		case err != nil:
			return nil, fmt.Errorf("enrich.kubernetes: %w", err)
		default:
			a.kube = kube.New(ec.Kubernetes, client, a.set)
			if err := a.kube.Start(ctx); err != nil {
				return nil, fmt.Errorf("enrich.kubernetes: %w", err)
			}
			pods = a.kube
		}
	}
	if pods == nil && ec.Enabled == nil {
		return nil, nil // auto: no cluster, no enrichment
	}
	enr, err := enrich.New(ec, pods, a.set)
	if err != nil {
		return nil, fmt.Errorf("enrich: %w", err)
	}
	return func(ctx context.Context, dst []byte, rec *sinks.Record) ([]byte, bool) {
		out, res, err := enr.Enrich(ctx, dst, rec.Tag, rec.Record)
		if err != nil {
			return append(dst, rec.Record...), true
		}
		if res.Drop {
			return dst, false
		}
		if res.HasTime {
			rec.Sec, rec.Nsec = res.Time.Unix(), int32(res.Time.Nanosecond())
		}
		return out, true
	}, nil
}

// pipelineTransform runs enrichment (may be nil), then the pipeline (may be
// empty), as one runner Transform; nil when there is neither.
func pipelineTransform(enrichment sinks.Transform, p *transform.Pipeline) sinks.Transform {
	if p.Len() == 0 {
		return enrichment
	}
	if enrichment == nil {
		return func(_ context.Context, dst []byte, rec *sinks.Record) ([]byte, bool) {
			return p.Apply(dst, rec.Tag, rec.Record)
		}
	}
	bufs := sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
	return func(ctx context.Context, dst []byte, rec *sinks.Record) ([]byte, bool) {
		buf := bufs.Get().(*[]byte)
		defer bufs.Put(buf)
		enriched, keep := enrichment(ctx, (*buf)[:0], rec)
		*buf = enriched
		if !keep {
			return dst, false
		}
		return p.Apply(dst, rec.Tag, enriched)
	}
}

// ReplayDeadLetters writes up to max of a sink's dead letters to it again.
func (a *App) ReplayDeadLetters(ctx context.Context, sink string, max int) (int, error) {
	r, ok := a.byName[sink]
	if !ok {
		return 0, fmt.Errorf("no sink named %q", sink)
	}
	return r.ReplayDeadLetters(ctx, a.q, max)
}

// RewindSink makes a sink deliver again from a stream sequence.
func (a *App) RewindSink(ctx context.Context, sink string, seq uint64) (uint64, error) {
	if _, ok := a.byName[sink]; !ok {
		return 0, fmt.Errorf("no sink named %q", sink)
	}
	return a.q.Rewind(ctx, sink, seq)
}

// RewindSinkToTime makes a sink deliver again from the first message stored
// at or after t.
func (a *App) RewindSinkToTime(ctx context.Context, sink string, t time.Time) (uint64, error) {
	seq, err := a.q.SeqAt(ctx, t)
	if err != nil {
		return 0, err
	}
	return a.RewindSink(ctx, sink, seq)
}

// ForwardAddr is the bound Forward listener address.
func (a *App) ForwardAddr() net.Addr { return a.forward.Addr() }

// listenersReady fails once shutdown began.
func (a *App) listenersReady() error {
	if a.stopping.Load() {
		return errors.New("shutting down: listeners stop accepting")
	}
	return nil
}

// HTTPAddr is the bound HTTP ingest address, nil when it is off.
func (a *App) HTTPAddr() net.Addr {
	if a.http == nil {
		return nil
	}
	return a.http.Addr()
}

// APIAddr is the bound API address.
func (a *App) APIAddr() net.Addr { return a.api.Addr() }

// Registry is the app's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Queue is the app's queue.
func (a *App) Queue() *queue.Queue { return a.q }

// Shutdown stops in order: the listeners (Forward, HTTP ingest, the API)
// stop accepting and finish what is in flight (stored and acknowledged), the
// sinks' runners write and acknowledge what they hold, the sinks close, then
// JetStream.
// Each step gets what is left of ctx; errors are joined.
func (a *App) Shutdown(ctx context.Context) error {
	a.stopping.Store(true)
	var errs []error
	if a.stopBalance != nil {
		a.stopBalance()
	}
	if a.replicas != nil {
		// Tell the others at once that this replica is draining.
		if err := a.replicas.Announce(ctx); err != nil {
			a.set.Logger.Warn("could not announce draining", "err", err)
		}
	}
	if a.forward != nil {
		errs = append(errs, a.forward.Shutdown(ctx))
	}
	if a.http != nil {
		errs = append(errs, a.http.Shutdown(ctx))
	}
	if a.otlp != nil {
		errs = append(errs, a.otlp.Shutdown(ctx))
	}
	if a.api != nil {
		// The API also serves ingest: it stops with the listeners.
		errs = append(errs, a.api.Shutdown(ctx))
	}
	for _, r := range a.runners {
		errs = append(errs, r.Shutdown(ctx))
	}
	for _, s := range a.sinks {
		errs = append(errs, s.Close(ctx))
	}
	if a.ingest != nil {
		a.ingest.Close()
	}
	if a.kube != nil {
		a.kube.Stop()
	}
	if a.replicas != nil {
		// Leaving is a courtesy: a key left behind expires after the TTL,
		// as a crashed replica's does. A JetStream electing a leader for
		// the bucket (a node lost) must not make the shutdown fail.
		if err := a.replicas.Close(ctx); err != nil {
			a.set.Logger.Warn("could not leave the replicas; the others drop this one after the ttl", "err", err, "ttl", a.cfg.Cluster.TTL)
		}
	}
	if a.q != nil {
		a.q.Close()
	}
	a.set.Logger.Info("sluice stopped")
	return errors.Join(errs...)
}

// Kill stops everything at once without draining, as a crash would: nothing
// in flight is acknowledged, nothing pulled is written.
func (a *App) Kill() {
	if a.stopBalance != nil {
		a.stopBalance()
	}
	if a.forward != nil {
		a.forward.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if a.http != nil {
		_ = a.http.Shutdown(ctx)
	}
	if a.otlp != nil {
		_ = a.otlp.Shutdown(ctx)
	}
	for _, r := range a.runners {
		_ = r.Shutdown(ctx)
	}
	for _, s := range a.sinks {
		_ = s.Close(ctx)
	}
	if a.api != nil {
		_ = a.api.Shutdown(ctx)
	}
	if a.kube != nil {
		a.kube.Stop()
	}
	if a.replicas != nil {
		a.replicas.Stop()
	}
	if a.q != nil {
		a.q.Close()
	}
}

// ingestSettings are the settings of an ingest listener: its metrics go to
// both registries.
func (a *App) ingestSettings() component.Settings {
	set := a.set
	set.Registerer = teeRegisterer{a.reg, a.ingestReg}
	return set
}

// ingestedRecords is the number of records every listener has stored.
func (a *App) ingestedRecords() float64 {
	mfs, _ := a.ingestReg.Gather()
	var n float64
	for _, l := range []string{"forward", "http", otlp.ListenerHTTP, otlp.ListenerGRPC} {
		n += listenerValue(mfs, "sluice_ingest_records_total", l)
	}
	return n
}

// teeRegisterer registers every collector with both registries.
type teeRegisterer struct{ a, b prometheus.Registerer }

func (t teeRegisterer) Register(c prometheus.Collector) error {
	if err := t.a.Register(c); err != nil {
		return err
	}
	if err := t.b.Register(c); err != nil {
		t.a.Unregister(c)
		return err
	}
	return nil
}

func (t teeRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t teeRegisterer) Unregister(c prometheus.Collector) bool {
	b := t.b.Unregister(c)
	return t.a.Unregister(c) || b
}

// listenerMetric reads the value of a metric with the given listener label.
func listenerMetric(g prometheus.Gatherer, name, listener string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	return listenerValue(mfs, name, listener)
}

// listenerValue finds the value of a metric with the given listener label
// among gathered families.
func listenerValue(mfs []*dto.MetricFamily, name, listener string) float64 {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "listener" && l.GetValue() == listener {
					if m.Gauge != nil {
						return m.Gauge.GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// NewLogger builds the process logger from the log configuration.
func NewLogger(c config.LogConfig, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
