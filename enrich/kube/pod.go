package kube

import (
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// Container is one container of a pod: its spec merged with its status.
type Container struct {
	Name string
	// Image is the image the runtime reports (status), else the spec's.
	Image string
	// ImageID is as in the status, e.g. "docker-pullable://nginx@sha256:0e61...".
	ImageID string
	// ContainerID is as in the status, e.g. "containerd://b90a...".
	ContainerID string
}

// Hash returns the image digest of a container for Fluent Bit's
// container_hash: the hex after the last "sha256:" of ImageID, or "".
func (c Container) Hash() string {
	i := strings.LastIndex(c.ImageID, "sha256:")
	if i < 0 {
		return ""
	}
	return c.ImageID[i+len("sha256:"):]
}

// Pod is the metadata enrichment uses. A *Pod handed out by the cache is
// shared and must be treated as read-only; when the pod changes the cache
// hands out a new *Pod.
type Pod struct {
	Name, Namespace, UID, Node string
	// Labels and Annotations are nil when switched off. Pods with the same
	// labels (replicas of one ReplicaSet) share one map.
	Labels, Annotations map[string]string
	// NamespaceLabels are the labels of the pod's namespace; nil unless
	// Config.NamespaceLabels.
	NamespaceLabels map[string]string
	// Containers are the spec's containers, init containers and ephemeral
	// containers, each merged with its status.
	Containers []Container
	// Deleted is when the cache saw the pod's deletion; zero while the pod
	// exists.
	Deleted time.Time
}

// object is what the pod informer stores: the trimmed pod and the little
// the informer machinery needs (metav1.Object for keys and resource
// versions). Every other metav1.Object method returns a zero value.
type object struct {
	pod *Pod
	rv  string
}

var (
	_ metav1.Object  = (*object)(nil)
	_ runtime.Object = (*object)(nil)
)

func (o *object) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (o *object) DeepCopyObject() runtime.Object   { c := *o; return &c } // *Pod is immutable

func (o *object) GetNamespace() string                                       { return o.pod.Namespace }
func (o *object) GetName() string                                            { return o.pod.Name }
func (o *object) GetUID() types.UID                                          { return types.UID(o.pod.UID) }
func (o *object) GetResourceVersion() string                                 { return o.rv }
func (o *object) GetLabels() map[string]string                               { return o.pod.Labels }
func (o *object) GetAnnotations() map[string]string                          { return o.pod.Annotations }
func (o *object) SetNamespace(string)                                        {}
func (o *object) SetName(string)                                             {}
func (o *object) GetGenerateName() string                                    { return "" }
func (o *object) SetGenerateName(string)                                     {}
func (o *object) SetUID(types.UID)                                           {}
func (o *object) SetResourceVersion(string)                                  {}
func (o *object) GetGeneration() int64                                       { return 0 }
func (o *object) SetGeneration(int64)                                        {}
func (o *object) GetSelfLink() string                                        { return "" }
func (o *object) SetSelfLink(string)                                         {}
func (o *object) GetCreationTimestamp() metav1.Time                          { return metav1.Time{} }
func (o *object) SetCreationTimestamp(metav1.Time)                           {}
func (o *object) GetDeletionTimestamp() *metav1.Time                         { return nil }
func (o *object) SetDeletionTimestamp(*metav1.Time)                          {}
func (o *object) GetDeletionGracePeriodSeconds() *int64                      { return nil }
func (o *object) SetDeletionGracePeriodSeconds(*int64)                       {}
func (o *object) SetLabels(map[string]string)                                {}
func (o *object) SetAnnotations(map[string]string)                           {}
func (o *object) GetFinalizers() []string                                    { return nil }
func (o *object) SetFinalizers([]string)                                     {}
func (o *object) GetOwnerReferences() []metav1.OwnerReference                { return nil }
func (o *object) SetOwnerReferences([]metav1.OwnerReference)                 {}
func (o *object) GetManagedFields() []metav1.ManagedFieldsEntry              { return nil }
func (o *object) SetManagedFields(managedFields []metav1.ManagedFieldsEntry) {}

// trimmer turns API objects into the small objects the cache keeps,
// sharing repeated strings and label maps. It is safe for concurrent use.
type trimmer struct {
	labels, annotations bool
	in                  *interner
}

// transform is the informers' cache.TransformFunc: pods become *object,
// namespaces keep only name, uid, resource version and labels. It is
// idempotent.
func (t *trimmer) transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &object{pod: t.pod(o), rv: o.ResourceVersion}, nil
	case *corev1.Namespace:
		return t.namespace(o), nil
	case cache.DeletedFinalStateUnknown:
		inner, err := t.transform(o.Obj)
		if err != nil {
			return nil, err
		}
		o.Obj = inner
		return o, nil
	}
	return obj, nil
}

