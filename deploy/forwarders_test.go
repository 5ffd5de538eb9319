package deploy_test

import (
	"bufio"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluicelog/sluice/cmd/sluice/config"
)

// target is where forwarders must send: the base Service's DNS name and
// ports, and sluice's own configuration.
type target struct {
	host  string
	ports map[string]int32 // Service port name -> port
	cfg   *config.Config
}

func sluiceTarget(t *testing.T) target {
	t.Helper()
	objs := kustomize(t, "kubernetes/base")
	cfg, _ := sluiceInCluster(t, objs)
	svc := one[*corev1.Service](t, objs, "sluice")
	tg := target{host: svc.Name + "." + svc.Namespace + ".svc.cluster.local", ports: map[string]int32{}, cfg: cfg}
	for _, p := range svc.Spec.Ports {
		if p.Protocol == corev1.ProtocolTCP {
			tg.ports[p.Name] = p.Port
		}
	}
	return tg
}

// envRefs finds ${VAR} references (Fluent Bit's syntax).
var envRefs = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// checkEnv fails for each variable a config uses that the container does
// not define.
func checkEnv(t *testing.T, c corev1.Container, refs [][]string, what string) {
	t.Helper()
	for _, r := range refs {
		if _, ok := envLookup(c)(r[1]); !ok {
			t.Errorf("%s uses %s, which container %s does not define", what, r[1], c.Name)
		}
	}
}

// fluentBit is the part of a Fluent Bit YAML configuration checked here.
type fluentBit struct {
	Service  map[string]any `yaml:"service"`
	Pipeline struct {
		Inputs  []map[string]any `yaml:"inputs"`
		Outputs []map[string]any `yaml:"outputs"`
	} `yaml:"pipeline"`
}

func str(m map[string]any, key string) string {
	if v, ok := m[key]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

// on reads Fluent Bit's booleans.
func on(m map[string]any, key string) bool {
	switch strings.ToLower(str(m, key)) {
	case "true", "on", "yes":
		return true
	}
	return false
}

// fluentBitDaemonSet builds a Fluent Bit kustomization and checks what
// every variant shares; it returns the output section.
func fluentBitDaemonSet(t *testing.T, dir string, tg target) (map[string]any, corev1.Container) {
	t.Helper()
	objs := kustomize(t, dir)
	ds := one[*appsv1.DaemonSet](t, objs, "fluent-bit")
	if ds.Namespace != "logging" {
		t.Errorf("namespace %q", ds.Namespace)
	}
	if !matches(t, ds.Spec.Selector, ds.Spec.Template.Labels) {
		t.Error("the DaemonSet's selector does not select its pods")
	}
	spec := ds.Spec.Template.Spec
	c := container(t, spec, "fluent-bit")
	if len(c.Args) != 2 || c.Args[0] != "-c" {
		t.Fatalf("args %q", c.Args)
	}
	cm := configMap(t, objs, spec, mountFor(t, spec, c, c.Args[1]).Name)
	raw, ok := cm.Data[path.Base(c.Args[1])]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Name, path.Base(c.Args[1]))
	}
	var fb fluentBit
	dec := yaml.NewDecoder(strings.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&fb); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	checkEnv(t, c, envRefs.FindAllStringSubmatch(raw, -1), dir)

	// Tail the node's container logs, tagged as sluice's enrichment reads
	// them (kube.var.log.containers.<pod>_<ns>_<container>-<id>.log).
	if len(fb.Pipeline.Inputs) != 1 || len(fb.Pipeline.Outputs) != 1 {
		t.Fatalf("inputs %d, outputs %d", len(fb.Pipeline.Inputs), len(fb.Pipeline.Outputs))
	}
	in, out := fb.Pipeline.Inputs[0], fb.Pipeline.Outputs[0]
	if str(in, "name") != "tail" || str(in, "path") != "/var/log/containers/*.log" || str(in, "tag") != "kube.*" {
		t.Errorf("input %v", in)
	}
	logs := mountFor(t, spec, c, "/var/log/containers")
	if logs.HostPath == nil || logs.HostPath.Path != "/var/log" {
		t.Errorf("/var/log is not the node's: %+v", logs.VolumeSource)
	}
	for _, key := range []string{"db", "storage.path"} {
		m := in
		if key == "storage.path" {
			m = fb.Service
		}
		if v := mountFor(t, spec, c, strings.TrimSuffix(str(m, key), "/")); v.HostPath == nil {
			t.Errorf("%s %s is not on the node: lost on restart", key, str(m, key))
		}
	}
	if str(in, "storage.type") != "filesystem" {
		t.Error("chunks are not buffered on disk while sluice is away")
	}

	// The output reaches the Service over TLS, trusting sluice's CA.
	if str(out, "match") != str(in, "tag") {
		t.Errorf("output matches %q, input tags %q", str(out, "match"), str(in, "tag"))
	}
	if str(out, "host") != tg.host || str(out, "tls.vhost") != tg.host {
		t.Errorf("host %q (vhost %q), the Service is %s", str(out, "host"), str(out, "tls.vhost"), tg.host)
	}
	if !on(out, "tls") || !on(out, "tls.verify") {
		t.Error("TLS is off or unverified")
	}
	if s := secretFile(t, spec, c, str(out, "tls.ca_file")); s != "sluice-tls" {
		t.Errorf("the CA comes from %s", s)
	}
	if str(out, "compress") != "gzip" || str(out, "retry_limit") != "no_limits" {
		t.Errorf("compress %q, retry_limit %q", str(out, "compress"), str(out, "retry_limit"))
	}
	return out, c
}

