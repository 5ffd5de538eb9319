package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8sjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/ingest/otlp"
)

const (
	chartDir = "helm/sluice"
	// The release as docs/DEPLOY.md installs it.
	releaseName = "sluice"
	releaseNS   = "logging"
	// The Prometheus Operator's API, when a test says the cluster has it.
	monitoringAPI = "monitoring.coreos.com/v1"
	// The Kubernetes version the chart is rendered and linted for (the
	// chart needs 1.30 for the preStop sleep).
	testKubeVersion = "v1.33.0"
)

// rendered is one dry-run install of the chart: sluice's resources,
// decoded into their client-go types, the ServiceMonitors (a CRD's kind,
// unstructured), and the NATS subchart's resources apart.
type rendered struct {
	objs     objects
	monitors []*unstructured.Unstructured
	nats     objects
}

// loadChart loads deploy/helm/sluice as `helm install` does, with a
// stand-in for the NATS subchart: the real one is what `helm dependency
// build` downloads, which the tests neither need nor use when it is there.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	deps := slices.DeleteFunc(ch.Dependencies(), func(d *chart.Chart) bool { return d.Name() == "nats" })
	ch.SetDependencies(append(deps, natsStandIn())...)
	return ch
}

// natsStandIn is the part of the official NATS chart that sluice depends
// on: its client Service, named by the chart's fullname (the `helm create`
// rule: fullnameOverride, else the release name and the chart's), or
// service.name, in namespaceOverride or the release's namespace, on
// config.nats.port.
func natsStandIn() *chart.Chart {
	const service = `{{- $name := "" }}
{{- if .Values.fullnameOverride }}
{{- $name = .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $chart := default .Chart.Name .Values.nameOverride }}
{{- if contains $chart .Release.Name }}
{{- $name = .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name = printf "%s-%s" .Release.Name $chart | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
apiVersion: v1
kind: Service
metadata:
  name: {{ .Values.service.name | default $name }}
  namespace: {{ .Values.namespaceOverride | default .Release.Namespace }}
spec:
  selector:
    app.kubernetes.io/name: nats
  ports:
    - name: nats
      port: {{ .Values.config.nats.port }}
      targetPort: nats
`
	return &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: "nats", Version: "2.14.2"},
		Values: map[string]any{
			"config":  map[string]any{"nats": map[string]any{"port": 4222}},
			"service": map[string]any{"name": nil},
		},
		Templates: []*common.File{{Name: "templates/service.yaml", Data: []byte(service)}},
	}
}

// values reads a values file of the chart's directory.
func values(t *testing.T, file string) map[string]any {
	t.Helper()
	v, err := common.ReadValuesFile(path.Join(chartDir, file))
	if err != nil {
		t.Fatal(err)
	}
	return v.AsMap()
}

// install renders the chart as `helm install --dry-run=client` does: the
// chart's kubeVersion checked, the NATS subchart on or off by its
// condition, the values checked against values.schema.json, the templates
// rendered and the manifests split and ordered, for a cluster that serves
// apiVersions beside the built-in ones.
func install(ch *chart.Chart, vals map[string]any, apiVersions ...string) ([]releaseutil.Manifest, error) {
	kv, err := common.ParseKubeVersion(testKubeVersion)
	if err != nil {
		return nil, err
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	caps.APIVersions = append(caps.APIVersions, apiVersions...)
	if !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("the chart needs Kubernetes %s", ch.Metadata.KubeVersion)
	}
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		return nil, err
	}
	top, err := util.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: releaseName, Namespace: releaseNS, Revision: 1, IsInstall: true}, caps, false)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, err
	}
	notes := path.Join(ch.Name(), "templates", "NOTES.txt")
	if strings.TrimSpace(files[notes]) == "" {
		return nil, fmt.Errorf("%s is empty", notes)
	}
	delete(files, notes)
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("%d hooks", len(hooks))
	}
	return manifests, nil
}

