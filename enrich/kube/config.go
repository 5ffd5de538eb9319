package kube

import (
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config configures the pod metadata cache.
type Config struct {
	// Enabled: nil = auto (on when in a cluster or a kubeconfig is found),
	// false = off, true = on (an error if there is no cluster config).
	Enabled *bool `yaml:"enabled"`
	// Kubeconfig names a kubeconfig file; "" uses the in-cluster config,
	// else the standard loading rules ($KUBECONFIG, ~/.kube/config).
	Kubeconfig string `yaml:"kubeconfig"`
	// Labels keeps pod labels (default true).
	Labels *bool `yaml:"labels"`
	// Annotations keeps pod annotations (default true).
	Annotations *bool `yaml:"annotations"`
	// NamespaceLabels also watches namespaces and adds their labels to
	// each pod (default false).
	NamespaceLabels bool `yaml:"namespace_labels"`
	// DeletedGrace is how long a deleted pod stays in the cache, because
	// its last logs arrive after the deletion (default 5m).
	DeletedGrace time.Duration `yaml:"deleted_grace"`
	// MissQPS and MissBurst bound the GETs made on cache misses
	// (default 5 per second, bursts of 10).
	MissQPS   float64 `yaml:"miss_qps"`
	MissBurst int     `yaml:"miss_burst"`
	// NegativeTTL is how long a pod the API server said does not exist is
	// remembered as missing (default 30s).
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// SyncTimeout bounds the wait for the initial list in Start (default 60s).
	SyncTimeout time.Duration `yaml:"sync_timeout"`
	// GetTimeout bounds the GET of a pod on a cache miss (default 2s).
	GetTimeout time.Duration `yaml:"get_timeout"`
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Labels == nil {
		c.Labels = ptr(true)
	}
	if c.Annotations == nil {
		c.Annotations = ptr(true)
	}
	if c.DeletedGrace == 0 {
		c.DeletedGrace = 5 * time.Minute
	}
	if c.MissQPS == 0 {
		c.MissQPS = 5
	}
	if c.MissBurst == 0 {
		c.MissBurst = 10
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = 30 * time.Second
	}
	if c.GetTimeout == 0 {
		c.GetTimeout = 2 * time.Second
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = 60 * time.Second
	}
}

// Validate checks a configuration after SetDefaults; error texts start
// with the field name.
func (c *Config) Validate() error {
	var errs []error
	if c.DeletedGrace <= 0 {
		errs = append(errs, errors.New("deleted_grace: must be positive"))
	}
	if c.MissQPS <= 0 {
		errs = append(errs, errors.New("miss_qps: must be positive"))
	}
	if c.MissBurst <= 0 {
		errs = append(errs, errors.New("miss_burst: must be positive"))
	}
	if c.NegativeTTL <= 0 {
		errs = append(errs, errors.New("negative_ttl: must be positive"))
	}
	if c.GetTimeout <= 0 {
		errs = append(errs, errors.New("get_timeout: must be positive"))
	}
	if c.SyncTimeout <= 0 {
		errs = append(errs, errors.New("sync_timeout: must be positive"))
	}
	return errors.Join(errs...)
}

func ptr[T any](v T) *T { return &v }

func on(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// ErrNoCluster means there is neither an in-cluster config nor a kubeconfig.
var ErrNoCluster = errors.New("kube: no in-cluster config and no kubeconfig")

// coreCodecs decode the core/v1 group only: pods, namespaces and the API's
// own Status and watch events. client-go's clientset would register every
// API group of Kubernetes, which sluice never reads, at a cost of about 15
// MB of memory and 50 MB of binary (docs/PERFORMANCE.md).
// They are made on first use: a sluice without enrichment never does.
var coreCodecs = sync.OnceValue(func() serializer.CodecFactory {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(err) // static registration; fails only if client-go changes
	}
	return serializer.NewCodecFactory(s)
})

// NewClient returns a REST client for the core/v1 API group. An explicit
// cfg.Kubeconfig is used as is; otherwise the in-cluster config (service
// account token) is tried first, then the standard kubeconfig loading rules
// ($KUBECONFIG, ~/.kube/config). It returns ErrNoCluster when none is
// found. It makes no request.
func NewClient(cfg Config) (rest.Interface, error) {
	rc, err := restConfig(cfg)
	if err != nil {
		return nil, err
	}
	return newCoreClient(rc)
}

// newCoreClient returns a core/v1 client on rc, as client-go's own
// CoreV1Client does it.
func newCoreClient(rc *rest.Config) (rest.Interface, error) {
	c := rest.CopyConfig(rc)
	c.UserAgent = "sluice"
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = coreCodecs().WithoutConversion()
	client, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kube: client: %w", err)
	}
	return client, nil
}

func restConfig(cfg Config) (*rest.Config, error) {
	if cfg.Kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err == nil {
			return rc, nil
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("kube: in-cluster config: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = cfg.Kubeconfig
	// DeferredLoading would fall back to the in-cluster config by itself;
	// that was tried above, so use the plain loader.
	raw, err := rules.Load()
	if err != nil {
		return nil, fmt.Errorf("kube: kubeconfig: %w", err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, ErrNoCluster
		}
		return nil, fmt.Errorf("kube: kubeconfig: %w", err)
	}
	return rc, nil
}
