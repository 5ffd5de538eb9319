// Package deploy_test checks the deployment files (Kubernetes manifests,
// the NATS Helm values, the forwarders' configurations, docker-compose.yml
// and the Grafana dashboard) without a cluster or a Docker engine: every
// manifest decodes into its client-go type, kustomizations build, and
// names, ports, paths, secrets and sluice's own configuration agree
// across the files.
package deploy_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	k8sjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/testcerts"
	"github.com/sluicelog/sluice/internal/tlsconfig"
)

// objects are the decoded resources of one kustomization.
type objects []runtime.Object

// kustomize builds a kustomization directory, as `kubectl apply -k` would,
// and decodes every resource strictly (unknown or duplicate fields fail)
// into its client-go type.
func kustomize(t *testing.T, dir string) objects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	dec := k8sjson.NewSerializerWithOptions(k8sjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		k8sjson.SerializerOptions{Yaml: true, Strict: true})
	var out objects
	for _, r := range rm.Resources() {
		raw, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, gvk, err := dec.Decode(raw, nil, nil)
		if err != nil {
			t.Fatalf("%s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
		}
		if gvk.Kind != r.GetKind() {
			t.Fatalf("%s: %s decoded as %s", dir, r.GetKind(), gvk.Kind)
		}
		out = append(out, obj)
	}
	return out
}

// one returns the only object of type T named name (a prefix for
// generated ConfigMaps, whose names get a hash).
func one[T runtime.Object](t *testing.T, objs objects, name string) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			n := o.(metav1.Object).GetName()
			if n == name || strings.HasPrefix(n, name+"-") {
				found = append(found, v)
			}
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T named %s", len(found), zero, name)
	}
	return found[0]
}

// configMap returns the ConfigMap a pod's volume mounts.
func configMap(t *testing.T, objs objects, spec corev1.PodSpec, volume string) *corev1.ConfigMap {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == volume && v.ConfigMap != nil {
			for _, o := range objs {
				if cm, ok := o.(*corev1.ConfigMap); ok && cm.Name == v.ConfigMap.Name {
					return cm
				}
			}
			t.Fatalf("volume %s: no ConfigMap %s", volume, v.ConfigMap.Name)
		}
	}
	t.Fatalf("no ConfigMap volume %s", volume)
	return nil
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// envLookup resolves ${VAR} as the container would see it: a value, or a
// placeholder for values from secrets and the downward API.
func envLookup(c corev1.Container) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for _, e := range c.Env {
			if e.Name == name {
				if e.ValueFrom != nil {
					return "from-" + strings.ToLower(name), true
				}
				return e.Value, true
			}
		}
		return "", false
	}
}

// mountFor returns the volume a file path in the container is under.
func mountFor(t *testing.T, spec corev1.PodSpec, c corev1.Container, file string) corev1.Volume {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if path.Dir(file) == m.MountPath {
			for _, v := range spec.Volumes {
				if v.Name == m.Name {
					return v
				}
			}
			t.Fatalf("mount %s: no volume %s", m.MountPath, m.Name)
		}
	}
	t.Fatalf("container %s: %s is under no volume mount", c.Name, file)
	return corev1.Volume{}
}

// secretFile checks that file comes from the secret with that key, and
// returns the secret's name.
func secretFile(t *testing.T, spec corev1.PodSpec, c corev1.Container, file string) string {
	t.Helper()
	v := mountFor(t, spec, c, file)
	if v.Secret == nil {
		t.Fatalf("%s: volume %s is not a secret", file, v.Name)
	}
	if len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == path.Base(file) }) {
		t.Fatalf("%s: secret %s's items have no %s", file, v.Secret.SecretName, path.Base(file))
	}
	return v.Secret.SecretName
}

func matches(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(set))
}

