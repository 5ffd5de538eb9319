package enrich

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/enrich/kube"
	"github.com/sluicelog/sluice/internal/component"
)

// mapPods is the map-backed pod metadata fake.
type mapPods map[string]*kube.Pod

func (m mapPods) Pod(_ context.Context, ns, name string) (*kube.Pod, bool) {
	p, ok := m[ns+"/"+name]
	return p, ok
}

const (
	nginxDockerID = "b90a89309ac90fff2972822c66f11736933000c5aa6376dff0c11a441fa427ee"
	nginxTag      = "kube.var.log.containers.nginx-5468c5d4d7-n2swr_default_nginx-" + nginxDockerID + ".log"
	nginxLine     = "10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] \"GET / HTTP/1.1\" 200 612 \"-\" \"hey/0.0.1\" \"52.95.4.2\"\n"
)

// seedPods holds the pods of ../shared/seeds/002 (the nginx demo) and an
// application pod.
func seedPods() mapPods {
	return mapPods{
		"default/nginx-5468c5d4d7-n2swr": {
			Name: "nginx-5468c5d4d7-n2swr", Namespace: "default", UID: "198f7dd2-2270-11ea-be47-0a5d932f5920",
			Node:        "ip-10-1-128-166.us-east-2.compute.internal",
			Labels:      map[string]string{"app": "nginx", "pod-template-hash": "5468c5d4d7"},
			Annotations: map[string]string{"fluentbit.io/parser": "nginx", "kubernetes.io/psp": "eks.privileged"},
			Containers: []kube.Container{{Name: "nginx", Image: "nginx:latest",
				ImageID:     "docker-pullable://nginx@sha256:0e61b143db3110f3b8ae29a67f107d5536b71a7c1f10afb14d4228711fc65a13",
				ContainerID: "docker://" + nginxDockerID}},
		},
		"shop/api-1": {
			Name: "api-1", Namespace: "shop", UID: "u-api-1", Node: "node-a",
			Labels:          map[string]string{"app": "api"},
			NamespaceLabels: map[string]string{"team": "payments"},
			Containers:      []kube.Container{{Name: "api", Image: "shop/api:1.2", ContainerID: "containerd://" + nginxDockerID}},
		},
		"shop/noisy": {
			Name: "noisy", Namespace: "shop", UID: "u-noisy", Node: "node-a",
			Annotations: map[string]string{"fluentbit.io/exclude": "true"},
			Containers:  []kube.Container{{Name: "noisy"}},
		},
		"shop/multi": {
			Name: "multi", Namespace: "shop", UID: "u-multi", Node: "node-b",
			Annotations: map[string]string{"fluentbit.io/parser": "json", "fluentbit.io/parser_stderr-web": "apache_error",
				"fluentbit.io/exclude-sidecar": "true"},
			Containers: []kube.Container{{Name: "web"}, {Name: "sidecar"}},
		},
	}
}