// render installs the chart and decodes every resource strictly (unknown
// or duplicate fields fail) into its client-go type.
func render(t *testing.T, vals map[string]any, apiVersions ...string) rendered {
	t.Helper()
	manifests, err := install(loadChart(t), vals, apiVersions...)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	dec := k8sjson.NewSerializerWithOptions(k8sjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		k8sjson.SerializerOptions{Yaml: true, Strict: true})
	var out rendered
	for _, m := range manifests {
		if m.Head.Version == monitoringAPI {
			u := &unstructured.Unstructured{}
			if err := sigsyaml.UnmarshalStrict([]byte(m.Content), &u.Object); err != nil {
				t.Fatalf("%s: %v", m.Name, err)
			}
			out.monitors = append(out.monitors, u)
			continue
		}
		obj, gvk, err := dec.Decode([]byte(m.Content), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if gvk.Kind != m.Head.Kind {
			t.Fatalf("%s: %s decoded as %s", m.Name, m.Head.Kind, gvk.Kind)
		}
		if strings.HasPrefix(m.Name, "sluice/charts/nats/") {
			out.nats = append(out.nats, obj)
		} else {
			out.objs = append(out.objs, obj)
		}
	}
	return out
}

// named returns the only object of type T named exactly name.
func named[T runtime.Object](t *testing.T, objs objects, name string) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok && o.(metav1.Object).GetName() == name {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T named %s", len(found), zero, name)
	}
	return found[0]
}

func all[T runtime.Object](objs objects) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// kindNames lists objects as type/name.
func kindNames(objs objects) []string {
	var out []string
	for _, o := range objs {
		out = append(out, fmt.Sprintf("%T/%s", o, o.(metav1.Object).GetName()))
	}
	slices.Sort(out)
	return out
}

// chartConfig is sluice's configuration as the chart renders it: the
// parsed configuration (validated by sluice's own code, with the pod's
// environment and secret files), the document as a map, and the pod.
func chartConfig(t *testing.T, r rendered) (*config.Config, map[string]any, *appsv1.Deployment) {
	t.Helper()
	dep := named[*appsv1.Deployment](t, r.objs, releaseName)
	spec := dep.Spec.Template.Spec
	c := container(t, spec, "sluice")
	if len(c.Args) != 2 || c.Args[0] != "-config" {
		t.Fatalf("args %q", c.Args)
	}
	cm := configMap(t, r.objs, spec, mountFor(t, spec, c, c.Args[1]).Name)
	raw, ok := cm.Data[path.Base(c.Args[1])]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Name, path.Base(c.Args[1]))
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	return parseInPod(t, spec, c, raw), doc, dep
}