func port(t *testing.T, hostport string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// natsValues is what sluice depends on in deploy/nats/values.yaml.
type natsValues struct {
	FullnameOverride string `yaml:"fullnameOverride"`
	Config           struct {
		Cluster struct {
			Enabled  bool `yaml:"enabled"`
			Replicas int  `yaml:"replicas"`
		} `yaml:"cluster"`
		JetStream struct {
			Enabled   bool `yaml:"enabled"`
			FileStore struct {
				Enabled bool   `yaml:"enabled"`
				MaxSize string `yaml:"maxSize"`
				PVC     struct {
					Enabled bool   `yaml:"enabled"`
					Size    string `yaml:"size"`
				} `yaml:"pvc"`
			} `yaml:"fileStore"`
		} `yaml:"jetstream"`
		NATS struct {
			Port int `yaml:"port"`
		} `yaml:"nats"`
		Merge map[string]any `yaml:"merge"`
	} `yaml:"config"`
}

func readNATSValues(t *testing.T) natsValues {
	t.Helper()
	raw, err := os.ReadFile("nats/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v natsValues
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatalf("nats/values.yaml: %v", err)
	}
	return v
}

// sluiceInCluster checks one build of deploy/kubernetes (the base or an
// overlay) and returns sluice's configuration and the Deployment.
func sluiceInCluster(t *testing.T, objs objects) (*config.Config, *appsv1.Deployment) {
	t.Helper()
	const ns = "logging"
	for _, o := range objs {
		m := o.(metav1.Object)
		_, cluster := o.(*rbacv1.ClusterRole)
		_, binding := o.(*rbacv1.ClusterRoleBinding)
		_, namespace := o.(*corev1.Namespace)
		if !cluster && !binding && !namespace && m.GetNamespace() != ns {
			t.Errorf("%T %s is in namespace %q, want %s", o, m.GetName(), m.GetNamespace(), ns)
		}
	}
	one[*corev1.Namespace](t, objs, ns)
	dep := one[*appsv1.Deployment](t, objs, "sluice")
	svc := one[*corev1.Service](t, objs, "sluice")
	pdb := one[*policyv1.PodDisruptionBudget](t, objs, "sluice")
	hpa := one[*autoscalingv2.HorizontalPodAutoscaler](t, objs, "sluice")
	sa := one[*corev1.ServiceAccount](t, objs, "sluice")
	role := one[*rbacv1.ClusterRole](t, objs, "sluice")
	binding := one[*rbacv1.ClusterRoleBinding](t, objs, "sluice")

	pod := dep.Spec.Template
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", dep.Spec.Replicas)
	}
	if !matches(t, dep.Spec.Selector, pod.Labels) {
		t.Errorf("the Deployment's selector %v does not select its pods %v", dep.Spec.Selector, pod.Labels)
	}
	if !matches(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, pod.Labels) {
		t.Errorf("the Service's selector %v does not select sluice's pods %v", svc.Spec.Selector, pod.Labels)
	}
	if !matches(t, pdb.Spec.Selector, pod.Labels) {
		t.Errorf("the PodDisruptionBudget's selector does not select sluice's pods")
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("the PodDisruptionBudget allows nothing")
	}
	if len(pod.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topology spread")
	}
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if !matches(t, c.LabelSelector, pod.Labels) {
			t.Errorf("topology spread on %s does not select sluice's pods", c.TopologyKey)
		}
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != dep.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("the HPA scales %+v", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != *dep.Spec.Replicas || hpa.Spec.MaxReplicas <= *hpa.Spec.MinReplicas || len(hpa.Spec.Metrics) == 0 {
		t.Errorf("HPA replicas %v..%d, metrics %d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, len(hpa.Spec.Metrics))
	}

	// The metadata cache's service account and what it may read.
	checkMetadataRBAC(t, pod.Spec, sa, binding, role, ns)

	// sluice's configuration, validated by sluice, from the file the
	// container is told to read.
	c := container(t, pod.Spec, "sluice")
	if len(c.Args) != 2 || c.Args[0] != "-config" {
		t.Fatalf("args %q", c.Args)
	}
	cm := configMap(t, objs, pod.Spec, mountFor(t, pod.Spec, c, c.Args[1]).Name)
	raw, ok := cm.Data[path.Base(c.Args[1])]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Name, path.Base(c.Args[1]))
	}
	cfg := parseInPod(t, pod.Spec, c, raw)
	if !strings.HasPrefix(c.Image, "ghcr.io/sluicelog/sluice:") {
		t.Errorf("image %s", c.Image)
	}

	// Ports: the container's are sluice's listeners; the Service's point
	// at them by name and protocol.
	want := map[string]int32{"forward": port(t, cfg.Forward.Listen), "forward-udp": port(t, cfg.Forward.Listen),
		"http": port(t, cfg.HTTP.Listen), "api": port(t, cfg.API.Listen),
		"otlp-grpc": port(t, cfg.OTLP.GRPC.Listen), "otlp-http": port(t, cfg.OTLP.HTTP.Listen)}
	cports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		cports[p.Name] = p
	}
	for name, n := range want {
		if cports[name].ContainerPort != n {
			t.Errorf("container port %s is %d, sluice listens on %d", name, cports[name].ContainerPort, n)
		}
	}
	if cports["forward-udp"].Protocol != corev1.ProtocolUDP {
		t.Error("the Forward heartbeat port is not UDP")
	}
	for _, p := range svc.Spec.Ports {
		cp, ok := cports[p.TargetPort.String()]
		if !ok || cp.Protocol != p.Protocol {
			t.Errorf("Service port %s targets %s/%s, not a container port", p.Name, p.TargetPort.String(), p.Protocol)
		}
	}
	if len(svc.Spec.Ports) != len(want) {
		t.Errorf("the Service has %d ports, want %d", len(svc.Spec.Ports), len(want))
	}

	// Probes, resources, graceful termination.
	for name, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "api" {
			t.Errorf("probe %s: %+v", name, p)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	checkGrace(t, pod.Spec, c, cfg.ShutdownTimeout)

	// Every file sluice reads comes from a secret mounted where the
	// configuration says.
	files := []string{cfg.Forward.Security.SharedKeyFile, cfg.Forward.TLS.CertFile, cfg.Forward.TLS.KeyFile, cfg.HTTP.TLS.CertFile, cfg.HTTP.TLS.KeyFile}
	files = append(files, cfg.HTTP.Auth.TokenFiles...)
	for _, f := range files {
		if f == "" {
			t.Fatal("base ingest is not protected: shared key, TLS and tokens are expected")
		}
		secretFile(t, pod.Spec, c, f)
	}

	// JetStream: the cluster of deploy/nats/values.yaml.
	nv := readNATSValues(t)
	u, err := url.Parse(cfg.NATS.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() != nv.FullnameOverride+"."+ns+".svc.cluster.local" || u.Port() != strconv.Itoa(nv.Config.NATS.Port) {
		t.Errorf("nats.url %s is not the chart's Service %s.%s:%d", cfg.NATS.URL, nv.FullnameOverride, ns, nv.Config.NATS.Port)
	}
	if cfg.NATS.Stream.Replicas != nv.Config.Cluster.Replicas {
		t.Errorf("stream replicas %d on a %d-server cluster", cfg.NATS.Stream.Replicas, nv.Config.Cluster.Replicas)
	}
	// Each server holds a copy of both streams and reserves their max_bytes.
	store := resource.MustParse(nv.Config.JetStream.FileStore.MaxSize)
	if need := int64(cfg.NATS.Stream.MaxBytes) + int64(cfg.NATS.DeadLetter.MaxBytes); need > store.Value() {
		t.Errorf("the streams reserve %d bytes, JetStream's max_file_store is %s", need, store.String())
	}
	return cfg, dep
}

func TestKubernetesBase(t *testing.T) {
	objs := kustomize(t, "kubernetes/base")
	cfg, dep := sluiceInCluster(t, objs)
	if len(cfg.Sinks) == 0 || cfg.Sinks[0].Type() != "elasticsearch" {
		t.Errorf("base sinks %v", cfg.Sinks)
	}
	if cfg.Enrich.Enabled == nil || !*cfg.Enrich.Enabled {
		t.Error("enrichment is not on in the cluster")
	}
	// Every secret the pods use is one docs/DEPLOY.md tells how to create.
	doc, err := os.ReadFile("../docs/DEPLOY.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secretsOf(dep.Spec.Template.Spec) {
		if !strings.Contains(string(doc), s) {
			t.Errorf("docs/DEPLOY.md does not mention the secret %s", s)
		}
	}
}

func TestKubernetesEKS(t *testing.T) {
	objs := kustomize(t, "kubernetes/overlays/eks")
	cfg, dep := sluiceInCluster(t, objs)
	sa := one[*corev1.ServiceAccount](t, objs, "sluice")
	if arn := sa.Annotations["eks.amazonaws.com/role-arn"]; !regexp.MustCompile(`^arn:aws:iam::\d{12}:role/.+$`).MatchString(arn) {
		t.Errorf("IRSA role annotation %q", arn)
	}
	// The overlay replaces the base's configuration (one ConfigMap, the
	// overlay's, mounted by the Deployment).
	var types []string
	for i := range cfg.Sinks {
		types = append(types, cfg.Sinks[i].Type())
		if awsRegion(cfg.Sinks[i]) == "" {
			t.Errorf("sink %s has no region", cfg.Sinks[i].Name)
		}
	}
	if !slices.Contains(types, "cloudwatch") || !slices.Contains(types, "firehose") {
		t.Errorf("EKS sinks %v", types)
	}
	c := container(t, dep.Spec.Template.Spec, "sluice")
	if _, ok := envLookup(c)("AWS_REGION"); !ok {
		t.Error("no AWS_REGION")
	}
	// The base's environment is kept by the patch.
	if _, ok := envLookup(c)("GOMEMLIMIT"); !ok {
		t.Error("the overlay lost the base's environment")
	}
	// The role's policy allows every call the sinks make.
	raw, err := os.ReadFile("kubernetes/overlays/eks/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		Statement []struct {
			Effect string
			Action []string
		}
	}
	if err := json.Unmarshal(raw, &policy); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	var allowed []string
	for _, s := range policy.Statement {
		if s.Effect == "Allow" {
			allowed = append(allowed, s.Action...)
		}
	}
	need := map[string][]string{
		"cloudwatch": {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:PutRetentionPolicy"},
		"firehose":   {"firehose:PutRecordBatch"},
	}
	for _, typ := range types {
		for _, a := range need[typ] {
			if !slices.Contains(allowed, a) {
				t.Errorf("iam-policy.json does not allow %s (sink type %s)", a, typ)
			}
		}
	}
}

// The NATS Helm values: a JetStream cluster on persistent volumes.
func TestNATSValues(t *testing.T) {
	v := readNATSValues(t)
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("cluster %+v", c.Cluster)
	}
	fs := c.JetStream.FileStore
	if !c.JetStream.Enabled || !fs.Enabled || !fs.PVC.Enabled {
		t.Errorf("JetStream file store on persistent volumes: %+v", c.JetStream)
	}
	pvc, max := resource.MustParse(fs.PVC.Size), resource.MustParse(fs.MaxSize)
	if max.Cmp(pvc) >= 0 {
		t.Errorf("max_file_store %s does not fit the %s volume", fs.MaxSize, fs.PVC.Size)
	}
	// sluice's default max_payload (chunks up to 8 MB in one message).
	if p := fmt.Sprint(c.Merge["max_payload"]); p != "<< 8MB >>" {
		t.Errorf("max_payload %q", p)
	}
}