func TestFluentBitForward(t *testing.T) {
	tg := sluiceTarget(t)
	out, _ := fluentBitDaemonSet(t, "forwarders/fluent-bit", tg)
	if str(out, "name") != "forward" || str(out, "port") != strconv.Itoa(int(tg.ports["forward"])) {
		t.Errorf("output %s to port %s, sluice's Forward port is %d", str(out, "name"), str(out, "port"), tg.ports["forward"])
	}
	if !on(out, "require_ack_response") {
		t.Error("no acks: chunks would be dropped from the node's buffer before sluice stored them")
	}
	if !strings.HasPrefix(str(out, "shared_key"), "${") || str(out, "self_hostname") == tg.cfg.Forward.Security.SelfHostname {
		t.Errorf("shared key %q, self_hostname %q (sluice's is %q and must differ)", str(out, "shared_key"), str(out, "self_hostname"), tg.cfg.Forward.Security.SelfHostname)
	}
}

func TestFluentBitHTTP(t *testing.T) {
	tg := sluiceTarget(t)
	out, c := fluentBitDaemonSet(t, "forwarders/fluent-bit-http", tg)
	if str(out, "name") != "http" || str(out, "port") != strconv.Itoa(int(tg.ports["http"])) {
		t.Errorf("output %s to port %s, sluice's HTTP port is %d", str(out, "name"), str(out, "port"), tg.ports["http"])
	}
	if str(out, "header_tag") == "" || str(out, "header_tag") != tg.cfg.HTTP.HeaderTag {
		t.Errorf("header_tag %q, sluice reads the tag from %q", str(out, "header_tag"), tg.cfg.HTTP.HeaderTag)
	}
	if !slices.Contains(tg.cfg.HTTP.TimeKeys, str(out, "json_date_key")) {
		t.Errorf("json_date_key %q is not one of sluice's time_keys %v", str(out, "json_date_key"), tg.cfg.HTTP.TimeKeys)
	}
	if h := str(out, "header"); !regexp.MustCompile(`^Authorization Bearer \$\{[A-Z_]+\}$`).MatchString(h) {
		t.Errorf("header %q", h)
	}
	for _, e := range c.Env {
		if e.Name == "SLUICE_INGEST_TOKEN" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key != "ingest-token") {
			t.Errorf("the token is not the secret's ingest-token: %+v", e)
		}
	}
	if tg.cfg.HTTP.TLS.CertFile == "" || len(tg.cfg.HTTP.Auth.TokenFiles) == 0 {
		t.Error("sluice's HTTP ingest has no TLS or no tokens")
	}
}

// fluentdDirective is a <section> of a Fluentd configuration.
type fluentdDirective struct {
	name, arg string
	params    map[string]string
	children  []*fluentdDirective
}

func (d *fluentdDirective) find(name string) []*fluentdDirective {
	var out []*fluentdDirective
	for _, c := range d.children {
		if c.name == name {
			out = append(out, c)
		}
	}
	return out
}

// parseFluentd reads Fluentd's configuration syntax: <name arg> ...
// </name> sections holding "key value" lines, # comments.
func parseFluentd(t *testing.T, raw string) *fluentdDirective {
	t.Helper()
	top := &fluentdDirective{params: map[string]string{}}
	stack := []*fluentdDirective{top}
	sc := bufio.NewScanner(strings.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "</"):
			name := strings.TrimSuffix(strings.TrimPrefix(line, "</"), ">")
			if len(stack) == 1 || stack[len(stack)-1].name != name {
				t.Fatalf("line %d: %s closes nothing open", n, line)
			}
			stack = stack[:len(stack)-1]
		case strings.HasPrefix(line, "<"):
			if !strings.HasSuffix(line, ">") {
				t.Fatalf("line %d: %q", n, line)
			}
			name, arg, _ := strings.Cut(strings.Trim(line, "<>"), " ")
			d := &fluentdDirective{name: name, arg: strings.TrimSpace(arg), params: map[string]string{}}
			stack[len(stack)-1].children = append(stack[len(stack)-1].children, d)
			stack = append(stack, d)
		default:
			key, value, _ := strings.Cut(line, " ")
			stack[len(stack)-1].params[key] = strings.Trim(strings.TrimSpace(value), `"`)
		}
	}
	if len(stack) != 1 {
		t.Fatalf("<%s> is not closed", stack[len(stack)-1].name)
	}
	return top
}