// pod trims p.
func (t *trimmer) pod(p *corev1.Pod) *Pod {
	out := &Pod{
		Name:      strings.Clone(p.Name),
		Namespace: t.in.str(p.Namespace),
		UID:       strings.Clone(string(p.UID)),
		Node:      t.in.str(p.Spec.NodeName),
	}
	if t.labels {
		out.Labels = t.in.strMap(p.Labels)
	}
	if t.annotations {
		out.Annotations = t.in.strMap(p.Annotations)
	}
	n := len(p.Spec.Containers) + len(p.Spec.InitContainers) + len(p.Spec.EphemeralContainers)
	if n == 0 {
		return out
	}
	out.Containers = make([]Container, 0, n)
	add := func(name, image string, statuses []corev1.ContainerStatus) {
		c := Container{Name: t.in.str(name), Image: image}
		for i := range statuses {
			if s := &statuses[i]; s.Name == name {
				if s.Image != "" {
					c.Image = s.Image
				}
				c.ImageID = t.in.str(s.ImageID)
				c.ContainerID = strings.Clone(s.ContainerID)
				break
			}
		}
		c.Image = t.in.str(c.Image)
		out.Containers = append(out.Containers, c)
	}
	for i := range p.Spec.Containers {
		add(p.Spec.Containers[i].Name, p.Spec.Containers[i].Image, p.Status.ContainerStatuses)
	}
	for i := range p.Spec.InitContainers {
		add(p.Spec.InitContainers[i].Name, p.Spec.InitContainers[i].Image, p.Status.InitContainerStatuses)
	}
	for i := range p.Spec.EphemeralContainers {
		add(p.Spec.EphemeralContainers[i].Name, p.Spec.EphemeralContainers[i].Image, p.Status.EphemeralContainerStatuses)
	}
	return out
}

// namespace trims ns to its name, uid, resource version and labels.
func (t *trimmer) namespace(ns *corev1.Namespace) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:            t.in.str(ns.Name),
		UID:             ns.UID,
		ResourceVersion: ns.ResourceVersion,
		Labels:          t.in.strMap(ns.Labels),
	}}
}

// Interner bounds: past them an interner starts over (what was handed out
// stays valid; only sharing with later objects is lost).
const (
	maxInternStrings = 1 << 17
	maxInternMaps    = 1 << 16
	maxInternLen     = 256 // longer strings (e.g. last-applied-configuration) are copied, not interned
)

// interner shares equal strings and equal string maps between the objects
// the cache keeps. Label keys, label values, node names, images and
// namespace names repeat across pods; so do whole label sets (the replicas
// of a ReplicaSet).
type interner struct {
	mu      sync.Mutex
	strs    map[string]string
	strMaps map[uint64]map[string]string // by hashMap; on a collision the later map is not shared
}

func newInterner() *interner {
	return &interner{strs: make(map[string]string), strMaps: make(map[uint64]map[string]string)}
}

func (in *interner) str(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > maxInternLen {
		return strings.Clone(s)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.strLocked(s)
}

func (in *interner) strLocked(s string) string {
	if v, ok := in.strs[s]; ok {
		return v
	}
	if len(in.strs) >= maxInternStrings {
		clear(in.strs)
	}
	v := strings.Clone(s)
	in.strs[v] = v
	return v
}

// strMap returns a map equal to m that may be shared; nil for an empty m.
// The result must not be modified.
func (in *interner) strMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	h := hashMap(m)
	in.mu.Lock()
	defer in.mu.Unlock()
	cand, found := in.strMaps[h]
	if found && maps.Equal(cand, m) {
		return cand
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		k = in.strLocked(k)
		if len(v) > maxInternLen {
			v = strings.Clone(v)
		} else {
			v = in.strLocked(v)
		}
		out[k] = v
	}
	if found {
		return out
	}
	if len(in.strMaps) >= maxInternMaps {
		clear(in.strMaps)
	}
	in.strMaps[h] = out
	return out
}

// hashMap hashes a map independently of its iteration order.
func hashMap(m map[string]string) uint64 {
	var d xxhash.Digest
	sum := uint64(len(m))
	for k, v := range m {
		d.Reset()
		_, _ = d.WriteString(k)
		_, _ = d.Write([]byte{0})
		_, _ = d.WriteString(v)
		sum += d.Sum64()
	}
	return sum
}