// parseInPod validates sluice's configuration as the container would: the
// environment from the container's env, and the files from the secrets
// mounted into it (each item of each secret volume written under a
// temporary root, with a real certificate and key for TLS). Paths in the
// returned configuration are the container's.
func parseInPod(t *testing.T, spec corev1.PodSpec, c corev1.Container, raw string) *config.Config {
	t.Helper()
	tmp := t.TempDir()
	ca := testcerts.NewCA(t, "sluice-test")
	cert, key := ca.Issue(t, "sluice.logging.svc.cluster.local", true)
	content := map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": ca.PEM}
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			t.Fatalf("mount %s: no volume %s", m.MountPath, m.Name)
		}
		v := spec.Volumes[i]
		if v.Secret == nil {
			continue
		}
		if len(v.Secret.Items) == 0 {
			t.Fatalf("secret volume %s: list its items, so that the files sluice reads are known", v.Name)
		}
		if err := os.MkdirAll(filepath.Join(tmp, m.MountPath), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, item := range v.Secret.Items {
			data, ok := content[item.Key]
			if !ok {
				data = []byte("secret-" + item.Key + "\n")
			}
			testcerts.WriteFile(t, filepath.Join(tmp, m.MountPath), item.Path, data)
		}
		raw = strings.ReplaceAll(raw, m.MountPath+"/", filepath.Join(tmp, m.MountPath)+"/")
	}
	cfg, err := config.Parse([]byte(raw), envLookup(c))
	if err != nil {
		t.Fatalf("sluice's configuration: %v", err)
	}
	in := func(p *string) { *p = strings.TrimPrefix(*p, tmp) }
	in(&cfg.NATS.CredsFile)
	in(&cfg.Forward.Security.SharedKeyFile)
	in(&cfg.Forward.TLS.CertFile)
	in(&cfg.Forward.TLS.KeyFile)
	in(&cfg.Forward.TLS.ClientCAFile)
	for _, tc := range []*tlsconfig.Config{&cfg.HTTP.TLS, &cfg.OTLP.HTTP.TLS, &cfg.OTLP.GRPC.TLS, &cfg.API.TLS} {
		in(&tc.CertFile)
		in(&tc.KeyFile)
		in(&tc.ClientCAFile)
	}
	for _, files := range [][]string{cfg.HTTP.Auth.TokenFiles, cfg.OTLP.Auth.TokenFiles} {
		for i := range files {
			in(&files[i])
		}
	}
	return cfg
}