// rubyEnv finds "#{ENV['VAR']}" and ENV["VAR"] references.
var rubyEnv = regexp.MustCompile(`ENV\[['"]([A-Za-z_][A-Za-z0-9_]*)['"]\]`)

func TestFluentdFargateSidecar(t *testing.T) {
	tg := sluiceTarget(t)
	objs := kustomize(t, "forwarders/fluentd-fargate")
	dep := one[*appsv1.Deployment](t, objs, "demo-app")
	spec := dep.Spec.Template.Spec
	c := container(t, spec, "fluentd")
	if len(c.Args) != 2 || c.Args[0] != "-c" {
		t.Fatalf("args %q", c.Args)
	}
	cm := configMap(t, objs, spec, mountFor(t, spec, c, c.Args[1]).Name)
	raw := cm.Data[path.Base(c.Args[1])]
	conf := parseFluentd(t, raw)
	checkEnv(t, c, rubyEnv.FindAllStringSubmatch(raw, -1), "fluent.conf")

	// The app's log files are in a volume both containers mount.
	src := conf.find("source")
	if len(src) != 1 || src[0].params["@type"] != "tail" {
		t.Fatalf("sources %v", src)
	}
	logs := mountFor(t, spec, c, src[0].params["path"])
	app := container(t, spec, "app")
	if mountFor(t, spec, app, src[0].params["path"]).Name != logs.Name || logs.EmptyDir == nil {
		t.Errorf("the tailed path %s is not the app's log volume", src[0].params["path"])
	}
	// Each record names its pod, for sluice's enrichment.
	filters := conf.find("filter")
	if len(filters) != 1 || !strings.Contains(raw, `"pod_name" => ENV["POD_NAME"]`) || !strings.Contains(raw, `"namespace_name" => ENV["POD_NAMESPACE"]`) {
		t.Error("records do not carry kubernetes.pod_name and namespace_name")
	}
	for _, e := range c.Env {
		if e.Name == "POD_NAME" && (e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name") {
			t.Errorf("POD_NAME is not the downward API's metadata.name")
		}
	}

	m := conf.find("match")
	if len(m) != 1 {
		t.Fatalf("%d match sections", len(m))
	}
	fwd := m[0]
	want := map[string]string{"@type": "forward", "require_ack_response": "true", "compress": "gzip", "transport": "tls", "tls_verify_hostname": "true"}
	for k, v := range want {
		if fwd.params[k] != v {
			t.Errorf("%s is %q, want %q", k, fwd.params[k], v)
		}
	}
	if s := secretFile(t, spec, c, fwd.params["tls_cert_path"]); s != "sluice-tls" {
		t.Errorf("the CA comes from %s", s)
	}
	servers := fwd.find("server")
	if len(servers) != 1 || servers[0].params["host"] != tg.host || servers[0].params["port"] != strconv.Itoa(int(tg.ports["forward"])) {
		t.Errorf("servers %+v, sluice is %s:%d", servers, tg.host, tg.ports["forward"])
	}
	sec := fwd.find("security")
	if len(sec) != 1 || !strings.Contains(sec[0].params["shared_key"], "ENV[") || sec[0].params["self_hostname"] == "" {
		t.Errorf("security %+v", sec)
	}
	buf := fwd.find("buffer")
	if len(buf) != 1 || buf[0].params["@type"] != "file" || buf[0].params["retry_forever"] != "true" {
		t.Errorf("buffer %+v", buf)
	}
}

// The parser itself: sections, parameters, unbalanced input.
func TestParseFluentd(t *testing.T) {
	conf := parseFluentd(t, "# c\n<match a.**>\n  @type forward\n  <server>\n    host h\n    port 1\n  </server>\n</match>\n")
	m := conf.find("match")
	if len(m) != 1 || m[0].arg != "a.**" || m[0].params["@type"] != "forward" || m[0].find("server")[0].params["port"] != "1" {
		t.Errorf("%+v", m)
	}
}
