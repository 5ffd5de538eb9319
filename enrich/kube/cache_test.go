package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicelog/sluice/internal/component"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

const (
	nginxImageID = "docker-pullable://nginx@sha256:0e61e3f5a3c4e5d6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0"
	nginxCID     = "containerd://b90a2e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testPod(ns, name, rv string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, UID: types.UID("uid-" + name), ResourceVersion: rv,
			Labels:      labels,
			Annotations: map[string]string{"fluentbit.io/parser": "nginx"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{}}}`)}}},
		},
		Spec: corev1.PodSpec{
			NodeName:       "node-1",
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1.36"}},
			Containers: []corev1.Container{{Name: "nginx", Image: "nginx:latest",
				Env: []corev1.EnvVar{{Name: "SECRET", Value: "hunter2"}}}},
		},
		Status: corev1.PodStatus{
			ContainerStatuses: []corev1.ContainerStatus{{Name: "nginx", Image: "docker.io/library/nginx:latest",
				ImageID: nginxImageID, ContainerID: nginxCID}},
		},
	}
}

type testEnv struct {
	cs    *fake.Clientset
	api   *apiServer
	cache *Cache
	clock *testClock
	reg   *prometheus.Registry
}

func start(t *testing.T, cfg Config, objs ...runtime.Object) *testEnv {
	t.Helper()
	return startOn(t, cfg, &apiServer{}, objs...)
}

// startOn is start on a given API server.
func startOn(t *testing.T, cfg Config, api *apiServer, objs ...runtime.Object) *testEnv {
	t.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{cs: fake.NewClientset(objs...), api: api, clock: newClock(), reg: prometheus.NewRegistry()}
	env.cache = New(cfg, startAPIServer(t, env.cs, api), component.Settings{Now: env.clock.Now, Registerer: env.reg})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.cache.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.cache.Stop)
	return env
}

// gets counts the GETs of single pods the client saw.
func (e *testEnv) gets() int {
	n := 0
	for _, a := range e.cs.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "pods" {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cached looks a pod up without allowing a GET: it reports only what the
// informers delivered.
func (e *testEnv) cached(ns, name string) *Pod {
	return e.cache.pods.load(podKey{ns, name})
}

func TestAddUpdateDelete(t *testing.T) {
	ctx := context.Background()
	env := start(t, Config{DeletedGrace: 200 * time.Millisecond},
		testPod("shop", "web-1", "1", map[string]string{"app": "web"}))

	p, ok := env.cache.Pod(ctx, "shop", "web-1")
	if !ok {
		t.Fatal("pod from the initial list not found")
	}
	if p.Name != "web-1" || p.Namespace != "shop" || p.UID != "uid-web-1" || p.Node != "node-1" || !p.Deleted.IsZero() {
		t.Fatalf("pod = %+v", p)
	}
	if p.Labels["app"] != "web" || p.Annotations["fluentbit.io/parser"] != "nginx" {
		t.Fatalf("labels %v annotations %v", p.Labels, p.Annotations)
	}
	want := []Container{
		{Name: "nginx", Image: "docker.io/library/nginx:latest", ImageID: nginxImageID, ContainerID: nginxCID},
		{Name: "init", Image: "busybox:1.36"},
	}
	if len(p.Containers) != len(want) || p.Containers[0] != want[0] || p.Containers[1] != want[1] {
		t.Fatalf("containers = %+v, want %+v", p.Containers, want)
	}
	if h := p.Containers[0].Hash(); h != nginxImageID[strings.LastIndex(nginxImageID, ":")+1:] {
		t.Fatalf("hash = %q", h)
	}

	// Added after the start.
	if _, err := env.cs.CoreV1().Pods("shop").Create(ctx, testPod("shop", "web-2", "2", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the added pod", func() bool { return env.cached("shop", "web-2") != nil })
	if p, ok := env.cache.Pod(ctx, "shop", "web-2"); !ok || p.Labels != nil {
		t.Fatalf("added pod: %+v, %v", p, ok)
	}

	// Updated labels.
	upd := testPod("shop", "web-1", "3", map[string]string{"app": "web", "version": "2"})
	if _, err := env.cs.CoreV1().Pods("shop").Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the updated labels", func() bool {
		p, ok := env.cache.Pod(ctx, "shop", "web-1")
		return ok && p.Labels["version"] == "2"
	})
	if p.Labels["version"] != "" {
		t.Fatal("an update changed a *Pod already handed out")
	}

	// Deleted: still there within the grace period, gone after it.
	if err := env.cs.CoreV1().Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deletion", func() bool {
		p := env.cached("shop", "web-1")
		return p != nil && !p.Deleted.IsZero()
	})
	p, ok = env.cache.Pod(ctx, "shop", "web-1")
	if !ok || !p.Deleted.Equal(env.clock.Now()) || p.Labels["version"] != "2" {
		t.Fatalf("deleted pod within grace: %+v, %v", p, ok)
	}
	getsBefore := env.gets()
	env.clock.Add(150 * time.Millisecond)
	if _, ok := env.cache.Pod(ctx, "shop", "web-1"); !ok {
		t.Fatal("deleted pod gone before its grace period ended")
	}
	env.clock.Add(100 * time.Millisecond)
	if _, ok := env.cache.Pod(ctx, "shop", "web-1"); ok {
		t.Fatal("deleted pod still found after its grace period")
	}
	if env.gets() != getsBefore+1 {
		t.Fatalf("GETs after the grace period: %d, want 1", env.gets()-getsBefore)
	}
	if env.cached("shop", "web-1") != nil {
		t.Fatal("expired pod still in the cache")
	}
	if got := env.cache.m.deleted.Value(); got != 2 {
		t.Fatalf("deleted lookups = %v, want 2", got)
	}
}

// TestWatchListOrListAndWatch: the informers take their initial pods from
// a watch-list where the API server has one, and from a list followed by a
// watch where it refuses it (servers before Kubernetes 1.27).
func TestWatchListOrListAndWatch(t *testing.T) {
	ctx := context.Background()
	for _, older := range []bool{false, true} {
		env := startOn(t, Config{NamespaceLabels: true}, &apiServer{noWatchList: older},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "a"}}},
			testPod("shop", "web-1", "1", map[string]string{"app": "web"}))
		if p, ok := env.cache.Pod(ctx, "shop", "web-1"); !ok || p.Labels["app"] != "web" || p.NamespaceLabels["team"] != "a" {
			t.Fatalf("older server %v: pod from the initial events: %+v, %v", older, p, ok)
		}
		lists, watchLists := env.api.lists.Load(), env.api.watchLists.Load()
		if !older && (lists != 0 || watchLists != 2) || older && (lists != 2 || watchLists != 0) {
			t.Fatalf("older server %v: %d lists, %d watch-lists", older, lists, watchLists)
		}
		if _, err := env.cs.CoreV1().Pods("shop").Create(ctx, testPod("shop", "web-2", "2", nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the added pod", func() bool { return env.cached("shop", "web-2") != nil })
		if n := env.gets(); n != 0 {
			t.Fatalf("older server %v: %d GETs", older, n)
		}
	}
}

func TestDeletedSweptWithoutLookups(t *testing.T) {
	ctx := context.Background()
	env := start(t, Config{DeletedGrace: 50 * time.Millisecond}, testPod("shop", "web-1", "1", nil))
	if err := env.cs.CoreV1().Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deletion", func() bool {
		p := env.cached("shop", "web-1")
		return p != nil && !p.Deleted.IsZero()
	})
	env.clock.Add(time.Second)
	eventually(t, "the sweep", func() bool { return env.cached("shop", "web-1") == nil })
}

func TestMissThenGet(t *testing.T) {
	ctx := context.Background()
	env := start(t, Config{})
	// A pod the informer never sees: only a GET finds it.
	fresh := testPod("shop", "fresh-1", "7", map[string]string{"app": "fresh"})
	env.cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() == "fresh-1" {
			return true, fresh.DeepCopy(), nil
		}
		return false, nil, nil
	})
	p, ok := env.cache.Pod(ctx, "shop", "fresh-1")
	if !ok || p.UID != "uid-fresh-1" || p.Labels["app"] != "fresh" || p.Containers[0].ContainerID != nginxCID {
		t.Fatalf("missed pod: %+v, %v", p, ok)
	}
	if n := env.gets(); n != 1 {
		t.Fatalf("GETs = %d, want 1", n)
	}
	p2, ok := env.cache.Pod(ctx, "shop", "fresh-1")
	if !ok || p2 != p {
		t.Fatal("second lookup did not return the fetched pod")
	}
	if n := env.gets(); n != 1 {
		t.Fatalf("GETs after the second lookup = %d, want 1", n)
	}
	if got := env.cache.m.missGet.Value(); got != 1 {
		t.Fatalf("miss_get = %v", got)
	}

	// When the informer delivers the pod, it replaces the fetched one.
	if err := env.cs.Tracker().Add(testPod("shop", "fresh-1", "8", map[string]string{"app": "fresh", "seen": "watch"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watched pod", func() bool {
		p, ok := env.cache.Pod(ctx, "shop", "fresh-1")
		return ok && p.Labels["seen"] == "watch"
	})
	if n := env.gets(); n != 1 {
		t.Fatalf("GETs = %d, want 1", n)
	}
}

func TestNegativeCache(t *testing.T) {
	ctx := context.Background()
	env := start(t, Config{NegativeTTL: 30 * time.Second})
	if _, ok := env.cache.Pod(ctx, "shop", "ghost"); ok {
		t.Fatal("missing pod found")
	}
	if n := env.gets(); n != 1 {
		t.Fatalf("GETs = %d, want 1", n)
	}
	env.clock.Add(29 * time.Second)
	if _, ok := env.cache.Pod(ctx, "shop", "ghost"); ok {
		t.Fatal("missing pod found")
	}
	if n := env.gets(); n != 1 {
		t.Fatalf("GETs within the negative TTL = %d, want 1", n)
	}
	env.clock.Add(2 * time.Second)
	if _, ok := env.cache.Pod(ctx, "shop", "ghost"); ok {
		t.Fatal("missing pod found")
	}
	if n := env.gets(); n != 2 {
		t.Fatalf("GETs after the negative TTL = %d, want 2", n)
	}
	if err := testutil.GatherAndCompare(env.reg, strings.NewReader(`
