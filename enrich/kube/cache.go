// Package kube keeps the Kubernetes metadata enrichment needs: a cache of
// trimmed pods fed by client-go shared informers that watch pods (and, if
// asked, namespaces) cluster-wide. A pod the informers have not delivered
// yet (created a moment ago) costs one rate-limited GET; pods the API
// server does not know are remembered for a while; deleted pods stay for a
// grace period, because their last logs arrive after the deletion.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/sluicelog/sluice/internal/component"
)

// maxMisses bounds the negative cache and the cache of fetched pods; past
// it expired entries are swept, and if none expired the map starts over.
const maxMisses = 1 << 16

// fetchedTTL is how long a pod found by a GET is served while the
// informer has not delivered it (normally it does within a second).
const fetchedTTL = time.Minute

type podKey struct{ namespace, name string }

type fetchedPod struct {
	pod     *Pod
	expires time.Time
}

type deletion struct {
	key podKey
	pod *Pod
}

// Cache is the pod metadata cache. Pod is safe for concurrent use and
// never blocks on the API server beyond its ctx.
type Cache struct {
	cfg    Config
	client rest.Interface // core/v1
	log    *slog.Logger
	now    func() time.Time
	trim   *trimmer

	limiter *rate.Limiter
	gets    singleflight.Group

	pods podIndex // live pods and deleted ones within DeletedGrace; written under mu

	mu       sync.RWMutex
	deleted  []deletion // in deletion order, for expiry
	fetched  map[podKey]fetchedPod
	negative map[podKey]time.Time // expiry
	nsLabels map[string]map[string]string

	startOnce sync.Once
	stopOnce  sync.Once
	podInf    cache.SharedIndexInformer
	cancel    context.CancelFunc
	running   sync.WaitGroup // the informers and the sweeper

	m metrics
}

type metrics struct {
	hit, deleted, missGet, missNegative, missLimited, missError, notFound *stripedCounter
	getFound, getNotFound, getError                                       prometheus.Counter
}

// stripedCounter counts lookups; read by the lookups collector at scrape.
type stripedCounter struct{ n atomic.Uint64 }

// Inc adds one.
func (s *stripedCounter) Inc() { s.n.Add(1) }

// Value returns the count.
func (s *stripedCounter) Value() uint64 { return s.n.Load() }

// lookupsCollector exports sluice_enrich_cache_lookups_total{result}.
type lookupsCollector struct {
	desc    *prometheus.Desc
	results []string
	counts  []*stripedCounter
}

func (l *lookupsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *lookupsCollector) Collect(ch chan<- prometheus.Metric) {
	for i, r := range l.results {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.CounterValue, float64(l.counts[i].Value()), r)
	}
}

// New returns a cache over client, a core/v1 REST client (NewClient); call
// Start to fill it. cfg should have had SetDefaults. Metrics are
// registered on set.Registerer.
func New(cfg Config, client rest.Interface, set component.Settings) *Cache {
	set = set.Defaults()
	c := &Cache{
		cfg:      cfg,
		client:   client,
		log:      set.Logger.With("component", "kube"),
		now:      set.Now,
		trim:     &trimmer{labels: on(cfg.Labels, true), annotations: on(cfg.Annotations, true), in: newInterner()},
		limiter:  rate.NewLimiter(rate.Limit(cfg.MissQPS), cfg.MissBurst),
		fetched:  make(map[podKey]fetchedPod),
		negative: make(map[podKey]time.Time),
		nsLabels: make(map[string]map[string]string),
	}
	c.m = metrics{hit: new(stripedCounter), deleted: new(stripedCounter), missGet: new(stripedCounter),
		missNegative: new(stripedCounter), missLimited: new(stripedCounter), missError: new(stripedCounter), notFound: new(stripedCounter)}
	lookups := &lookupsCollector{
		desc: prometheus.NewDesc("sluice_enrich_cache_lookups_total",
			"Pod metadata lookups by result: hit, deleted (a deleted pod within its grace period), miss_get (found by a GET), "+
				"not_found (a GET said the pod does not exist), miss_negative (known not to exist), miss_limited (no GET allowed right now), "+
				"miss_error (the GET failed or the caller's ctx ended).", []string{"result"}, nil),
		results: []string{"hit", "deleted", "miss_get", "miss_negative", "miss_limited", "miss_error", "not_found"},
		counts:  []*stripedCounter{c.m.hit, c.m.deleted, c.m.missGet, c.m.missNegative, c.m.missLimited, c.m.missError, c.m.notFound},
	}
	gets := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_enrich_api_gets_total",
		Help: "GETs of single pods made on cache misses, by result (found, not_found, error)."}, []string{"result"})
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_enrich_cache_pods",
		Help: "Pods in the metadata cache, including deleted pods within their grace period."},
		func() float64 { return float64(c.pods.len()) })
	set.Registerer.MustRegister(lookups, gets, size)
	c.m.getFound, c.m.getNotFound, c.m.getError = gets.WithLabelValues("found"), gets.WithLabelValues("not_found"), gets.WithLabelValues("error")
	return c
}

