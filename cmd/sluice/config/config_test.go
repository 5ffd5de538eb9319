package config

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/units"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsMatchTheEmbeddedSetup(t *testing.T) {
	c, err := Parse(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "" || c.NATS.Embedded.StoreDir != "./data/jetstream" {
		t.Errorf("nats: %+v", c.NATS)
	}
	if c.Forward.Listen != ":24224" || c.API.Listen != ":8080" {
		t.Errorf("listeners %q %q", c.Forward.Listen, c.API.Listen)
	}
	if len(c.Sinks) != 1 || c.Sinks[0].Name != "file" || c.Sinks[0].File.Path != "./data/out" {
		t.Errorf("sinks %+v", c.Sinks)
	}
	// The file sink's batches are smaller than other sinks' (memory), and
	// a configured size wins.
	if b := c.Sinks[0].Batch; b.MaxRecords != 1000 || b.MaxBytes != 1<<20 {
		t.Errorf("file sink batch %+v", b)
	}
	c, err = Parse([]byte("sinks: [{file: {}, batch: {max_records: 5000}}, {elasticsearch: {urls: [\"http://127.0.0.1:9200\"]}}]\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Sinks[0].Batch; b.MaxRecords != 5000 || b.MaxBytes != 1<<20 {
		t.Errorf("file sink batch %+v", b)
	}
	if b := c.Sinks[1].Batch; b.MaxRecords != 10000 || b.MaxBytes != 8<<20 {
		t.Errorf("elasticsearch sink batch %+v", b)
	}
	// The file sink gives way to ingest by default, sinks that wait on a
	// destination do not; either can be set.
	if g := c.Sinks[0].GiveWay; !*g.Enabled || g.Ratio != 0.5 || g.MaxDelay != 2*time.Second {
		t.Errorf("file sink give_way %+v", g)
	}
	if g := c.Sinks[1].GiveWay; *g.Enabled {
		t.Errorf("elasticsearch sink give_way %+v", g)
	}
	c, err = Parse([]byte("sinks: [{file: {}, give_way: {enabled: false}}, {elasticsearch: {urls: [\"http://127.0.0.1:9200\"]}, give_way: {enabled: true, ratio: 2}}]\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Sinks[0].GiveWay; *g.Enabled {
		t.Errorf("file sink give_way %+v", g)
	}
	if g := c.Sinks[1].GiveWay; !*g.Enabled || g.Ratio != 2 {
		t.Errorf("elasticsearch sink give_way %+v", g)
	}
	if c.NATS.Stream.MaxBytes != 10<<30 || c.ShutdownTimeout != 30*time.Second || c.Log.Format != "text" {
		t.Errorf("defaults %+v", c)
	}
	if c.AdaptiveProcs == nil || !*c.AdaptiveProcs {
		t.Errorf("adaptive_procs is not on by default")
	}
	if c.HugePages == nil || !*c.HugePages {
		t.Errorf("huge_pages is not on by default")
	}
	if c, err = Parse([]byte("adaptive_procs: false\n"), env(nil)); err != nil || *c.AdaptiveProcs {
		t.Errorf("adaptive_procs: false gave %v, %v", c.AdaptiveProcs, err)
	}
	if c, err = Parse([]byte("huge_pages: false\n"), env(nil)); err != nil || *c.HugePages {
		t.Errorf("huge_pages: false gave %v, %v", c.HugePages, err)
	}
}

func TestParseExpandsEnvironment(t *testing.T) {
	raw := []byte(`
log: {level: debug, format: json}
nats:
  url: ${NATS_URL}
  stream:
    max_bytes: ${MAX:-2GiB}
    max_age: 1h
forward:
  listen: "127.0.0.1:${PORT:-24224}"
sinks:
  - name: audit
    file:
      path: ${OUT}/audit
      prefix: cost$$5
      max_file_bytes: 1MiB
`)
	c, err := Parse(raw, env(map[string]string{"NATS_URL": "nats://n1:4222", "OUT": "/var/out"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://n1:4222" || c.NATS.Stream.MaxBytes != units.ByteSize(2<<30) || c.NATS.Stream.MaxAge != time.Hour {
		t.Errorf("nats %+v", c.NATS)
	}
	if c.Forward.Listen != "127.0.0.1:24224" {
		t.Errorf("forward.listen %q", c.Forward.Listen)
	}
	s := c.Sinks[0]
	if s.Name != "audit" || s.File.Path != "/var/out/audit" || s.File.Prefix != "cost$5" || s.File.MaxFileBytes != 1<<20 {
		t.Errorf("sink %+v %+v", s, s.File)
	}
	if s.File.TimeKey != "@timestamp" || s.AckWait != 30*time.Second {
		t.Errorf("sink defaults not filled: %+v", s)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	cases := []struct {
		yaml string
		want []string
	}{
		{"sinks:\n  - file: {}\n  - name: b\n    file: {max_file_bytes: -5}\n", []string{"sinks[1].file.max_file_bytes: must be positive"}},
		{"sinks:\n  - name: a\n    file: {}\n  - name: a\n    file: {path: /x}\n", []string{"sinks[1].name: \"a\" is already the name of sinks[0]"}},
		{"sinks:\n  - name: x\n", []string{"sinks[0]: no destination"}},
		{"sinks: []\n", []string{"sinks: at least one sink is required"}},
		{"sinks:\n  - name: 'a b'\n    file: {}\n", []string{"sinks[0].name:"}},
		{"log: {level: loud}\nforward: {listen: nope, max_inflight_chunks: -1}\nnats: {stream: {replicas: 7}}\n",
			[]string{"log.level:", "forward.listen:", "forward.max_inflight_chunks:", "nats.stream.replicas:"}},
		{"shutdown_timeout: -1s\napi: {listen: x}\n", []string{"shutdown_timeout:", "api.listen:"}},
		{"nats: {stream: {max_bytes: lots}}\n", []string{"is not a size"}},
		{"forwardd: {}\n", []string{"field forwardd not found"}},
		{"sinks:\n  - file: {}\n    give_way: {ratio: -1, max_delay: -1s}\n", []string{"sinks[0].give_way.ratio: must be above 0", "sinks[0].give_way.max_delay: must be positive"}},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.yaml), env(nil))
		if err == nil {
			t.Errorf("%q: no error", tc.yaml)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not contain %q", tc.yaml, err, w)
			}
		}
	}
}

func TestUnsetVariableIsAnError(t *testing.T) {
	_, err := Parse([]byte("log:\n  level: ${LEVEL}\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "LEVEL is not set") {
		t.Fatalf("error %v", err)
	}
	c, err := Parse([]byte("log:\n  level: ${LEVEL:-warn}\n"), env(map[string]string{"LEVEL": ""}))
	if err != nil || c.Log.Level != "warn" {
		t.Fatalf("default for an empty variable: %v %v", c, err)
	}
}

// A variable's value is the setting as it is, whatever YAML would make of
// its characters; an unquoted lone reference is typed by its value; a
// reference in a comment is not one.
func TestVariablesAreValuesNotYAML(t *testing.T) {
	password := `p@ss: w #rd {x} *y 'q" [z] & !t %`
	raw := []byte(`# set ${NOT_SET} in the environment
forward:
  udp_heartbeat: ${HEARTBEAT}   # ${ALSO_NOT_SET}
  max_inflight_chunks: ${CHUNKS}
sinks:
  - name: es
    elasticsearch:
      urls: [http://es:9200]
      username: elastic
      password: ${ES_PASSWORD}
      headers: {X-Key: "k-${ES_PASSWORD}"}
`)
	c, err := Parse(raw, env(map[string]string{"HEARTBEAT": "false", "CHUNKS": "7", "ES_PASSWORD": password}))
	if err != nil {
		t.Fatal(err)
	}
	es := c.Sinks[0].Elasticsearch
	if es.Password != password || es.Headers["X-Key"] != "k-"+password || c.Forward.UDPHeartbeat == nil || *c.Forward.UDPHeartbeat || c.Forward.MaxInflightChunks != 7 {
		t.Errorf("password %q, header %q, heartbeat %v, chunks %d", es.Password, es.Headers["X-Key"], c.Forward.UDPHeartbeat != nil && *c.Forward.UDPHeartbeat, c.Forward.MaxInflightChunks)
	}
}

// Unknown fields are errors at any depth, with their line; inline fields
// and maps' free keys are not unknown.
func TestUnknownNestedField(t *testing.T) {
	_, err := Parse([]byte("http:\n  listen: \":9880\"\nforward:\n  security:\n    sharedkey: x\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "line 5: field sharedkey not found") {
		t.Fatalf("error %v", err)
	}
}

func TestElasticsearchSink(t *testing.T) {
	raw := []byte(`
sinks:
  - name: es
    elasticsearch:
      urls: [https://es.example:9200]
      logstash_format: true
      logstash_prefix: "${kubernetes.namespace_name}"
      index: ${tag}-$${x}
      username: elastic
      password: ${ES_PASSWORD}
      remove_keys: [kubernetes.pod_id]
      aws:
        region: eu-west-1
        role_arn: arn:aws:iam::123456789012:role/logs
`)
	_, err := Parse(raw, env(map[string]string{"ES_PASSWORD": "pw"}))
	if err == nil || !strings.Contains(err.Error(), "sinks[0].elasticsearch.username, api_key, bearer_token, aws: set at most one way") {
		t.Fatalf("two ways to authenticate: %v", err)
	}
	raw = []byte(strings.Replace(string(raw), "      username: elastic\n      password: ${ES_PASSWORD}\n", "", 1))
	c, err := Parse(raw, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sinks[0]
	es := s.Elasticsearch
	if s.Type() != "elasticsearch" || s.Concurrency != 4 || es.LogstashPrefix != "${kubernetes.namespace_name}" || es.Index != "${tag}-${x}" ||
		es.AWS.Region != "eu-west-1" || es.AWS.RoleARN != "arn:aws:iam::123456789012:role/logs" || es.AWS.Service != "es" ||
		es.MaxRequestBytes != 5<<20 || es.ReplaceDots != "kubernetes" || es.Compress != "gzip" {
		t.Errorf("sink %+v, es %+v", s, es)
	}
	_, err = Parse([]byte("sinks:\n  - name: both\n    file: {}\n    elasticsearch: {}\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "sinks[0]: one destination per sink, found file and elasticsearch") {
		t.Errorf("two destinations: %v", err)
	}
	_, err = Parse([]byte("sinks:\n  - elasticsearch: {index: Logs, op_type: upsert}\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), `sinks[0].elasticsearch.index: "Logs" must be lowercase`) {
		t.Errorf("bad index: %v", err)
	}
}

func TestAWSSinksAndRouting(t *testing.T) {
	raw := []byte(`
sinks:
  - name: dev
    match: ["kube.**"]
    condition: level == "error"
    cloudwatch:
      aws: {region: eu-west-1, endpoint: "http://localstack:4566"}
      log_group: /eks/${kubernetes.namespace_name}
      log_group_fallback: /eks/unknown
      log_stream: ${kubernetes.pod_name}.${kubernetes.container_name}
      auto_create_group: true
      retention_days: 14
  - name: audit
    firehose: {aws: {region: eu-west-1}, delivery_stream: logs-to-s3, pack: true}
  - name: archive
    s3: {aws: {region: eu-west-1}, bucket: logs, upload_timeout: 5m}
`)
	c, err := Parse(raw, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	dev, audit, archive := c.Sinks[0], c.Sinks[1], c.Sinks[2]
	if dev.Type() != "cloudwatch" || dev.CloudWatch.LogGroup != "/eks/${kubernetes.namespace_name}" || dev.CloudWatch.Oversize != "truncate" ||
		dev.Match[0] != "kube.**" || dev.Condition != `level == "error"` {
		t.Errorf("cloudwatch sink %+v %+v", dev, dev.CloudWatch)
	}
	if audit.Type() != "firehose" || !audit.Firehose.Pack || audit.Firehose.TimeKey != "@timestamp" {
		t.Errorf("firehose sink %+v", audit.Firehose)
	}
	if archive.Type() != "s3" || archive.Concurrency != 16 || archive.WriteTimeout != 0 || archive.S3.KeyFormat == "" {
		t.Errorf("s3 sink %+v %+v", archive, archive.S3)
	}
	for yaml, want := range map[string]string{
		"sinks:\n  - file: {}\n    match: ['{a,b']\n":                                           "sinks[0].match: pattern",
		"sinks:\n  - file: {}\n    condition: 'level =='\n":                                     "sinks[0].condition:",
		"sinks:\n  - s3: {bucket: b, upload_timeout: 5m}\n    write_timeout: 1m\n":              "sinks[0].write_timeout: does not apply to s3 sinks",
		"sinks:\n  - cloudwatch: {log_group: g, retention_days: 2}\n":                           "sinks[0].cloudwatch.retention_days",
		"sinks:\n  - firehose: {}\n":                                                            "sinks[0].firehose.delivery_stream",
		"transforms:\n  - set: {a: 1}\n  - set: {sev: {expr: 'x ==='}}\nsinks:\n  - file: {}\n": "transforms[1].set.sev: expr:",
		"sinks:\n  - file: {}\n    transforms: [{drop: true}]\n":                                "sinks[0].transforms[0].drop: needs a condition",
		"transforms:\n  - sett: {a: 1}\nsinks:\n  - file: {}\n":                                 "sett",
		"memory_limit: 1MiB\nsinks:\n  - file: {}\n":                                            "memory_limit: must be at least 64MiB",
		"forward:\n  multiline: {parser: ruby}\nsinks:\n  - file: {}\n":                         "forward.multiline.parser: \"ruby\"",
	} {
		if _, err := Parse([]byte(yaml), env(nil)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}