// sluiceFromChart checks what every rendering of the chart must hold and
// returns sluice's configuration and the Deployment.
func sluiceFromChart(t *testing.T, r rendered) (*config.Config, *appsv1.Deployment) {
	t.Helper()
	for _, o := range append(slices.Clone(r.objs), r.nats...) {
		m := o.(metav1.Object)
		_, cluster := o.(*rbacv1.ClusterRole)
		_, binding := o.(*rbacv1.ClusterRoleBinding)
		if !cluster && !binding && m.GetNamespace() != releaseNS {
			t.Errorf("%T %s is in namespace %q, want %s", o, m.GetName(), m.GetNamespace(), releaseNS)
		}
	}
	cfg, doc, dep := chartConfig(t, r)
	svc := named[*corev1.Service](t, r.objs, releaseName)
	sa := named[*corev1.ServiceAccount](t, r.objs, releaseName)
	role := named[*rbacv1.ClusterRole](t, r.objs, releaseName)
	binding := named[*rbacv1.ClusterRoleBinding](t, r.objs, releaseName)
	pod := dep.Spec.Template
	c := container(t, pod.Spec, "sluice")

	if !matches(t, dep.Spec.Selector, pod.Labels) {
		t.Errorf("the Deployment's selector %v does not select its pods %v", dep.Spec.Selector, pod.Labels)
	}
	for _, s := range all[*corev1.Service](r.objs) {
		if !matches(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, pod.Labels) {
			t.Errorf("Service %s's selector %v does not select sluice's pods %v", s.Name, s.Spec.Selector, pod.Labels)
		}
	}
	for _, p := range all[*policyv1.PodDisruptionBudget](r.objs) {
		if !matches(t, p.Spec.Selector, pod.Labels) || (p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil) {
			t.Errorf("PodDisruptionBudget %s: selector %v, maxUnavailable %v", p.Name, p.Spec.Selector, p.Spec.MaxUnavailable)
		}
	}
	if len(pod.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topology spread")
	}
	for _, tc := range pod.Spec.TopologySpreadConstraints {
		if !matches(t, tc.LabelSelector, pod.Labels) {
			t.Errorf("topology spread on %s does not select sluice's pods", tc.TopologyKey)
		}
	}
	for _, hpa := range all[*autoscalingv2.HorizontalPodAutoscaler](r.objs) {
		ref := hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != dep.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("the HPA scales %+v", ref)
		}
		if dep.Spec.Replicas != nil {
			t.Errorf("the Deployment sets replicas %d beside the HPA, which owns the count", *dep.Spec.Replicas)
		}
		if hpa.Spec.MinReplicas == nil || hpa.Spec.MaxReplicas <= *hpa.Spec.MinReplicas || len(hpa.Spec.Metrics) == 0 {
			t.Errorf("HPA replicas %v..%d, metrics %d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, len(hpa.Spec.Metrics))
		}
	}

	// The metadata cache's service account and what it may read.
	checkMetadataRBAC(t, pod.Spec, sa, binding, role, releaseNS)

	// Container ports: sluice's listeners, by the configuration sluice
	// reads; every Service port targets one by name and protocol.
	want := map[string]corev1.ContainerPort{
		"forward": {ContainerPort: port(t, cfg.Forward.Listen), Protocol: corev1.ProtocolTCP},
		"http":    {ContainerPort: port(t, cfg.HTTP.Listen), Protocol: corev1.ProtocolTCP},
		"api":     {ContainerPort: port(t, cfg.API.Listen), Protocol: corev1.ProtocolTCP},
	}
	if *cfg.Forward.UDPHeartbeat {
		want["forward-udp"] = corev1.ContainerPort{ContainerPort: port(t, cfg.Forward.Listen), Protocol: corev1.ProtocolUDP}
	}
	for name, listen := range map[string]string{"otlp-grpc": cfg.OTLP.GRPC.Listen, "otlp-http": cfg.OTLP.HTTP.Listen} {
		if listen != otlp.ListenDisabled {
			want[name] = corev1.ContainerPort{ContainerPort: port(t, listen), Protocol: corev1.ProtocolTCP}
		}
	}
	cports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		cports[p.Name] = corev1.ContainerPort{ContainerPort: p.ContainerPort, Protocol: p.Protocol}
	}
	if !maps.Equal(cports, want) {
		t.Errorf("container ports %v, sluice listens on %v", cports, want)
	}
	for _, s := range all[*corev1.Service](r.objs) {
		for _, p := range s.Spec.Ports {
			cp, ok := cports[p.TargetPort.String()]
			if !ok || cp.Protocol != p.Protocol || p.Port != cp.ContainerPort {
				t.Errorf("Service %s port %s (%d/%s) targets %s, not a container port", s.Name, p.Name, p.Port, p.Protocol, p.TargetPort.String())
			}
		}
	}
	if len(svc.Spec.Ports) != len(c.Ports) {
		t.Errorf("the Service has %d ports, the container %d", len(svc.Spec.Ports), len(c.Ports))
	}

	// Probes, resources, graceful termination, the memory limit.
	for name, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "api" {
			t.Errorf("probe %s: %+v", name, p)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
	}) {
		t.Error("GOMEMLIMIT does not follow the memory limit")
	}
	checkGrace(t, pod.Spec, c, cfg.ShutdownTimeout)
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container security context %+v", sc)
	}

	// The dashboard, byte for byte deploy/grafana/sluice.json.
	dash := named[*corev1.ConfigMap](t, r.objs, releaseName+"-dashboard")
	if dash.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard labels %v", dash.Labels)
	}
	dashboard, err := os.ReadFile("grafana/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	if dash.Data["sluice.json"] != string(dashboard) {
		t.Error("the dashboard ConfigMap is not deploy/grafana/sluice.json")
	}

	if problems := inlinedSecrets(r, doc); len(problems) > 0 {
		t.Errorf("secrets written into the rendered chart: %s", strings.Join(problems, "; "))
	}
	return cfg, dep
}

// secretName is a configuration key or variable that holds secrets.
var secretName = regexp.MustCompile(`(?i)(^|_)(password|passwd|secret|token|shared_key|api_key|access_key|access_key_id|secret_access_key|session_token|credentials)s?$`)