# HELP sluice_enrich_api_gets_total GETs of single pods made on cache misses, by result (found, not_found, error).
# TYPE sluice_enrich_api_gets_total counter
sluice_enrich_api_gets_total{result="error"} 0
sluice_enrich_api_gets_total{result="found"} 0
sluice_enrich_api_gets_total{result="not_found"} 2
# HELP sluice_enrich_cache_pods Pods in the metadata cache, including deleted pods within their grace period.
# TYPE sluice_enrich_cache_pods gauge
sluice_enrich_cache_pods 0
`), "sluice_enrich_api_gets_total", "sluice_enrich_cache_pods"); err != nil {
		t.Fatal(err)
	}
	lookups := map[string]float64{}
	mfs, err := env.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "sluice_enrich_cache_lookups_total" {
			for _, m := range mf.GetMetric() {
				lookups[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if lookups["not_found"] != 2 || lookups["miss_negative"] != 1 || lookups["hit"] != 0 || len(lookups) != 7 {
		t.Fatalf("lookups = %v", lookups)
	}
}

func TestMissRateLimit(t *testing.T) {
	ctx := context.Background()
	env := start(t, Config{MissQPS: 0.001, MissBurst: 3})
	for i := range 20 {
		if _, ok := env.cache.Pod(ctx, "shop", "ghost-"+string(rune('a'+i))); ok {
			t.Fatal("missing pod found")
		}
	}
	if n := env.gets(); n != 3 {
		t.Fatalf("GETs = %d, want 3 (the burst)", n)
	}
	if got := env.cache.m.missLimited.Value(); got != 17 {
		t.Fatalf("miss_limited = %v, want 17", got)
	}
}

func TestGetError(t *testing.T) {
	ctx := context.Background()
	env := start(t, Config{})
	env.cs.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "x", errors.New("no"))
	})
	if _, ok := env.cache.Pod(ctx, "shop", "x"); ok {
		t.Fatal("found")
	}
	if _, ok := env.cache.Pod(ctx, "shop", "x"); ok {
		t.Fatal("found")
	}
	if n := env.gets(); n != 2 {
		t.Fatalf("GETs = %d, want 2 (errors are not cached)", n)
	}
	if got := env.cache.m.missError.Value(); got != 2 {
		t.Fatalf("miss_error = %v", got)
	}
}

func TestLabelsAnnotationsOff(t *testing.T) {
	env := start(t, Config{Labels: ptr(false), Annotations: ptr(false)}, testPod("shop", "web-1", "1", map[string]string{"app": "web"}))
	p, ok := env.cache.Pod(context.Background(), "shop", "web-1")
	if !ok || p.Labels != nil || p.Annotations != nil || p.NamespaceLabels != nil {
		t.Fatalf("pod = %+v, %v", p, ok)
	}
}

func TestNamespaceLabels(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", ResourceVersion: "1", Labels: map[string]string{"team": "a"}}}
	env := start(t, Config{NamespaceLabels: true}, ns, testPod("shop", "web-1", "1", nil))
	p, ok := env.cache.Pod(ctx, "shop", "web-1")
	if !ok || p.NamespaceLabels["team"] != "a" {
		t.Fatalf("pod = %+v, %v", p, ok)
	}
	ns = ns.DeepCopy()
	ns.ResourceVersion = "2"
	ns.Labels["team"] = "b"
	if _, err := env.cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new namespace labels", func() bool {
		p, ok := env.cache.Pod(ctx, "shop", "web-1")
		return ok && p.NamespaceLabels["team"] == "b"
	})
	if p.NamespaceLabels["team"] != "a" {
		t.Fatal("a namespace update changed a *Pod already handed out")
	}
	if _, err := env.cs.CoreV1().Pods("shop").Create(ctx, testPod("shop", "web-2", "2", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the added pod", func() bool { return env.cached("shop", "web-2") != nil })
	if p := env.cached("shop", "web-2"); p.NamespaceLabels["team"] != "b" {
		t.Fatalf("new pod namespace labels = %v", p.NamespaceLabels)
	}

	// Without the option no namespace informer runs.
	env2 := start(t, Config{}, ns, testPod("shop", "web-1", "1", nil))
	if p, _ := env2.cache.Pod(ctx, "shop", "web-1"); p.NamespaceLabels != nil {
		t.Fatal("namespace labels without the option")
	}
	for _, a := range env2.cs.Actions() {
		if a.GetResource().Resource == "namespaces" {
			t.Fatalf("namespace action without the option: %v", a)
		}
	}
}

func TestTrimmed(t *testing.T) {
	env := start(t, Config{}, testPod("shop", "web-1", "1", map[string]string{"app": "web"}))
	items := env.cache.podInf.GetStore().List()
	if len(items) != 1 {
		t.Fatalf("store holds %d items", len(items))
	}
	o, ok := items[0].(*object)
	if !ok {
		t.Fatalf("store holds a %T, want the trimmed *object", items[0])
	}
	if o.GetManagedFields() != nil || o.GetOwnerReferences() != nil || o.rv != "1" || o.pod.Name != "web-1" {
		t.Fatalf("stored object = %+v", o)
	}

	// The transform is idempotent and trims what it is given.
	tr := &trimmer{labels: true, annotations: true, in: newInterner()}
	out, err := tr.transform(testPod("shop", "web-1", "1", map[string]string{"app": "web"}))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := tr.transform(out)
	if again != out {
		t.Fatal("transform is not idempotent")
	}
	// Equal label sets and repeated strings are shared.
	a := tr.pod(testPod("shop", "a", "1", map[string]string{"app": "web"}))
	b := tr.pod(testPod("shop", "b", "1", map[string]string{"app": "web"}))
	if !sameMap(a.Labels, b.Labels) || !sameMap(a.Annotations, b.Annotations) {
		t.Fatal("equal label maps are not shared")
	}
	if !sameString(a.Node, b.Node) || !sameString(a.Containers[0].ImageID, b.Containers[0].ImageID) {
		t.Fatal("repeated strings are not shared")
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	a["\x00probe"] = "x"
	defer delete(a, "\x00probe")
	return b["\x00probe"] == "x"
}

func sameString(a, b string) bool {
	return a == b && unsafe.StringData(a) == unsafe.StringData(b)
}

func TestHash(t *testing.T) {
	for imageID, want := range map[string]string{
		nginxImageID: "0e61e3f5a3c4e5d6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0",
		"sha256:abc": "abc",
		"docker.io/library/nginx@sha256:aa@sha256:bb": "bb",
		"nginx:latest": "",
		"":             "",
	} {
		if got := (Container{ImageID: imageID}).Hash(); got != want {
			t.Errorf("Hash(%q) = %q, want %q", imageID, got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	var c Config
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !*c.Labels || !*c.Annotations || c.NamespaceLabels || c.DeletedGrace != 5*time.Minute || c.MissQPS != 5 ||
		c.MissBurst != 10 || c.NegativeTTL != 30*time.Second || c.SyncTimeout != time.Minute || c.Enabled != nil {
		t.Fatalf("defaults = %+v", c)
	}
	c.MissQPS = -1
	c.NegativeTTL = -time.Second
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "miss_qps: must be positive") || !strings.Contains(err.Error(), "negative_ttl: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewClient(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", filepath.Join(home, "missing"))

	if _, err := NewClient(Config{}); !errors.Is(err, ErrNoCluster) {
		t.Fatalf("no cluster: err = %v, want ErrNoCluster", err)
	}

	kc := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: test
  user: {token: not-a-real-token}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if cs, err := NewClient(Config{Kubeconfig: kc}); err != nil || cs == nil {
		t.Fatalf("explicit kubeconfig: %v", err)
	}
	t.Setenv("KUBECONFIG", kc)
	if cs, err := NewClient(Config{}); err != nil || cs == nil {
		t.Fatalf("$KUBECONFIG: %v", err)
	}
	if _, err := NewClient(Config{Kubeconfig: filepath.Join(home, "nope")}); err == nil || errors.Is(err, ErrNoCluster) {
		t.Fatalf("missing explicit kubeconfig: err = %v, want a file error", err)
	}
}

func TestStopIdempotent(t *testing.T) {
	c := New(Config{}, nil, component.Settings{})
	c.Stop()
	c.Stop()
	if err := c.Start(context.Background()); err == nil {
		t.Fatal("Start after Stop succeeded")
	}
}