func newEnricher(t testing.TB, edit func(*Config), pods Pods) (*Enricher, *prometheus.Registry) {
	t.Helper()
	cfg := Config{MergeLog: ptr(true), MergeLogKey: "data"}
	if edit != nil {
		edit(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e, err := New(cfg, pods, component.Settings{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return e, reg
}

func ptr[T any](v T) *T { return &v }

func enc(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// asJSON decodes a msgpack record and re-encodes it as generic JSON values.
func asJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatalf("output is not a msgpack map: %v", err)
	}
	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(j, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func fromJSON(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSeedNginxExample reproduces the record of the nginx demo in
// ../shared/seeds/002: the access line parsed by the annotated nginx parser
// under "data", the kubernetes map of the pod (plus container_image).
func TestSeedNginxExample(t *testing.T) {
	e, _ := newEnricher(t, nil, seedPods())
	rec := enc(t, map[string]any{"log": nginxLine, "stream": "stdout", "time": "2019-12-19T17:41:12.70630778Z"})
	out, res, err := e.Enrich(context.Background(), nil, nginxTag, rec)
	if err != nil || res.Drop {
		t.Fatalf("Enrich: %v %+v", err, res)
	}
	want := fromJSON(t, `{
   "data":{"agent":"hey/0.0.1","code":"200","host":"-","method":"GET","path":"/","referer":"-","remote":"10.1.128.166","size":"612","user":"-"},
   "kubernetes":{
      "annotations":{"fluentbit.io/parser":"nginx","kubernetes.io/psp":"eks.privileged"},
      "container_hash":"0e61b143db3110f3b8ae29a67f107d5536b71a7c1f10afb14d4228711fc65a13",
      "container_image":"nginx:latest",
      "container_name":"nginx",
      "docker_id":"b90a89309ac90fff2972822c66f11736933000c5aa6376dff0c11a441fa427ee",
      "host":"ip-10-1-128-166.us-east-2.compute.internal",
      "labels":{"app":"nginx","pod-template-hash":"5468c5d4d7"},
      "namespace_name":"default",
      "pod_id":"198f7dd2-2270-11ea-be47-0a5d932f5920",
      "pod_name":"nginx-5468c5d4d7-n2swr"
   },
   "log":"10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] \"GET / HTTP/1.1\" 200 612 \"-\" \"hey/0.0.1\" \"52.95.4.2\"\n",
   "stream":"stdout",
   "time":"2019-12-19T17:41:12.70630778Z"
}`)
	if got := asJSON(t, out); !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		t.Fatalf("got\n%s", g)
	}
	if !res.HasTime || !res.Time.Equal(time.Date(2019, 12, 19, 17, 41, 12, 0, time.UTC)) {
		t.Errorf("time %v %v, want the access line's", res.Time, res.HasTime)
	}
}

// TestJSONLogMergesUnderData is the seed's JSON application log.
func TestJSONLogMergesUnderData(t *testing.T) {
	e, _ := newEnricher(t, nil, seedPods())
	line := `{ "message": "A new user signed up!", "service": "user-service", "metadata": { "source": "mobile" } }`
	out, _, err := e.Enrich(context.Background(), nil, "kube.var.log.containers.api-1_shop_api-"+nginxDockerID+".log",
		enc(t, map[string]any{"log": line + "\n", "stream": "stdout"}))
	if err != nil {
		t.Fatal(err)
	}
	got := asJSON(t, out)
	if !reflect.DeepEqual(got["data"], fromJSON(t, line)) || got["log"] != line+"\n" {
		t.Fatalf("data %v log %q", got["data"], got["log"])
	}
	k := got["kubernetes"].(map[string]any)
	if k["pod_name"] != "api-1" || k["container_image"] != "shop/api:1.2" || k["annotations"] != nil || k["docker_id"] != nginxDockerID ||
		k["namespace_labels"].(map[string]any)["team"] != "payments" {
		t.Fatalf("kubernetes %v", k)
	}
}

func TestMergeOptions(t *testing.T) {
	line := `{"level":"info","msg":"hi"}`
	rec := map[string]any{"log": line, "stream": "stdout"}
	tag := "kube.var.log.containers.api-1_shop_api-" + nginxDockerID + ".log"

	e, _ := newEnricher(t, func(c *Config) { c.MergeLogKey = ""; c.KeepLog = ptr(false) }, seedPods())
	out, _, _ := e.Enrich(context.Background(), nil, tag, enc(t, rec))
	got := asJSON(t, out)
	if got["level"] != "info" || got["msg"] != "hi" || got["log"] != nil {
		t.Fatalf("top-level merge without the log: %v", got)
	}
	e, _ = newEnricher(t, func(c *Config) { c.MergeLog = ptr(false) }, seedPods())
	out, _, _ = e.Enrich(context.Background(), nil, tag, enc(t, rec))
	if got := asJSON(t, out); got["data"] != nil || got["log"] != line {
		t.Fatalf("merge off: %v", got)
	}
	e, _ = newEnricher(t, func(c *Config) { c.Labels = ptr(false) }, seedPods())
	out, _, _ = e.Enrich(context.Background(), nil, tag, enc(t, rec))
	if k := asJSON(t, out)["kubernetes"].(map[string]any); k["labels"] != nil {
		t.Fatalf("labels switched off: %v", k)
	}
}

// TestPodFromRecordFields identifies the pod from the fields a Fargate
// sidecar sends, and completes its kubernetes map instead of replacing it.
func TestPodFromRecordFields(t *testing.T) {
	e, _ := newEnricher(t, nil, seedPods())
	rec := enc(t, map[string]any{"log": "plain text", "kubernetes": map[string]any{
		"pod_name": "api-1", "namespace_name": "shop", "container_name": "api", "host": "fargate-ip-10-0-0-1"}})
	out, _, err := e.Enrich(context.Background(), nil, "app.sidecar", rec)
	if err != nil {
		t.Fatal(err)
	}
	k := asJSON(t, out)["kubernetes"].(map[string]any)
	if k["host"] != "fargate-ip-10-0-0-1" || k["pod_id"] != "u-api-1" || k["container_image"] != "shop/api:1.2" ||
		k["labels"].(map[string]any)["app"] != "api" {
		t.Fatalf("kubernetes %v: the record's keys must stay, the rest be added", k)
	}
	if n := len(asJSON(t, out)); n != 2 {
		t.Fatalf("%d top-level fields, want log and kubernetes", n)
	}
}

func TestExcludeAnnotation(t *testing.T) {
	e, reg := newEnricher(t, nil, seedPods())
	_, res, _ := e.Enrich(context.Background(), nil, "kube.var.log.containers.noisy_shop_noisy-"+nginxDockerID+".log",
		enc(t, map[string]any{"log": "x"}))
	if !res.Drop {
		t.Fatal("a pod annotated fluentbit.io/exclude: true was not dropped")
	}
	_, res, _ = e.Enrich(context.Background(), nil, "kube.var.log.containers.multi_shop_sidecar-"+nginxDockerID+".log",
		enc(t, map[string]any{"log": "x", "stream": "stdout"}))
	if !res.Drop {
		t.Fatal("fluentbit.io/exclude-sidecar did not drop the sidecar's logs")
	}
	_, res, _ = e.Enrich(context.Background(), nil, "kube.var.log.containers.multi_shop_web-"+nginxDockerID+".log",
		enc(t, map[string]any{"log": "x", "stream": "stdout"}))
	if res.Drop {
		t.Fatal("the web container was dropped")
	}
	if got := testutil.ToFloat64(e.m.dropped.WithLabelValues("exclude")); got != 2 {
		t.Errorf("dropped %v, want 2", got)
	}
	_ = reg
	e, _ = newEnricher(t, func(c *Config) { c.AnnotationExclude = ptr(false) }, seedPods())
	if _, res, _ = e.Enrich(context.Background(), nil, "kube.var.log.containers.noisy_shop_noisy-"+nginxDockerID+".log",
		enc(t, map[string]any{"log": "x"})); res.Drop {
		t.Fatal("exclusion switched off but the record was dropped")
	}
}

// TestParserAnnotationVariants picks the most specific annotation.
func TestParserAnnotationVariants(t *testing.T) {
	e, _ := newEnricher(t, nil, seedPods())
	tag := "kube.var.log.containers.multi_shop_web-" + nginxDockerID + ".log"
	errLine := "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/home/live/ap/htdocs/test"
	out, _, _ := e.Enrich(context.Background(), nil, tag, enc(t, map[string]any{"log": errLine, "stream": "stderr"}))
	data, _ := asJSON(t, out)["data"].(map[string]any)
	if data["level"] != "error" || data["client"] != "127.0.0.1" {
		t.Fatalf("stderr of web: apache_error parser expected, data %v", data)
	}
	out, _, _ = e.Enrich(context.Background(), nil, tag, enc(t, map[string]any{"log": `{"a":1}`, "stream": "stdout"}))
	if d, _ := asJSON(t, out)["data"].(map[string]any); d["a"] != 1.0 {
		t.Fatalf("stdout of web: json parser expected, data %v", d)
	}
}

// TestContainerLines parses CRI and docker JSON lines the forwarder did not.
func TestContainerLines(t *testing.T) {
	e, _ := newEnricher(t, func(c *Config) { c.MergeLog = ptr(false) }, seedPods())
	tag := "kube.var.log.containers.api-1_shop_api-" + nginxDockerID + ".log"
	out, res, _ := e.Enrich(context.Background(), nil, tag, enc(t, map[string]any{"log": "2019-12-19T17:41:12.706307780Z stderr F hello world"}))
	got := asJSON(t, out)
	if got["log"] != "hello world" || got["stream"] != "stderr" || !res.HasTime || res.Time.Nanosecond() != 706307780 {
		t.Fatalf("CRI line: %v time %v", got, res.Time)
	}
	out, res, _ = e.Enrich(context.Background(), nil, tag, enc(t, map[string]any{"log": `{"log":"hello\n","stream":"stdout","time":"2019-12-19T17:41:12.70630778Z"}`}))
	got = asJSON(t, out)
	if got["log"] != "hello\n" || got["stream"] != "stdout" || !res.HasTime {
		t.Fatalf("docker line: %v", got)
	}
}

// TestUnparsableLinePassesThrough: a line the annotated parser cannot
// parse stays as it is, counted; nothing is dropped.
func TestUnparsableLinePassesThrough(t *testing.T) {
	e, _ := newEnricher(t, nil, seedPods())
	out, res, err := e.Enrich(context.Background(), nil, nginxTag, enc(t, map[string]any{"log": "not an access line", "stream": "stdout"}))
	if err != nil || res.Drop {
		t.Fatal(err, res)
	}
	got := asJSON(t, out)
	if got["log"] != "not an access line" || got["data"] != nil || got["kubernetes"] == nil {
		t.Fatalf("got %v", got)
	}
	if n := testutil.ToFloat64(e.m.unparsed.WithLabelValues("nginx")); n != 1 {
		t.Fatalf("unparsed %v, want 1", n)
	}
}

// TestNoPodStillParses: without metadata (unknown pod, or no cluster) the
// record keeps its fields and still merges its JSON log.
func TestNoPodStillParses(t *testing.T) {
	for name, pods := range map[string]Pods{"unknown pod": seedPods(), "no cluster": nil} {
		e, _ := newEnricher(t, nil, pods)
		out, _, err := e.Enrich(context.Background(), nil, "kube.var.log.containers.gone_shop_x-"+nginxDockerID+".log",
			enc(t, map[string]any{"log": `{"a":"b"}`}))
		if err != nil {
			t.Fatal(err)
		}
		got := asJSON(t, out)
		if got["kubernetes"] != nil || got["data"].(map[string]any)["a"] != "b" {
			t.Fatalf("%s: %v", name, got)
		}
	}
}

func TestNotAMapPassesUnchanged(t *testing.T) {
	e, _ := newEnricher(t, nil, seedPods())
	in := enc(t, []any{1, 2})
	out, _, err := e.Enrich(context.Background(), nil, nginxTag, in)
	if err == nil || string(out) != string(in) {
		t.Fatalf("a non-map record: %v, out %x", err, out)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{TagRegex: "("}
	c.Kubernetes.SetDefaults()
	err := c.Validate()
	for _, f := range []string{"tag_regex:"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("%v does not name %s", err, f)
		}
	}
	c = Config{TagRegex: "^(?<x>.*)$"}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "pod_name") {
		t.Errorf("a regex without pod_name: %v", err)
	}
}

// BenchmarkEnrich enriches a typical container record: JSON log merged,
// kubernetes map added (cached per pod).
func BenchmarkEnrich(b *testing.B) {
	e, _ := newEnricher(b, nil, seedPods())
	rec := enc(b, map[string]any{"log": `{"level":"info","msg":"GET /api/v1/items 200","latency_ms":12.5,"user_id":42}` + "\n", "stream": "stdout", "time": "2026-11-22T07:00:00.123456789Z"})
	tag := "kube.var.log.containers.api-1_shop_api-" + nginxDockerID + ".log"
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		out, _, err := e.Enrich(context.Background(), dst[:0], tag, rec)
		if err != nil {
			b.Fatal(err)
		}
		dst = out
	}
}

// BenchmarkEnrichNginx is the annotated nginx access line.
func BenchmarkEnrichNginx(b *testing.B) {
	e, _ := newEnricher(b, nil, seedPods())
	rec := enc(b, map[string]any{"log": nginxLine, "stream": "stdout", "time": "2019-12-19T17:41:12.70630778Z"})
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		dst, _, _ = e.Enrich(context.Background(), dst[:0], nginxTag, rec)
	}
}

// TestAnnotationKeys looks up each of Fluent Bit's variants, most specific
// first, with names long enough to outgrow the key buffer.
func TestAnnotationKeys(t *testing.T) {
	long := strings.Repeat("c", 200)
	a := map[string]string{
		"p":                   "base",
		"p_stderr":            "stream",
		"p-" + long:           "container",
		"p_stdout-" + long:    "both",
		"p_stderr-web":        "both-web",
		"fluentbit.io/parser": "other",
	}
	for _, c := range []struct {
		stream, container, want string
	}{
		{"stdout", long, "both"},
		{"stderr", long, "container"},
		{"stderr", "web", "both-web"},
		{"stderr", "api", "stream"},
		{"", long, "container"},
		{"stderr", strings.Repeat("x", 200), "stream"}, // after the buffer grew
		{"stderr", "", "stream"},
		{"stdout", "api", "base"},
		{"", "", "base"},
	} {
		if got, ok := annotation(a, "p", []byte(c.stream), c.container); !ok || got != c.want {
			t.Errorf("stream %q, container of %d bytes: %q %v, want %q", c.stream, len(c.container), got, ok, c.want)
		}
	}
	if got, ok := annotation(map[string]string{"q": "x"}, "p", []byte("stdout"), "api"); ok {
		t.Errorf("no p annotation: got %q", got)
	}
}

// TestAnnotatedLineAllocatesNothing: the annotation lookups (four keys put
// together for each of exclude and parser) and the parse of an annotated
// nginx line allocate nothing per record.
func TestAnnotatedLineAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race (go test -run Allocate ./enrich/)")
	}
	e, _ := newEnricher(t, nil, seedPods())
	rec := enc(t, map[string]any{"log": nginxLine, "stream": "stdout", "time": "2019-12-19T17:41:12.70630778Z"})
	dst := make([]byte, 0, 4096)
	dst, res, err := e.Enrich(context.Background(), dst, nginxTag, rec)
	if err != nil || res.Drop {
		t.Fatalf("Enrich: %v %+v", err, res)
	}
	if data, _ := asJSON(t, dst)["data"].(map[string]any); data["size"] != "612" || data["code"] != "200" {
		t.Fatalf("the annotated nginx parser did not run: data %v", data)
	}
	if n := testing.AllocsPerRun(200, func() { dst, _, _ = e.Enrich(context.Background(), dst[:0], nginxTag, rec) }); n != 0 {
		t.Errorf("%v allocations per record", n)
	}
}