// envRef is a whole value that is a reference to the environment.
var envRef = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*(:-)?\}$`)

// inlinedSecrets lists what looks like a secret written into the
// rendered chart rather than referenced: a Secret, a configuration value
// of a secret's key that is not a ${VAR} reference, an environment
// variable with a secret's name and a literal value.
func inlinedSecrets(r rendered, doc map[string]any) []string {
	var out []string
	for _, o := range r.objs {
		if s, ok := o.(*corev1.Secret); ok {
			out = append(out, "Secret "+s.Name)
		}
	}
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				vs := []any{x}
				if list, ok := x.([]any); ok {
					vs = list
				}
				if secretName.MatchString(k) && slices.ContainsFunc(vs, func(x any) bool {
					s, ok := x.(string)
					return ok && s != "" && !envRef.MatchString(s)
				}) {
					out = append(out, fmt.Sprintf("config %s%s is a literal", at, k))
				}
				walk(at+k+".", x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s%d.", at, i), x)
			}
		}
	}
	walk("", doc)
	for _, d := range all[*appsv1.Deployment](r.objs) {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.Value != "" && secretName.MatchString(e.Name) {
					out = append(out, fmt.Sprintf("env %s is a literal", e.Name))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// The chart's defaults: the NATS subchart, its URL in sluice's
// configuration, the ServiceMonitor where the Prometheus Operator is.
func TestHelmDefaults(t *testing.T) {
	r := render(t, nil, monitoringAPI)
	cfg, dep := sluiceFromChart(t, r)

	if len(cfg.Sinks) != 1 || cfg.Sinks[0].Type() != "elasticsearch" {
		t.Errorf("default sinks %v", cfg.Sinks)
	}
	if cfg.Enrich.Enabled == nil || !*cfg.Enrich.Enabled {
		t.Error("enrichment is not on")
	}
	c := container(t, dep.Spec.Template.Spec, "sluice")
	if want := "ghcr.io/sluicelog/sluice:" + loadChart(t).Metadata.AppVersion; c.Image != want {
		t.Errorf("image %s, want %s", c.Image, want)
	}
	// Default values need no secret to exist: those referenced are optional.
	for _, e := range c.Env {
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && (ref.SecretKeyRef.Optional == nil || !*ref.SecretKeyRef.Optional) {
			t.Errorf("env %s needs the secret %s", e.Name, ref.SecretKeyRef.Name)
		}
	}
	if v := dep.Spec.Template.Spec.Volumes; slices.ContainsFunc(v, func(v corev1.Volume) bool { return v.Secret != nil }) {
		t.Errorf("default volumes need secrets: %+v", v)
	}

	// JetStream: the subchart's client Service, and a stream that the
	// cluster of deploy/nats/values.yaml can hold.
	natsService(t, r, cfg, "nats")
	nv := readNATSValues(t)
	if cfg.NATS.Stream.Replicas != nv.Config.Cluster.Replicas {
		t.Errorf("stream replicas %d on a %d-server cluster", cfg.NATS.Stream.Replicas, nv.Config.Cluster.Replicas)
	}
	store := resource.MustParse(nv.Config.JetStream.FileStore.MaxSize)
	if need := int64(cfg.NATS.Stream.MaxBytes) + int64(cfg.NATS.DeadLetter.MaxBytes); need > store.Value() {
		t.Errorf("the streams reserve %d bytes, JetStream's max_file_store is %s", need, store.String())
	}

	// The ServiceMonitor scrapes /metrics through the main Service only
	// (the other Services reach the same pods: twice the series).
	sm := serviceMonitor(t, r)
	if svcs := selected(t, r, sm); !slices.Equal(svcs, []string{releaseName}) {
		t.Errorf("the ServiceMonitor selects Services %v, want [%s]", svcs, releaseName)
	}

	// Without the Prometheus Operator's API, no ServiceMonitor.
	if bare := render(t, nil); len(bare.monitors) != 0 {
		t.Errorf("%d ServiceMonitors where the cluster has no monitoring.coreos.com/v1", len(bare.monitors))
	}

	// A change of configuration rolls the pods.
	other := render(t, map[string]any{"config": map[string]any{"log": map[string]any{"level": "debug"}}})
	odep := named[*appsv1.Deployment](t, other.objs, releaseName)
	a, b := dep.Spec.Template.Annotations["checksum/config"], odep.Spec.Template.Annotations["checksum/config"]
	if a == "" || a == b {
		t.Errorf("checksum/config %q, after a change of configuration %q", a, b)
	}
}

// The container and Service ports follow sluice's listen addresses, and
// a listener that is off has none.
func TestHelmPortsFollowConfig(t *testing.T) {
	r := render(t, map[string]any{"config": map[string]any{
		"forward": map[string]any{"listen": "0.0.0.0:24000", "udp_heartbeat": false},
		"api":     map[string]any{"listen": "[::]:9090"},
		"otlp": map[string]any{
			"grpc": map[string]any{"listen": "off"},
			"http": map[string]any{"listen": ":14318"},
		},
	}})
	_, dep := sluiceFromChart(t, r) // the ports sluice's own configuration code reads
	var got []string
	for _, p := range container(t, dep.Spec.Template.Spec, "sluice").Ports {
		got = append(got, fmt.Sprintf("%s %d/%s", p.Name, p.ContainerPort, p.Protocol))
	}
	want := []string{"forward 24000/TCP", "http 9880/TCP", "otlp-http 14318/TCP", "api 9090/TCP"}
	if !slices.Equal(got, want) {
		t.Errorf("container ports %q, want %q", got, want)
	}
	got = nil
	for _, p := range named[*corev1.Service](t, r.objs, releaseName).Spec.Ports {
		got = append(got, fmt.Sprintf("%s %d/%s", p.Name, p.Port, p.Protocol))
	}
	if !slices.Equal(got, want) {
		t.Errorf("Service ports %q, want %q", got, want)
	}
	if p := dep.Spec.Template.Annotations["prometheus.io/port"]; p != "9090" {
		t.Errorf("prometheus.io/port %q", p)
	}
}

// The headless Service: every listener on the pods' own addresses, and
// not scraped a second time.
func TestHelmHeadlessService(t *testing.T) {
	r := render(t, map[string]any{"headlessService": map[string]any{"enabled": true}}, monitoringAPI)
	sluiceFromChart(t, r)
	svc := named[*corev1.Service](t, r.objs, releaseName)
	headless := named[*corev1.Service](t, r.objs, releaseName+"-headless")
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !equality.Semantic.DeepEqual(headless.Spec.Ports, svc.Spec.Ports) {
		t.Errorf("headless Service: clusterIP %q, ports %v; the Service's %v", headless.Spec.ClusterIP, headless.Spec.Ports, svc.Spec.Ports)
	}
	if svcs := selected(t, r, serviceMonitor(t, r)); !slices.Equal(svcs, []string{releaseName}) {
		t.Errorf("the ServiceMonitor selects Services %v, want [%s]", svcs, releaseName)
	}
}

// natsService checks that sluice's nats.url is the NATS subchart's client
// Service, named name.
func natsService(t *testing.T, r rendered, cfg *config.Config, name string) {
	t.Helper()
	svc := named[*corev1.Service](t, r.nats, name)
	want := fmt.Sprintf("nats://%s.%s.svc.cluster.local:%d", svc.Name, svc.Namespace, svc.Spec.Ports[0].Port)
	if cfg.NATS.URL != want {
		t.Errorf("nats.url %s, the subchart's Service is %s", cfg.NATS.URL, want)
	}
}

// serviceMonitor returns the one ServiceMonitor, after checking that it
// scrapes /metrics on the API port in the release's namespace.
func serviceMonitor(t *testing.T, r rendered) *unstructured.Unstructured {
	t.Helper()
	if len(r.monitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(r.monitors))
	}
	sm := r.monitors[0]
	if sm.GetKind() != "ServiceMonitor" || sm.GetName() != releaseName || sm.GetNamespace() != releaseNS {
		t.Errorf("ServiceMonitor %s %s/%s", sm.GetKind(), sm.GetNamespace(), sm.GetName())
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v", endpoints)
	}
	ep, _ := endpoints[0].(map[string]any)
	if ep["port"] != "api" || ep["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %v, want port api, path /metrics", ep)
	}
	ns, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
	if !slices.Equal(ns, []string{releaseNS}) {
		t.Errorf("ServiceMonitor namespaces %v", ns)
	}
	return sm
}

// selected lists the Services a ServiceMonitor's selector picks.
func selected(t *testing.T, r rendered, sm *unstructured.Unstructured) []string {
	t.Helper()
	sel, _, err := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if err != nil || len(sel) == 0 {
		t.Fatalf("ServiceMonitor selector %v: %v", sel, err)
	}
	var out []string
	for _, s := range all[*corev1.Service](r.objs) {
		if matches(t, &metav1.LabelSelector{MatchLabels: sel}, s.Labels) {
			out = append(out, s.Name)
		}
	}
	return out
}

// An EKS installation (examples/eks-values.yaml): IRSA, an internal NLB,
// the AWS sinks, secrets from existing Secrets, an external JetStream.
func TestHelmEKS(t *testing.T) {
	r := render(t, values(t, "examples/eks-values.yaml"), monitoringAPI)
	cfg, dep := sluiceFromChart(t, r)
	spec := dep.Spec.Template.Spec
	c := container(t, spec, "sluice")

	sa := named[*corev1.ServiceAccount](t, r.objs, releaseName)
	if arn := sa.Annotations["eks.amazonaws.com/role-arn"]; !regexp.MustCompile(`^arn:aws:iam::\d{12}:role/.+$`).MatchString(arn) {
		t.Errorf("IRSA role annotation %q", arn)
	}

	// The internal NLB: forwarders' ports, not the API's.
	lb := named[*corev1.Service](t, r.objs, releaseName+"-internal")
	if lb.Spec.Type != corev1.ServiceTypeLoadBalancer || lb.Annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] != "internal" {
		t.Errorf("load balancer %s, annotations %v", lb.Spec.Type, lb.Annotations)
	}
	var names []string
	for _, p := range lb.Spec.Ports {
		names = append(names, p.Name)
	}
	if want := []string{"forward", "http", "otlp-grpc", "otlp-http"}; !slices.Equal(names, want) {
		t.Errorf("load balancer ports %v, want %v", names, want)
	}
	sm := serviceMonitor(t, r)
	if svcs := selected(t, r, sm); !slices.Equal(svcs, []string{releaseName}) {
		t.Errorf("the ServiceMonitor selects Services %v, want [%s]", svcs, releaseName)
	}
	if sm.GetLabels()["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v", sm.GetLabels())
	}

	// The AWS sinks, their region from the environment.
	var types []string
	for i := range cfg.Sinks {
		types = append(types, cfg.Sinks[i].Type())
		if awsRegion(cfg.Sinks[i]) != "eu-west-1" {
			t.Errorf("sink %s: region %q", cfg.Sinks[i].Name, awsRegion(cfg.Sinks[i]))
		}
	}
	if !slices.Equal(types, []string{"cloudwatch", "firehose"}) {
		t.Errorf("EKS sinks %v", types)
	}

	// JetStream: the external cluster, no subchart.
	if cfg.NATS.URL != "tls://nats.example.internal:4222" || len(r.nats) != 0 {
		t.Errorf("nats.url %s with %d subchart resources", cfg.NATS.URL, len(r.nats))
	}

	// Every file sluice reads comes from a Secret mounted where the
	// configuration says, and docs/DEPLOY.md tells how to create each.
	files := []string{cfg.NATS.CredsFile, cfg.Forward.Security.SharedKeyFile, cfg.Forward.TLS.CertFile, cfg.Forward.TLS.KeyFile,
		cfg.HTTP.TLS.CertFile, cfg.HTTP.TLS.KeyFile, cfg.OTLP.HTTP.TLS.CertFile, cfg.OTLP.HTTP.TLS.KeyFile, cfg.OTLP.GRPC.TLS.CertFile, cfg.OTLP.GRPC.TLS.KeyFile}
	if len(cfg.HTTP.Auth.TokenFiles) == 0 || len(cfg.OTLP.Auth.TokenFiles) == 0 {
		t.Error("HTTP or OTLP ingest takes no bearer token")
	}
	files = append(files, cfg.HTTP.Auth.TokenFiles...)
	files = append(files, cfg.OTLP.Auth.TokenFiles...)
	for _, f := range files {
		if f == "" {
			t.Fatal("ingest is not protected: shared key, TLS, tokens and NATS credentials are expected")
		}
		secretFile(t, spec, c, f)
	}
	doc, err := os.ReadFile("../docs/DEPLOY.md")
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretsOf(spec)
	if len(secrets) != 3 {
		t.Errorf("secrets %v", secrets)
	}
	for _, s := range secrets {
		if !strings.Contains(string(doc), s) {
			t.Errorf("docs/DEPLOY.md does not mention the secret %s", s)
		}
	}
}

// The chart and `kubectl apply -k deploy/kubernetes/base` make the same
// resources, ports and probes; the chart adds the dashboard and OTLP.
func TestHelmMatchesKustomizeBase(t *testing.T) {
	base := kustomize(t, "kubernetes/base")
	r := render(t, nil)

	hash := regexp.MustCompile(`-[a-z0-9]{10}$`)
	var want objects
	for _, o := range base {
		if _, ok := o.(*corev1.Namespace); ok {
			continue // --create-namespace
		}
		if cm, ok := o.(*corev1.ConfigMap); ok {
			cm = cm.DeepCopy()
			cm.Name = hash.ReplaceAllString(cm.Name, "")
			o = cm
		}
		want = append(want, o)
	}
	got, baseNames := kindNames(r.objs), kindNames(want)
	for _, n := range baseNames {
		if !slices.Contains(got, n) {
			t.Errorf("the base has %s, the chart does not", n)
		}
	}
	for _, n := range got {
		if !slices.Contains(baseNames, n) && n != "*v1.ConfigMap/"+releaseName+"-dashboard" {
			t.Errorf("the chart has %s, the base does not", n)
		}
	}

	// The chart's listeners are the base's.
	bdep := one[*appsv1.Deployment](t, base, "sluice")
	cdep := named[*appsv1.Deployment](t, r.objs, releaseName)
	bc, cc := container(t, bdep.Spec.Template.Spec, "sluice"), container(t, cdep.Spec.Template.Spec, "sluice")
	type portOf struct {
		Port     int32
		Protocol corev1.Protocol
	}
	cports := func(c corev1.Container) map[string]portOf {
		m := map[string]portOf{}
		for _, p := range c.Ports {
			m[p.Name] = portOf{p.ContainerPort, p.Protocol}
		}
		return m
	}
	sports := func(s *corev1.Service) map[string]portOf {
		m := map[string]portOf{}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() != p.Name {
				t.Errorf("Service %s port %s targets %s", s.Name, p.Name, p.TargetPort.String())
			}
			m[p.Name] = portOf{p.Port, p.Protocol}
		}
		return m
	}
	samePorts := func(what string, base, chart map[string]portOf) {
		t.Helper()
		for name, p := range base {
			if chart[name] != p {
				t.Errorf("%s %s: the base's is %v, the chart's %v", what, name, p, chart[name])
			}
		}
		for name := range chart {
			if _, ok := base[name]; !ok {
				t.Errorf("%s %s is the chart's only", what, name)
			}
		}
	}
	samePorts("container port", cports(bc), cports(cc))
	samePorts("Service port", sports(one[*corev1.Service](t, base, "sluice")), sports(named[*corev1.Service](t, r.objs, releaseName)))

	// Probes, resources, termination, security: the same pod.
	same := func(what string, a, b any) {
		t.Helper()
		if !equality.Semantic.DeepEqual(a, b) {
			t.Errorf("%s: the base's %+v, the chart's %+v", what, a, b)
		}
	}
	same("readiness probe", bc.ReadinessProbe, cc.ReadinessProbe)
	same("liveness probe", bc.LivenessProbe, cc.LivenessProbe)
	same("resources", bc.Resources, cc.Resources)
	same("lifecycle", bc.Lifecycle, cc.Lifecycle)
	same("container security context", bc.SecurityContext, cc.SecurityContext)
	same("args", bc.Args, cc.Args)
	bs, cs := bdep.Spec.Template.Spec, cdep.Spec.Template.Spec
	same("pod security context", bs.SecurityContext, cs.SecurityContext)
	same("termination grace period", ptr.Deref(bs.TerminationGracePeriodSeconds, 0), ptr.Deref(cs.TerminationGracePeriodSeconds, 0))
	same("strategy", bdep.Spec.Strategy, cdep.Spec.Strategy)
	for i := range bs.TopologySpreadConstraints {
		b, c := bs.TopologySpreadConstraints[i], cs.TopologySpreadConstraints[i]
		b.LabelSelector, c.LabelSelector = nil, nil // the chart's selects its release
		same("topology spread", b, c)
	}
	same("HPA", one[*autoscalingv2.HorizontalPodAutoscaler](t, base, "sluice").Spec, named[*autoscalingv2.HorizontalPodAutoscaler](t, r.objs, releaseName).Spec)
	same("ClusterRole rules", one[*rbacv1.ClusterRole](t, base, "sluice").Rules, named[*rbacv1.ClusterRole](t, r.objs, releaseName).Rules)

	// The same image and JetStream.
	image, tag, _ := strings.Cut(cc.Image, ":")
	if bc.Image != image+":"+tag || tag != loadChart(t).Metadata.AppVersion {
		t.Errorf("image: the base's %s, the chart's %s (appVersion %s)", bc.Image, cc.Image, loadChart(t).Metadata.AppVersion)
	}
	bcfg, _ := sluiceInCluster(t, base)
	ccfg, _, _ := chartConfig(t, r)
	if bcfg.NATS.URL != ccfg.NATS.URL || bcfg.NATS.Stream != ccfg.NATS.Stream || bcfg.NATS.DeadLetter != ccfg.NATS.DeadLetter {
		t.Errorf("JetStream: the base's %s %+v, the chart's %s %+v", bcfg.NATS.URL, bcfg.NATS.Stream, ccfg.NATS.URL, ccfg.NATS.Stream)
	}
}

// The NATS subchart: the dependency, the values of deploy/nats/values.yaml,
// and sluice's URL for another name of its Service.
func TestHelmNATS(t *testing.T) {
	ch := loadChart(t)
	deps := ch.Metadata.Dependencies
	if len(deps) != 1 || deps[0].Name != "nats" || deps[0].Repository != "https://nats-io.github.io/k8s/helm/charts/" || deps[0].Condition != "nats.enabled" {
		t.Fatalf("dependencies %+v", deps)
	}
	raw, err := os.ReadFile("nats/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		NATS map[string]any `yaml:"nats"`
	}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if v.NATS["enabled"] != true {
		t.Errorf("nats.enabled %v", v.NATS["enabled"])
	}
	delete(v.NATS, "enabled")
	if !equality.Semantic.DeepEqual(v.NATS, want) {
		got, _ := json.Marshal(v.NATS)
		w, _ := json.Marshal(want)
		t.Errorf("the chart's nats values differ from deploy/nats/values.yaml:\n%s\n%s", got, w)
	}

	// Without fullnameOverride the subchart's Service is <release>-nats.
	r := render(t, map[string]any{"nats": map[string]any{"fullnameOverride": nil}})
	cfg, _, _ := chartConfig(t, r)
	natsService(t, r, cfg, releaseName+"-nats")
}

// The chart's copy of the dashboard (Helm reads only the chart's own
// directory) is deploy/grafana/sluice.json.
func TestHelmDashboardCopy(t *testing.T) {
	a, err := os.ReadFile("grafana/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(chartDir + "/dashboards/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("deploy/helm/sluice/dashboards/sluice.json differs from deploy/grafana/sluice.json: cp deploy/grafana/sluice.json deploy/helm/sluice/dashboards/")
	}
}

// `helm lint`: no errors or warnings with either values file, but for the
// NATS subchart that `helm dependency build` downloads.
func TestHelmLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(testKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"values.yaml", "examples/eks-values.yaml"} {
		res := lint.RunAll(chartDir, values(t, file), releaseNS, lint.WithKubeVersion(kv))
		for _, m := range res.Messages {
			missingNATS := m.Severity == support.WarningSev && strings.Contains(m.Err.Error(), "missing these dependencies: nats")
			if m.Severity > support.InfoSev && !missingNATS {
				t.Errorf("%s: %s", file, m)
			}
		}
	}
}

// A wrong value fails the install, with a message that names it.
func TestHelmRejectsWrongValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals string
		want string
	}{
		{"replicas as a word", `replicaCount: three`, "replicaCount"},
		{"unknown top-level key", `replicas: 3`, "replicas"},
		{"unknown key in a section", `autoscaling: {enabled: true, maxReplica: 4}`, "maxReplica"},
		{"service type", `service: {type: Ingress}`, "type"},
		{"load balancer port", `internalLoadBalancer: {enabled: true, ports: [ssh]}`, "ports"},
		{"secret mount without a path", `secretMounts: [{name: tls, secretName: sluice-tls}]`, "mountPath"},
		{"NATS URL scheme", `{nats: {enabled: false}, config: {nats: {url: "http://nats:4222"}}}`, "url"},
		{"no JetStream", `nats: {enabled: false}`, "config.nats.url"},
		{"two JetStreams", `config: {nats: {url: "nats://nats:4222"}}`, "pick one"},
		{"a port the chart cannot open", `config: {forward: {listen: "${FORWARD}"}}`, "numeric port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v map[string]any
			if err := sigsyaml.Unmarshal([]byte(tc.vals), &v); err != nil {
				t.Fatal(err)
			}
			_, err := install(loadChart(t), v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one naming %q", tc.vals, err, tc.want)
			}
		})
	}
}

// The check for inlined secrets finds them.
func TestHelmInlinedSecretsFound(t *testing.T) {
	r := render(t, map[string]any{
		"config": map[string]any{
			"sinks": []any{map[string]any{"name": "es", "elasticsearch": map[string]any{
				"urls": []any{"http://es:9200"}, "username": "elastic", "password": "hunter2"}}},
			"otlp": map[string]any{"auth": map[string]any{"tokens": []any{"${OTLP_TOKEN}", "hunter2hunter2hunter2"}}},
		},
		"env": []any{
			map[string]any{"name": "ES_PASSWORD", "value": "hunter2"},
			map[string]any{"name": "OTLP_TOKEN", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "otlp", "key": "token"}}},
		},
	})
	_, doc, _ := chartConfig(t, r)
	got := inlinedSecrets(r, doc)
	want := []string{"config otlp.auth.tokens is a literal", "config sinks.0.elasticsearch.password is a literal", "env ES_PASSWORD is a literal"}
	if !slices.Equal(got, want) {
		t.Errorf("found %q, want %q", got, want)
	}
}