// Start starts the informers (namespaces first when NamespaceLabels, then
// pods) and waits up to SyncTimeout, or until ctx ends, for their initial
// lists. On an error the informers keep trying in the background and Pod
// works (with GETs on misses); Stop ends them. Start is called once.
func (c *Cache) Start(ctx context.Context) error {
	err := errors.New("kube: cache already started")
	c.startOnce.Do(func() { err = c.start(ctx) })
	return err
}

func (c *Cache) start(ctx context.Context) error {
	// The informers outlive ctx (it only bounds the start); their logs go
	// to our logger.
	runCtx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), logr.FromSlogHandler(c.log.Handler())))
	c.cancel = cancel
	c.running.Go(func() { c.sweeper(runCtx) })

	wait, cancelWait := context.WithTimeout(ctx, c.cfg.SyncTimeout)
	defer cancelWait()
	if c.cfg.NamespaceLabels {
		_, synced, err := c.informer(runCtx, "namespaces", &corev1.Namespace{}, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.namespaceChanged(obj, false) },
			UpdateFunc: func(_, obj any) { c.namespaceChanged(obj, false) },
			DeleteFunc: func(obj any) { c.namespaceChanged(obj, true) },
		})
		if err != nil {
			return err
		}
		// Namespaces before pods, so that pods arrive with their namespace labels.
		if !cache.WaitForCacheSync(wait.Done(), synced) {
			return fmt.Errorf("kube: the initial list of namespaces did not complete within %v", c.cfg.SyncTimeout)
		}
	}
	inf, synced, err := c.informer(runCtx, "pods", &corev1.Pod{}, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.podChanged,
		UpdateFunc: func(_, obj any) { c.podChanged(obj) },
		DeleteFunc: c.podDeleted,
	})
	if err != nil {
		return err
	}
	c.podInf = inf
	if !cache.WaitForCacheSync(wait.Done(), synced) {
		return fmt.Errorf("kube: the initial list of pods did not complete within %v", c.cfg.SyncTimeout)
	}
	c.log.Info("pod metadata cache synced", "pods", c.pods.len())
	return nil
}

// informer starts an informer on every object of a core/v1 resource, in
// all namespaces, whose store holds only what the trimmer keeps. synced
// reports when h has been given every object of the initial list (the
// store having them is not enough: a lookup reads what h built).
func (c *Cache) informer(ctx context.Context, resource string, example runtime.Object, h cache.ResourceEventHandler) (inf cache.SharedIndexInformer, synced func() bool, err error) {
	lw := cache.NewListWatchFromClient(c.client, resource, "", fields.Everything())
	inf = cache.NewSharedIndexInformerWithOptions(lw, example, cache.SharedIndexInformerOptions{})
	if err := inf.SetTransform(c.trim.transform); err != nil {
		return nil, nil, fmt.Errorf("kube: %s informer: %w", resource, err)
	}
	reg, err := inf.AddEventHandler(h)
	if err != nil {
		return nil, nil, fmt.Errorf("kube: %s informer: %w", resource, err)
	}
	c.running.Go(func() { inf.RunWithContext(ctx) })
	return inf, reg.HasSynced, nil
}

