// Package config loads sluice's configuration: one YAML file with ${ENV}
// expansion, where every value has a default and validation errors name the
// field path (e.g. `sinks[1].file.path: must not be empty`).
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/enrich"
	"github.com/sluicelog/sluice/ingest/balance"
	"github.com/sluicelog/sluice/ingest/forward"
	"github.com/sluicelog/sluice/ingest/httpin"
	"github.com/sluicelog/sluice/ingest/otlp"
	"github.com/sluicelog/sluice/internal/units"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks/cloudwatch"
	"github.com/sluicelog/sluice/sinks/elasticsearch"
	"github.com/sluicelog/sluice/sinks/file"
	"github.com/sluicelog/sluice/sinks/firehose"
	"github.com/sluicelog/sluice/sinks/route"
	"github.com/sluicelog/sluice/sinks/s3"
	"github.com/sluicelog/sluice/sinks/transform"
)

// Config is the whole configuration.
type Config struct {
	Log     LogConfig      `yaml:"log"`
	NATS    queue.Config   `yaml:"nats"`
	Forward forward.Config `yaml:"forward"`
	HTTP    HTTPConfig     `yaml:"http"`
	// OTLP is OpenTelemetry logs in, over HTTP and gRPC.
	OTLP   OTLPConfig    `yaml:"otlp"`
	API    api.Config    `yaml:"api"`
	Enrich enrich.Config `yaml:"enrich"`
	// Cluster is how replicas sharing the JetStream know each other and
	// spread the connections.
	Cluster ClusterConfig `yaml:"cluster"`
	// Transforms reshape every record after enrichment, before routing
	// (docs/TRANSFORMS.md).
	Transforms []transform.Step `yaml:"transforms"`
	Sinks      []SinkConfig     `yaml:"sinks"`
	// ShutdownTimeout bounds the orderly shutdown on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Tests are config tests: records in, what each sink must receive
	// (`sluice check` runs them; docs/TESTS.md).
	Tests []Test `yaml:"tests"`
	// MemoryLimit is the memory sluice may use: the Go runtime's soft limit
	// is set to 90% of it. 0 takes the container's cgroup limit; the
	// GOMEMLIMIT environment variable overrides both.
	MemoryLimit units.ByteSize `yaml:"memory_limit"`
	// AdaptiveProcs runs the Go scheduler on one P while sluice uses less
	// than most of one core, and on all of them above that (the default;
	// internal/procs). The GOMAXPROCS environment variable turns it off.
	AdaptiveProcs *bool `yaml:"adaptive_procs"`
	// HugePages asks Linux to back the Go heap with transparent huge pages
	// when its mode is madvise (the default; internal/hugepages): on a VM a
	// page fault per 4 KiB page was a tenth of sluice's CPU.
	HugePages *bool `yaml:"huge_pages"`
}

// HTTPConfig is HTTP ingest: on its own port and under /v1/ingest/ on the
// API port, with its own bearer tokens.
type HTTPConfig struct {
	httpin.Config `yaml:",inline"`
	Auth          api.AuthConfig `yaml:"auth"`
}

// OTLPConfig is OTLP ingest, with its own bearer tokens (on both
// listeners).
type OTLPConfig struct {
	otlp.Config `yaml:",inline"`
	Auth        api.AuthConfig `yaml:"auth"`
}

// Test is one config test: input records go through the same multiline
// joining, enrichment (with the test's pods), transforms and routing as in
// the server, and each sink named in Expect must receive exactly the
// records listed, in order.
type Test struct {
	Name string `yaml:"name"`
	// Pods stand in for the cluster's pod metadata.
	Pods []TestPod `yaml:"pods"`
	// Input records, in the order a forwarder sends them; consecutive
	// records with one tag travel as one chunk.
	Input []TestRecord `yaml:"input"`
	// Expect maps a sink's name to the records it must receive. Only the
	// fields listed are compared (nested maps likewise; lists whole); an
	// empty list means the sink must receive nothing.
	Expect map[string][]map[string]any `yaml:"expect"`
}