// secretsOf lists the secrets a pod reads.
func secretsOf(spec corev1.PodSpec) []string {
	var out []string
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			out = append(out, v.Secret.SecretName)
		}
	}
	for _, c := range spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out = append(out, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// root is the repository's top directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// awsRegion is an AWS sink's configured region.
func awsRegion(s config.SinkConfig) string {
	switch {
	case s.CloudWatch != nil:
		return s.CloudWatch.AWS.Region
	case s.Firehose != nil:
		return s.Firehose.AWS.Region
	case s.S3 != nil:
		return s.S3.AWS.Region
	}
	return ""
}

// checkMetadataRBAC checks that the pods run as the service account that
// the binding gives the ClusterRole, and that the role lets the metadata
// cache get, list and watch pods and namespaces.
func checkMetadataRBAC(t *testing.T, pod corev1.PodSpec, sa *corev1.ServiceAccount, binding *rbacv1.ClusterRoleBinding, role *rbacv1.ClusterRole, ns string) {
	t.Helper()
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("pods run as %q, the service account is %s", pod.ServiceAccountName, sa.Name)
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != ns {
		t.Errorf("the binding %+v does not bind %s/%s to %s", binding.Subjects, ns, sa.Name, role.Name)
	}
	for _, res := range []string{"pods", "namespaces"} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
				return slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, res) && slices.Contains(r.Verbs, verb)
			}) {
				t.Errorf("the ClusterRole does not allow %s %s", verb, res)
			}
		}
	}
}

// checkGrace checks that Kubernetes waits for the preStop pause and then
// sluice's whole orderly shutdown before it kills the container.
func checkGrace(t *testing.T, pod corev1.PodSpec, c corev1.Container, shutdown time.Duration) {
	t.Helper()
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	var pause time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		pause = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if grace <= pause+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v is not longer than the preStop pause %v plus shutdown_timeout %v", grace, pause, shutdown)
	}
}