// Stop stops the informers and waits for their goroutines. It is
// idempotent; Pod keeps answering from what is cached.
func (c *Cache) Stop() {
	c.stopOnce.Do(func() {
		c.startOnce.Do(func() {}) // a later Start does nothing
		if c.cancel == nil {
			return
		}
		c.cancel()
		c.running.Wait()
	})
}

// Pod returns the pod's metadata. On a miss it does one rate-limited GET
// (bounded by ctx; when no token is available right away it returns false
// without waiting); a pod the API server does not know is remembered for
// NegativeTTL. Deleted pods are returned, with Deleted set, until
// DeletedGrace after their deletion. The *Pod is shared and read-only.
func (c *Cache) Pod(ctx context.Context, namespace, name string) (*Pod, bool) {
	k := podKey{namespace, name}
	if p := c.pods.load(k); p != nil {
		if p.Deleted.IsZero() {
			c.m.hit.Inc()
			return p, true
		}
		if c.now().Sub(p.Deleted) < c.cfg.DeletedGrace {
			c.m.deleted.Inc()
			return p, true
		}
		c.sweepDeleted()
	}
	return c.miss(ctx, k)
}

type getResult struct {
	pod              *Pod
	limited, missing bool
	err              error
}

func (c *Cache) miss(ctx context.Context, k podKey) (*Pod, bool) {
	// A slow API server must not hold up the caller for long.
	ctx, cancel := context.WithTimeout(ctx, c.cfg.GetTimeout)
	defer cancel()
	now := c.now()
	c.mu.RLock()
	f, isFetched := c.fetched[k]
	exp, isNegative := c.negative[k]
	c.mu.RUnlock()
	if isFetched && now.Before(f.expires) {
		c.m.hit.Inc()
		return f.pod, true
	}
	if isNegative && now.Before(exp) {
		c.m.missNegative.Inc()
		return nil, false
	}
	// Concurrent misses of one pod share one GET; each waits only as long
	// as its own ctx allows.
	ch := c.gets.DoChan(k.namespace+"/"+k.name, func() (any, error) { return c.get(ctx, k), nil })
	var r getResult
	select {
	case res := <-ch:
		r = res.Val.(getResult)
	case <-ctx.Done():
		c.m.missError.Inc()
		return nil, false
	}
	switch {
	case r.limited:
		c.m.missLimited.Inc()
	case r.missing:
		c.m.notFound.Inc()
	case r.err != nil:
		c.m.missError.Inc()
	default:
		c.m.missGet.Inc()
		return r.pod, true
	}
	return nil, false
}

// get fetches one pod, within the miss rate limit.
func (c *Cache) get(ctx context.Context, k podKey) getResult {
	if !c.limiter.Allow() {
		return getResult{limited: true}
	}
	p := new(corev1.Pod)
	err := c.client.Get().Namespace(k.namespace).Resource("pods").Name(k.name).Do(ctx).Into(p)
	now := c.now()
	switch {
	case apierrors.IsNotFound(err):
		c.m.getNotFound.Inc()
		c.mu.Lock()
		if len(c.negative) >= maxMisses {
			c.sweepMissesLocked(now)
		}
		c.negative[k] = now.Add(c.cfg.NegativeTTL)
		c.mu.Unlock()
		return getResult{missing: true}
	case err != nil:
		c.m.getError.Inc()
		c.log.Debug("pod get failed", "namespace", k.namespace, "pod", k.name, "error", err)
		return getResult{err: err}
	}
	c.m.getFound.Inc()
	pod := c.trim.pod(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.pods.load(k); cur != nil && cur.UID == pod.UID {
		return getResult{pod: cur} // the informer was quicker
	}
	if c.cfg.NamespaceLabels {
		pod.NamespaceLabels = c.nsLabels[pod.Namespace]
	}
	if len(c.fetched) >= maxMisses {
		c.sweepMissesLocked(now)
	}
	c.fetched[k] = fetchedPod{pod: pod, expires: now.Add(fetchedTTL)}
	delete(c.negative, k)
	return getResult{pod: pod}
}

// podChanged handles an added or updated pod.
func (c *Cache) podChanged(obj any) {
	o, ok := obj.(*object)
	if !ok {
		c.log.Warn("pod informer delivered an unexpected object", "type", fmt.Sprintf("%T", obj))
		return
	}
	p := o.pod
	k := podKey{p.Namespace, p.Name}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.NamespaceLabels {
		// p is not shared yet (the informer's store only reads its name).
		p.NamespaceLabels = c.nsLabels[p.Namespace]
	}
	c.pods.store(k, p)
	delete(c.fetched, k)
	delete(c.negative, k)
}

// podDeleted moves a deleted pod to the deleted state for DeletedGrace.
func (c *Cache) podDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(*object)
	if !ok {
		c.log.Warn("pod informer delivered an unexpected deleted object", "type", fmt.Sprintf("%T", obj))
		return
	}
	k := podKey{o.pod.Namespace, o.pod.Name}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.pods.load(k)
	if cur == nil {
		cur = o.pod
	}
	if !cur.Deleted.IsZero() {
		return
	}
	d := *cur
	d.Deleted = now
	c.pods.store(k, &d)
	c.deleted = append(c.deleted, deletion{key: k, pod: &d})
	delete(c.fetched, k)
}