// TestRecord is one input record.
type TestRecord struct {
	Tag string `yaml:"tag"`
	// Time is the event time; zero takes 2026-01-01T00:00:00Z, so that a
	// test's output does not depend on when it runs.
	Time   time.Time      `yaml:"time"`
	Record map[string]any `yaml:"record"`
}

// TestPod is a pod's metadata in a test.
type TestPod struct {
	Namespace   string            `yaml:"namespace"`
	Name        string            `yaml:"name"`
	UID         string            `yaml:"uid"`
	Node        string            `yaml:"node"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	Containers  []TestContainer   `yaml:"containers"`
}

// TestContainer is a container of a test pod.
type TestContainer struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
}

// ClusterConfig is the replicas' announcements and the balancing built on
// them.
type ClusterConfig struct {
	queue.ReplicasConfig `yaml:",inline"`
	Balance              balance.Config `yaml:"balance"`
}

// LogConfig configures sluice's own logs.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// SinkConfig is one destination. Exactly one destination block is set.
type SinkConfig struct {
	// Name identifies the sink (its consumer is sink_<name>); it defaults to
	// the destination type.
	Name string `yaml:"name"`
	// Match lists Fluentd-style tag patterns (kube.**, *, {a,b}); the sink
	// takes the chunks whose tag any of them matches. Empty: every tag.
	Match []string `yaml:"match"`
	// Condition, when set, is an expr expression over the record's fields
	// (level == "error") that must be true for the sink to take a record.
	Condition string `yaml:"condition"`
	// Transforms reshape the records the sink takes, after Match and
	// Condition.
	Transforms []transform.Step `yaml:"transforms"`
	// Batch bounds the batches handed to the sink.
	Batch BatchConfig `yaml:"batch"`
	// Concurrency is the number of batches written at once.
	Concurrency int `yaml:"concurrency"`
	// Retry is the policy for failed writes.
	Retry RetryConfig `yaml:"retry"`
	// WriteTimeout bounds one write; a slower one is retried. S3 sinks have
	// none: a write waits until its object is stored.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxAckPending bounds the queue messages delivered to the sink and not
	// yet acknowledged.
	MaxAckPending int `yaml:"max_ack_pending"`
	// AckWait is how long a delivered message may stay unacknowledged before
	// it is redelivered.
	AckWait time.Duration `yaml:"ack_wait"`
	// GiveWay lets ingest have the CPU first while it stores a burst.
	GiveWay GiveWayConfig `yaml:"give_way"`

	File          *file.Config          `yaml:"file"`
	Elasticsearch *elasticsearch.Config `yaml:"elasticsearch"`
	CloudWatch    *cloudwatch.Config    `yaml:"cloudwatch"`
	Firehose      *firehose.Config      `yaml:"firehose"`
	S3            *s3.Config            `yaml:"s3"`
}

// BatchConfig bounds a sink batch.
type BatchConfig struct {
	MaxRecords int            `yaml:"max_records"`
	MaxBytes   units.ByteSize `yaml:"max_bytes"`
	Linger     time.Duration  `yaml:"linger"`
}

// GiveWayConfig makes a sink give way to ingest while chunks await
// storage: its first worker waits Ratio times as long as its writes took,
// its other workers wait before taking a batch, and it catches up once the
// burst is stored, never falling more than MaxDelay behind for it.
type GiveWayConfig struct {
	// Enabled is the default for file sinks, whose writes spend this
	// process's CPU; other sinks mostly wait on their destination.
	Enabled  *bool         `yaml:"enabled"`
	Ratio    float64       `yaml:"ratio"`
	MaxDelay time.Duration `yaml:"max_delay"`
}

// Give-way defaults.
const (
	DefaultGiveWayRatio    = 0.5
	DefaultGiveWayMaxDelay = 2 * time.Second
)

// RetryConfig is the retry policy of a sink.
type RetryConfig struct {
	// MaxAttempts sends a record to the dead-letter stream after this many
	// failed attempts; 0 retries for ever (backpressure instead of loss).
	MaxAttempts int `yaml:"max_attempts"`
	// BackoffMin and BackoffMax bound the exponential backoff (with jitter).
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
}

// Type returns the destination type of the sink, "" when none is set.
func (s *SinkConfig) Type() string {
	switch types := s.types(); len(types) {
	case 0:
		return ""
	default:
		return types[0]
	}
}

// types lists every destination set; exactly one is valid.
func (s *SinkConfig) types() []string {
	var t []string
	if s.File != nil {
		t = append(t, "file")
	}
	if s.Elasticsearch != nil {
		t = append(t, "elasticsearch")
	}
	if s.CloudWatch != nil {
		t = append(t, "cloudwatch")
	}
	if s.Firehose != nil {
		t = append(t, "firehose")
	}
	if s.S3 != nil {
		t = append(t, "s3")
	}
	return t
}

// Default returns the configuration used when no file is given.
func Default() *Config {
	c := &Config{}
	c.SetDefaults()
	return c
}

// SetDefaults fills every zero value.
func (c *Config) SetDefaults() {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.AdaptiveProcs == nil {
		on := true
		c.AdaptiveProcs = &on
	}
	if c.HugePages == nil {
		on := true
		c.HugePages = &on
	}
	c.NATS.SetDefaults()
	c.Forward.SetDefaults()
	c.HTTP.SetDefaults()
	c.OTLP.SetDefaults()
	c.API.SetDefaults()
	c.Enrich.SetDefaults()
	c.Cluster.ReplicasConfig.SetDefaults()
	c.Cluster.Balance.SetDefaults()
	if c.Sinks == nil {
		c.Sinks = []SinkConfig{{File: &file.Config{}}}
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.Name == "" {
			s.Name = s.Type()
		}
		if s.File != nil {
			s.File.SetDefaults()
			if s.Batch.MaxRecords == 0 {
				s.Batch.MaxRecords = file.DefaultBatchRecords
			}
			if s.Batch.MaxBytes == 0 {
				s.Batch.MaxBytes = file.DefaultBatchBytes
			}
		}
		if s.CloudWatch != nil {
			s.CloudWatch.SetDefaults()
		}
		if s.Firehose != nil {
			s.Firehose.SetDefaults()
		}
		if s.S3 != nil {
			s.S3.SetDefaults()
			if s.Concurrency == 0 {
				s.Concurrency = 16 // writes wait for their object: let several gather in one
			}
		}
		if s.Elasticsearch != nil {
			s.Elasticsearch.SetDefaults()
			if s.Concurrency == 0 {
				s.Concurrency = elasticsearch.DefaultConcurrency
			}
		}
		if s.Batch.MaxRecords == 0 {
			s.Batch.MaxRecords = 10000
		}
		if s.Batch.MaxBytes == 0 {
			s.Batch.MaxBytes = 8 << 20
		}
		if s.Concurrency == 0 {
			s.Concurrency = 1
		}
		if s.GiveWay.Enabled == nil {
			on := s.File != nil
			s.GiveWay.Enabled = &on
		}
		if s.GiveWay.Ratio == 0 {
			s.GiveWay.Ratio = DefaultGiveWayRatio
		}
		if s.GiveWay.MaxDelay == 0 {
			s.GiveWay.MaxDelay = DefaultGiveWayMaxDelay
		}
		if s.Retry.BackoffMin == 0 {
			s.Retry.BackoffMin = 100 * time.Millisecond
		}
		if s.Retry.BackoffMax == 0 {
			s.Retry.BackoffMax = 30 * time.Second
		}
		if s.WriteTimeout == 0 && s.S3 == nil {
			s.WriteTimeout = 2 * time.Minute
		}
		if s.Batch.Linger == 0 {
			s.Batch.Linger = 5 * time.Millisecond
		}
		if s.MaxAckPending == 0 {
			s.MaxAckPending = 256
		}
		if s.AckWait == 0 {
			s.AckWait = 30 * time.Second
		}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
}

// Validate checks everything and returns every problem, each prefixed with
// its field path.
func (c *Config) Validate() error {
	var errs []error
	// add records a problem of the field at path itself; sub the errors of a
	// nested configuration, whose texts start with their own field names.
	add := func(path string, err error) { errs = append(errs, fmt.Errorf("%s: %w", path, err)) }
	sub := func(path string, err error) { errs = append(errs, prefixed(path, err)...) }
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", fmt.Errorf("%q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", fmt.Errorf("%q is not one of text, json", c.Log.Format))
	}
	sub("nats", c.NATS.Validate())
	sub("forward", c.Forward.Validate())
	sub("http", c.HTTP.Config.Validate())
	sub("http.auth", c.HTTP.Auth.Validate())
	sub("otlp", c.OTLP.Config.Validate())
	sub("otlp.auth", c.OTLP.Auth.Validate())
	sub("api", c.API.Validate())
	sub("enrich", c.Enrich.Validate())
	sub("cluster", c.Cluster.ReplicasConfig.Validate())
	sub("cluster.balance", c.Cluster.Balance.Validate())
	if c.HTTP.Listen != httpin.ListenDisabled && c.HTTP.Listen == c.API.Listen && !strings.HasSuffix(c.API.Listen, ":0") {
		add("http.listen", fmt.Errorf("%q is also api.listen: HTTP ingest is served there under /v1/ingest/ anyway; use another port or off", c.HTTP.Listen))
	}
	for i, tc := range c.Tests {
		path := fmt.Sprintf("tests[%d]", i)
		if tc.Name == "" {
			add(path+".name", errors.New("must not be empty"))
		}
		if len(tc.Input) == 0 {
			add(path+".input", errors.New("must hold at least one record"))
		}
		for j, in := range tc.Input {
			if in.Tag == "" {
				add(fmt.Sprintf("%s.input[%d].tag", path, j), errors.New("must not be empty"))
			}
		}
		if len(tc.Expect) == 0 {
			add(path+".expect", errors.New("must name at least one sink"))
		}
		for name := range tc.Expect {
			if !slices.ContainsFunc(c.Sinks, func(s SinkConfig) bool { return s.Name == name }) {
				add(path+".expect", fmt.Errorf("%q is not the name of a sink", name))
			}
		}
	}
	if len(c.Sinks) == 0 {
		add("sinks", errors.New("at least one sink is required (with none, nothing would keep the logs)"))
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 64<<20 {
		add("memory_limit", errors.New("must be at least 64MiB (or 0: the container's limit)"))
	}
	if _, err := transform.Compile(c.Transforms, "global", nil); err != nil {
		errs = append(errs, fmt.Errorf("transforms%w", err))
	}
	names := map[string]int{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		path := fmt.Sprintf("sinks[%d]", i)
		switch t := s.types(); {
		case len(t) == 0:
			add(path, errors.New("no destination: set one of file, elasticsearch, cloudwatch, firehose, s3"))
		case len(t) > 1:
			add(path, fmt.Errorf("one destination per sink, found %s: use a sink for each", strings.Join(t, " and ")))
		}
		switch {
		case s.Name == "":
			add(path+".name", errors.New("must not be empty"))
		case !validName(s.Name):
			add(path+".name", fmt.Errorf("%q must be letters, digits, '_' or '-'", s.Name))
		default:
			if j, dup := names[s.Name]; dup {
				add(path+".name", fmt.Errorf("%q is already the name of sinks[%d]", s.Name, j))
			}
			names[s.Name] = i
		}
		if s.File != nil {
			sub(path+".file", s.File.Validate())
		}
		if s.Elasticsearch != nil {
			sub(path+".elasticsearch", s.Elasticsearch.Validate())
		}
		if s.CloudWatch != nil {
			sub(path+".cloudwatch", s.CloudWatch.Validate())
		}
		if s.Firehose != nil {
			sub(path+".firehose", s.Firehose.Validate())
		}
		if s.S3 != nil {
			sub(path+".s3", s.S3.Validate())
			if s.WriteTimeout != 0 {
				add(path+".write_timeout", errors.New("does not apply to s3 sinks: a write waits until its object is stored (one that gave up and was retried would store its records twice); s3.upload_timeout bounds the wait"))
			}
		}
		if _, err := route.Compile(s.Match); err != nil {
			add(path+".match", err)
		}
		if _, err := transform.Compile(s.Transforms, s.Name, nil); err != nil {
			errs = append(errs, fmt.Errorf("%s.transforms%w", path, err))
		}
		if s.Condition != "" {
			if _, err := route.CompileCondition(s.Condition); err != nil {
				add(path+".condition", err)
			}
		}
		if s.Batch.MaxRecords < 1 {
			add(path+".batch.max_records", errors.New("must be positive"))
		}
		if s.Concurrency < 1 || s.Concurrency > 256 {
			add(path+".concurrency", errors.New("must be between 1 and 256"))
		}
		if r := s.GiveWay.Ratio; !(r > 0 && r <= 100) {
			add(path+".give_way.ratio", errors.New("must be above 0 and at most 100"))
		}
		if s.GiveWay.MaxDelay <= 0 {
			add(path+".give_way.max_delay", errors.New("must be positive"))
		}
		if s.Retry.MaxAttempts < 0 {
			add(path+".retry.max_attempts", errors.New("must not be negative (0 retries for ever)"))
		}
		if s.Retry.BackoffMin <= 0 {
			add(path+".retry.backoff_min", errors.New("must be positive"))
		}
		if s.Retry.BackoffMax < s.Retry.BackoffMin {
			add(path+".retry.backoff_max", errors.New("must be at least backoff_min"))
		}
		if s.WriteTimeout <= 0 && s.S3 == nil {
			add(path+".write_timeout", errors.New("must be positive"))
		}
		if s.Batch.MaxBytes < 1<<10 {
			add(path+".batch.max_bytes", errors.New("must be at least 1KiB"))
		}
		if s.Batch.Linger < 0 {
			add(path+".batch.linger", errors.New("must not be negative"))
		}
		if s.MaxAckPending < 1 {
			add(path+".max_ack_pending", errors.New("must be positive"))
		}
		if s.AckWait < time.Second {
			add(path+".ack_wait", errors.New("must be at least 1s"))
		}
	}
	if c.ShutdownTimeout <= 0 {
		add("shutdown_timeout", errors.New("must be positive"))
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return s != ""
}

// prefixed splits a joined error and prefixes each part with path.
func prefixed(path string, err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, prefixed(path, e)...)
		}
		return out
	}
	return []error{fmt.Errorf("%s.%w", path, err)}
}

// Load reads the file at path (an empty path means the defaults), expands
// ${ENV} references, fills defaults and validates.
func Load(path string) (*Config, error) {
	if path == "" {
		c := Default()
		return c, c.Validate()
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(raw, os.LookupEnv)
}

// Parse decodes a YAML document, expands ${ENV} references in its values
// (see expand), fills defaults and validates. Unknown fields are errors.
func Parse(raw []byte, lookup func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &Config{}
	if doc.Kind != 0 {
		if err := expand(&doc, lookup); err != nil {
			return nil, err
		}
		if err := knownFields(&doc, reflect.TypeOf(c)); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := doc.Decode(c); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: invalid:\n%w", err)
	}
	return c, nil
}

// Summary is a one-line description of the effective configuration for the
// start-up log.
func (c *Config) Summary() string {
	var sinks []string
	for _, s := range c.Sinks {
		sinks = append(sinks, s.Name+"("+s.Type()+")")
	}
	nats := "embedded:" + c.NATS.Embedded.StoreDir
	if c.NATS.URL != "" {
		nats = c.NATS.URL
	}
	return fmt.Sprintf("forward=%s http=%s otlp_http=%s otlp_grpc=%s api=%s nats=%s sinks=%s", c.Forward.Listen, c.HTTP.Listen,
		c.OTLP.HTTP.Listen, c.OTLP.GRPC.Listen, c.API.Listen, nats, strings.Join(sinks, ","))
}
