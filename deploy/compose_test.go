package deploy_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/sluicelog/sluice/cmd/sluice/config"
)

// loadCompose loads docker-compose.yml as `docker compose` does: schema
// validation, interpolation, extends and merge keys, relative paths made
// absolute, depends_on checked against the services.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root(t), "docker-compose.yml")},
		cli.WithWorkingDirectory(root(t)), cli.WithEnv([]string{}), cli.WithConsistency(true), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %s", name)
	}
	return s
}

func env(s types.ServiceConfig) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := s.Environment[k]
		if !ok || v == nil {
			return "", false
		}
		return *v, true
	}
}

// bindSource returns the host file mounted at target.
func bindSource(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target && v.Type == types.VolumeTypeBind {
			return v.Source
		}
	}
	t.Fatalf("service %s mounts nothing from the host at %s", s.Name, target)
	return ""
}

// volumeAt returns the named volume mounted at target (or holding it).
func volumeAt(s types.ServiceConfig, file string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && (file == v.Target || strings.HasPrefix(file, v.Target+"/")) {
			return v.Source
		}
	}
	return ""
}

func publishes(s types.ServiceConfig, port uint32, proto string) bool {
	return slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool {
		return p.Target == port && p.Protocol == proto && p.Published != ""
	})
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"nats", "elasticsearch", "kibana", "localstack", "aws-init", "sluice", "nginx", "fluent-bit", "traffic", "prometheus", "grafana"} {
		service(t, p, name)
	}

	// Every file mounted from the repository exists, every image is
	// pinned, every build has its Dockerfile.
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s mounts %s: %v", s.Name, v.Source, err)
			}
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s builds from %v", s.Name, err)
			}
		} else if tag := s.Image[strings.LastIndex(s.Image, ":")+1:]; !strings.Contains(s.Image, ":") || tag == "latest" {
			t.Errorf("service %s: image %q is not pinned", s.Name, s.Image)
		}
	}

	// Start order: sluice waits for healthy NATS and Elasticsearch and for
	// the AWS resources; Fluent Bit waits for a healthy sluice.
	waits := map[string]map[string]string{
		"sluice":     {"nats": types.ServiceConditionHealthy, "elasticsearch": types.ServiceConditionHealthy, "aws-init": types.ServiceConditionCompletedSuccessfully},
		"fluent-bit": {"sluice": types.ServiceConditionHealthy, "nginx": types.ServiceConditionHealthy},
		"aws-init":   {"localstack": types.ServiceConditionHealthy},
		"kibana":     {"elasticsearch": types.ServiceConditionHealthy},
	}
	for svc, deps := range waits {
		for dep, cond := range deps {
			if got := service(t, p, svc).DependsOn[dep].Condition; got != cond {
				t.Errorf("%s waits for %s to be %q, want %q", svc, dep, got, cond)
			}
		}
	}
	for _, name := range []string{"nats", "elasticsearch", "localstack", "sluice", "nginx"} {
		if hc := service(t, p, name).HealthCheck; hc == nil || len(hc.Test) < 2 {
			t.Errorf("service %s has no health check", name)
		}
	}

	// NATS runs on the mounted configuration, which nats-server itself
	// parses here: JetStream on the volume, the monitoring port the health
	// check uses, chunks up to 8 MB.
	ns := service(t, p, "nats")
	if len(ns.Command) != 2 || ns.Command[0] != "--config" {
		t.Fatalf("nats command %q", ns.Command)
	}
	nopts, err := natsserver.ProcessConfigFile(bindSource(t, ns, ns.Command[1]))
	if err != nil {
		t.Fatalf("nats configuration: %v", err)
	}
	if !nopts.JetStream || volumeAt(ns, nopts.StoreDir) == "" {
		t.Errorf("JetStream %v, store %s not on a volume", nopts.JetStream, nopts.StoreDir)
	}
	if hc := strings.Join(ns.HealthCheck.Test, " "); !strings.Contains(hc, ":"+strconv.Itoa(nopts.HTTPPort)+"/healthz") {
		t.Errorf("the nats health check %q is not on the monitoring port %d", hc, nopts.HTTPPort)
	}
	if nopts.MaxPayload < 8<<20 || !publishes(ns, uint32(nopts.Port), "tcp") {
		t.Errorf("max_payload %d, client port %d", nopts.MaxPayload, nopts.Port)
	}

	// sluice's configuration is the mounted file, and sluice validates it
	// with the container's environment.
	sl := service(t, p, "sluice")
	path, ok := env(sl)("SLUICE_CONFIG")
	if !ok {
		t.Fatal("sluice has no SLUICE_CONFIG")
	}
	raw, err := os.ReadFile(bindSource(t, sl, path))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(raw, env(sl))
	if err != nil {
		t.Fatalf("the compose sluice configuration: %v", err)
	}
	if hc := strings.Join(sl.HealthCheck.Test, " "); !strings.Contains(hc, "-probe") || !strings.Contains(hc, ":"+strconv.Itoa(int(port(t, cfg.API.Listen)))+"/readyz") {
		t.Errorf("sluice's health check %q does not probe /readyz on the API port", hc)
	}
	for _, l := range []string{cfg.Forward.Listen, cfg.HTTP.Listen, cfg.API.Listen} {
		if !publishes(sl, uint32(port(t, l)), "tcp") {
			t.Errorf("sluice listens on %s, the port is not published", l)
		}
	}
	if !publishes(sl, uint32(port(t, cfg.Forward.Listen)), "udp") {
		t.Error("the Forward heartbeat (UDP) is not published")
	}
	// Everything it talks to is a service of the stack.
	hosts := map[string]string{"nats": cfg.NATS.URL}
	kinds := map[string]bool{}
	for _, s := range cfg.Sinks {
		kinds[s.Type()] = true
		switch {
		case s.Elasticsearch != nil:
			hosts["es"] = s.Elasticsearch.URLs[0]
		case s.CloudWatch != nil:
			hosts["cloudwatch"] = s.CloudWatch.AWS.Endpoint
		case s.Firehose != nil:
			hosts["firehose"] = s.Firehose.AWS.Endpoint
		case s.S3 != nil:
			hosts["s3"] = s.S3.AWS.Endpoint
		}
	}
	for _, want := range []string{"elasticsearch", "cloudwatch", "firehose", "s3", "file"} {
		if !kinds[want] {
			t.Errorf("the compose sluice has no %s sink", want)
		}
	}
	for what, u := range hosts {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" {
			t.Errorf("%s: %q", what, u)
			continue
		}
		s := service(t, p, pu.Hostname())
		if !slices.ContainsFunc(s.Ports, func(sp types.ServicePortConfig) bool { return strconv.Itoa(int(sp.Target)) == pu.Port() }) {
			t.Errorf("%s: %s has no port %s", what, pu.Hostname(), pu.Port())
		}
	}
	// The file sink writes to a volume (the image's directory is sluice's).
	for _, s := range cfg.Sinks {
		if s.File != nil && volumeAt(sl, s.File.Path) == "" {
			t.Errorf("the file sink's %s is not on a volume", s.File.Path)
		}
	}
	// The AWS resources the sinks need are the ones aws-init creates.
	script, err := os.ReadFile(bindSource(t, service(t, p, "aws-init"), "/init/aws-init.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Sinks {
		switch {
		case s.Firehose != nil:
			if !regexp.MustCompile(`--delivery-stream-name ` + regexp.QuoteMeta(s.Firehose.DeliveryStream) + `\b`).Match(script) {
				t.Errorf("aws-init does not create the delivery stream %s", s.Firehose.DeliveryStream)
			}
		case s.S3 != nil:
			if !regexp.MustCompile(`bucket ` + regexp.QuoteMeta(s.S3.Bucket) + `\b`).Match(script) {
				t.Errorf("aws-init does not create the bucket %s", s.S3.Bucket)
			}
		}
	}

	// Fluent Bit tails the file nginx writes, on a volume they share, and
	// forwards to sluice's Forward port with acks, gzip and the shared key.
	fbs := service(t, p, "fluent-bit")
	fbConf := fbs.Command[len(fbs.Command)-1]
	raw, err = os.ReadFile(bindSource(t, fbs, fbConf))
	if err != nil {
		t.Fatal(err)
	}
	var fb fluentBit
	if err := yaml.Unmarshal(raw, &fb); err != nil {
		t.Fatal(err)
	}
	for _, r := range envRefs.FindAllStringSubmatch(string(raw), -1) {
		if _, ok := env(fbs)(r[1]); !ok {
			t.Errorf("fluent-bit.yaml uses %s, which the fluent-bit service does not set", r[1])
		}
	}
	in, out := fb.Pipeline.Inputs[0], fb.Pipeline.Outputs[0]
	ng := service(t, p, "nginx")
	nginxConf, err := os.ReadFile(bindSource(t, ng, "/etc/nginx/conf.d/default.conf"))
	if err != nil {
		t.Fatal(err)
	}
	logFile := str(in, "path")
	if !strings.Contains(string(nginxConf), "access_log "+logFile+" combined;") {
		t.Errorf("nginx does not write %s in the combined format Fluent Bit's nginx parser reads", logFile)
	}
	if v := volumeAt(fbs, logFile); v == "" || v != volumeAt(ng, logFile) {
		t.Errorf("%s is not on a volume nginx and Fluent Bit share", logFile)
	}
	if str(out, "host") != "sluice" || str(out, "port") != strconv.Itoa(int(port(t, cfg.Forward.Listen))) {
		t.Errorf("Fluent Bit forwards to %s:%s", str(out, "host"), str(out, "port"))
	}
	if !on(out, "require_ack_response") || str(out, "compress") != "gzip" {
		t.Error("Fluent Bit forwards without ack or gzip")
	}
	if fk, _ := env(fbs)("SLUICE_SHARED_KEY"); fk != string(cfg.Forward.Security.SharedKey) || fk == "" {
		t.Errorf("shared keys differ: Fluent Bit %q, sluice %q", fk, string(cfg.Forward.Security.SharedKey))
	}

	// The traffic generator loads nginx; Prometheus scrapes sluice's API
	// port; Grafana gets the dashboard.
	tr := service(t, p, "traffic")
	if u := tr.Command[len(tr.Command)-1]; !strings.HasPrefix(u, "http://nginx/") {
		t.Errorf("traffic goes to %s", u)
	}
	raw, err = os.ReadFile(bindSource(t, service(t, p, "prometheus"), "/etc/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"sluice:`+strconv.Itoa(int(port(t, cfg.API.Listen)))+`"`) {
		t.Error("Prometheus does not scrape sluice's API port")
	}
	if src := bindSource(t, service(t, p, "grafana"), "/var/lib/grafana/dashboards/sluice.json"); src != filepath.Join(root(t), "deploy/grafana/sluice.json") {
		t.Errorf("Grafana's dashboard is %s", src)
	}
}

// The image builds sluice statically and runs it as a non-root user.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/sluice", "USER 65532", `ENTRYPOINT ["/usr/local/bin/sluice"]`, "-probe"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if n := strings.Count(df, "\nFROM "); n < 2 {
		t.Errorf("%d stages, want a build stage and a runtime stage", n)
	}
}
