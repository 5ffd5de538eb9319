package kube

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/sluicelog/sluice/internal/component"
)

func BenchmarkLookup(b *testing.B) {
	c := fill(b, 1000, false, nil)
	ctx := context.Background()
	names := make([]podKey, 1000)
	for i := range names {
		names[i] = podKey{fmt.Sprintf("ns-%d", i%50), syntheticName(i)}
		if _, ok := c.Pod(ctx, names[i].namespace, names[i].name); !ok {
			b.Fatalf("%v not cached", names[i])
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := names[i%len(names)]
			if _, ok := c.Pod(ctx, k.namespace, k.name); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				k := names[i%len(names)]
				if _, ok := c.Pod(ctx, k.namespace, k.name); !ok {
					b.Error("miss")
					return
				}
				i++
			}
		})
	})
}

// BenchmarkMemoryPerPod measures the heap the cache keeps per pod (the
// informer's store plus the cache's own index) for 50,000 synthetic pods,
// fed through the transform as the informer would.
func BenchmarkMemoryPerPod(b *testing.B) {
	const pods = 50_000
	for _, tc := range []struct {
		name   string
		unique bool
	}{{"replicasets", false}, {"unique_labels", true}} {
		b.Run(tc.name, func(b *testing.B) {
			var perPod float64
			for b.Loop() {
				before := heap()
				store := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc)
				c := fill(b, pods, tc.unique, store)
				after := heap()
				if len(store.ListKeys()) != pods {
					b.Fatal("store size")
				}
				perPod = float64(after-before) / pods
				runtime.KeepAlive(c)
				runtime.KeepAlive(store)
			}
			b.ReportMetric(perPod, "B/pod")
		})
	}
}

func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// fill builds a cache of n synthetic pods: 10 replicas per deployment, 50
// namespaces, 100 nodes; 5 labels (app, pod-template-hash, version, team,
// tier; with unique, a sixth, statefulset.kubernetes.io/pod-name, makes
// every label set distinct), 4 annotations (one, the pod IP, distinct per
// pod), 2 containers with images, image IDs and container IDs, and
// managedFields. Each pod goes through the transform into store (when not
// nil) and the cache's event handler, as the informer does.
func fill(tb testing.TB, n int, unique bool, store cache.Store) *Cache {
	cfg := Config{}
	cfg.SetDefaults()
	c := New(cfg, nil, component.Settings{Registerer: prometheus.NewRegistry()})
	for i := range n {
		obj, err := c.trim.transform(syntheticPod(i, unique))
		if err != nil {
			tb.Fatal(err)
		}
		if store != nil {
			if err := store.Add(obj); err != nil {
				tb.Fatal(err)
			}
		}
		c.podChanged(obj)
	}
	return c
}

func syntheticName(i int) string {
	return fmt.Sprintf("deploy-%04d-%08x-%05x", i/10, uint32(i/10)*2654435761, uint32(i)*40503)
}

func syntheticPod(i int, unique bool) *corev1.Pod {
	d := i / 10
	hash := fmt.Sprintf("%08x", uint32(d)*2654435761)
	app := fmt.Sprintf("deploy-%04d", d)
	digest := fmt.Sprintf("%064x", uint64(d)*0x9e3779b97f4a7c15)
	labels := map[string]string{
		"app": app, "pod-template-hash": hash, "version": fmt.Sprintf("v1.%d.%d", d%7, d%13),
		"team": fmt.Sprintf("team-%d", d%20), "tier": []string{"frontend", "backend", "worker"}[d%3],
	}
	if unique {
		labels["statefulset.kubernetes.io/pod-name"] = syntheticName(i)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            syntheticName(i),
			Namespace:       fmt.Sprintf("ns-%d", i%50),
			UID:             types.UID(fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", i, i%65536, d%65536, 0x8000|i%4096, uint64(i)*7919)),
			ResourceVersion: fmt.Sprint(1000000 + i),
			Labels:          labels,
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2026-11-20T10:00:00Z",
				"prometheus.io/scrape":              "true",
				"prometheus.io/port":                "8080",
				"cni.projectcalico.org/podIP":       fmt.Sprintf("10.%d.%d.%d/32", i>>16&255, i>>8&255, i&255),
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash, UID: types.UID(digest[:36])}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: make([]byte, 2048)}}},
		},
		Spec: corev1.PodSpec{
			NodeName: fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i%100/10, i%100),
			Containers: []corev1.Container{
				{Name: "app", Image: fmt.Sprintf("registry.example.com/shop/%s:1.%d", app, d%13),
					Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}}},
				{Name: "envoy", Image: "envoyproxy/envoy:v1.31.2"},
			},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			PodIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", Image: fmt.Sprintf("registry.example.com/shop/%s:1.%d", app, d%13),
					ImageID:     "registry.example.com/shop/" + app + "@sha256:" + digest,
					ContainerID: fmt.Sprintf("containerd://%064x", uint64(i)*0x9e3779b97f4a7c15+1)},
				{Name: "envoy", Image: "docker.io/envoyproxy/envoy:v1.31.2",
					ImageID:     "docker.io/envoyproxy/envoy@sha256:5f1ae4bb8e3d0c1f0b2f6a8d6a3e9e2f1c0b9a8d7e6f5a4b3c2d1e0f9a8b7c6d",
					ContainerID: fmt.Sprintf("containerd://%064x", uint64(i)*0x9e3779b97f4a7c15+2)},
			},
		},
	}
}