// namespaceChanged keeps the namespace labels and hands out new pods
// when they change.
func (c *Cache) namespaceChanged(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if deleted {
		delete(c.nsLabels, ns.Name)
		return // its pods keep the labels they had
	}
	old, known := c.nsLabels[ns.Name]
	if known && maps.Equal(old, ns.Labels) {
		return
	}
	c.nsLabels[ns.Name] = ns.Labels
	if !known && c.pods.len() == 0 {
		return
	}
	c.pods.m.Range(func(k, v any) bool {
		if k := k.(podKey); k.namespace == ns.Name {
			cp := *v.(*Pod)
			cp.NamespaceLabels = ns.Labels
			c.pods.store(k, &cp)
		}
		return true
	})
}

// sweeper expires deleted pods and old misses periodically.
func (c *Cache) sweeper(ctx context.Context) {
	period := min(c.cfg.DeletedGrace, c.cfg.NegativeTTL, fetchedTTL) / 2
	period = max(period, 10*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweepDeleted()
			c.mu.Lock()
			c.sweepMissesLocked(c.now())
			c.mu.Unlock()
		}
	}
}

// sweepDeleted drops the deleted pods whose grace period is over.
func (c *Cache) sweepDeleted() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, d := range c.deleted {
		if now.Sub(d.pod.Deleted) < c.cfg.DeletedGrace {
			break
		}
		if c.pods.load(d.key) == d.pod {
			c.pods.remove(d.key)
		}
		n++
	}
	if n > 0 {
		clear(c.deleted[:n])
		c.deleted = c.deleted[n:]
	}
}

// sweepMissesLocked drops expired negative and fetched entries; maps still
// at their bound start over.
func (c *Cache) sweepMissesLocked(now time.Time) {
	for k, exp := range c.negative {
		if !now.Before(exp) {
			delete(c.negative, k)
		}
	}
	for k, f := range c.fetched {
		if !now.Before(f.expires) {
			delete(c.fetched, k)
		}
	}
	if len(c.negative) >= maxMisses {
		clear(c.negative)
	}
	if len(c.fetched) >= maxMisses {
		clear(c.fetched)
	}
}

// podIndex maps namespace and name to a pod. Reads take no lock (a lookup
// is on every record's path, from many goroutines); writes are serialised
// by the cache's mutex.
type podIndex struct {
	m sync.Map // podKey -> *Pod
	n atomic.Int64
}

func (x *podIndex) load(k podKey) *Pod {
	if v, ok := x.m.Load(k); ok {
		return v.(*Pod)
	}
	return nil
}

func (x *podIndex) store(k podKey, p *Pod) {
	if _, loaded := x.m.Swap(k, p); !loaded {
		x.n.Add(1)
	}
}

func (x *podIndex) remove(k podKey) {
	if _, loaded := x.m.LoadAndDelete(k); loaded {
		x.n.Add(-1)
	}
}

func (x *podIndex) len() int { return int(x.n.Load()) }
