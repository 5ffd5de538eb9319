package elasticsearch

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sluicelog/sluice/internal/awsconf"
	"github.com/sluicelog/sluice/internal/fieldtpl"
	"github.com/sluicelog/sluice/internal/units"
)

// Defaults for Config.
const (
	DefaultURL                = "http://127.0.0.1:9200"
	DefaultIndex              = "sluice"
	DefaultLogstashPrefix     = "logstash"
	DefaultLogstashDateFormat = "%Y.%m.%d"
	DefaultTimeKey            = "@timestamp"
	DefaultMaxRequestBytes    = 5 << 20
	DefaultConcurrency        = 4
)

// Operation types, IDs and replace-dots scopes.
const (
	OpIndex  = "index"
	OpCreate = "create"

	IDRecord = "record"
	IDNone   = "none"

	DotsKubernetes = "kubernetes"
	DotsAll        = "all"
	DotsNone       = "none"

	CompressGzip = "gzip"
	CompressNone = "none"
)

// Config configures an Elasticsearch or OpenSearch sink.
type Config struct {
	// URLs are the nodes' base URLs; requests are spread over them. A path
	// (https://host/prefix) is kept, for proxies and compatible servers.
	URLs []string `yaml:"urls"`

	// Index is the index, alias or data stream written to, a field
	// template: "logs-${kubernetes.namespace_name}".
	Index string `yaml:"index"`
	// IndexFallback is used when a field of Index (or LogstashPrefix) is
	// missing from a record.
	IndexFallback string `yaml:"index_fallback"`
	// LogstashFormat writes to <logstash_prefix>-<date of the record>.
	LogstashFormat bool   `yaml:"logstash_format"`
	LogstashPrefix string `yaml:"logstash_prefix"`
	// LogstashDateFormat is a strftime layout (%Y.%m.%d).
	LogstashDateFormat string `yaml:"logstash_date_format"`
	// TimeZone names the zone of the date in index names (IANA name).
	TimeZone string `yaml:"time_zone"`
	// OpType is index (overwrite by _id) or create (needed by data streams;
	// an existing _id answers 409, counted as delivered).
	OpType string `yaml:"op_type"`
	// ID is record (the record's stable id, so redelivery overwrites) or
	// none (Elasticsearch generates ids; redelivery may duplicate).
	ID string `yaml:"id"`
	// Pipeline is an ingest pipeline to run the documents through.
	Pipeline string `yaml:"pipeline"`

	// TimeKey names the event time in each document ("-": left out).
	TimeKey string `yaml:"time_key"`
	// TagKey, when set, adds the tag to each document under this key.
	TagKey string `yaml:"tag_key"`
	// ReplaceDots replaces dots in keys: in kubernetes.labels and
	// kubernetes.annotations (kubernetes, the default), in every key (all),
	// or nowhere (none).
	ReplaceDots string `yaml:"replace_dots"`
	// ReplaceDotsWith is the replacement, "_" by default.
	ReplaceDotsWith string `yaml:"replace_dots_with"`
	// RemoveKeys are dotted paths of fields left out of the documents.
	RemoveKeys []string `yaml:"remove_keys"`

	// MaxRequestBytes bounds the uncompressed body of one bulk request.
	MaxRequestBytes units.ByteSize `yaml:"max_request_bytes"`
	// Compress is gzip (default) or none.
	Compress string `yaml:"compress"`

	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// APIKey is the base64 "id:key" of an Elasticsearch API key.
	APIKey string `yaml:"api_key"`
	// BearerToken is sent as "Authorization: Bearer" (service tokens, JWT).
	BearerToken string `yaml:"bearer_token"`
	// Headers are added to every request.
	Headers map[string]string `yaml:"headers"`
	TLS     TLSConfig         `yaml:"tls"`
	// AWS signs requests with SigV4 (Amazon OpenSearch Service).
	AWS *AWSConfig `yaml:"aws"`

	// OpenSearch accepts servers that do not send Elasticsearch's product
	// header: OpenSearch, Amazon OpenSearch Service, Elasticsearch before
	// 7.14 and compatible servers.
	OpenSearch bool `yaml:"opensearch"`

	// Template installs an index template before the first write.
	Template *TemplateConfig `yaml:"template"`
}

// TLSConfig is the client side of TLS to the cluster.
type TLSConfig struct {
	// CAFile holds the PEM certificates that sign the cluster's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate.
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// AWSConfig signs requests for Amazon OpenSearch Service (service es) or
// OpenSearch Serverless (aoss) with credentials from the default chain.
type AWSConfig struct {
	awsconf.Config `yaml:",inline"`
	// Service is es (default) or aoss.
	Service string `yaml:"service"`
}

// TemplateConfig is an index template installed at start.
type TemplateConfig struct {
	// Name of the index template.
	Name string `yaml:"name"`
	// File holds the template body (JSON). When empty, sluice's built-in
	// template is installed (see docs/ELASTICSEARCH.md).
	File string `yaml:"file"`
	// IndexPatterns of the built-in template; by default derived from the
	// index or the logstash prefix.
	IndexPatterns []string `yaml:"index_patterns"`
	// DataStream makes the built-in template create data streams.
	DataStream bool `yaml:"data_stream"`
	// Overwrite replaces an existing template of that name; by default an
	// existing one is left alone.
	Overwrite bool `yaml:"overwrite"`
	// Priority of the built-in template.
	Priority int `yaml:"priority"`
}

// SetDefaults fills the zero fields with their defaults.
func (c *Config) SetDefaults() {
	if len(c.URLs) == 0 {
		c.URLs = []string{DefaultURL}
	}
	if c.Index == "" {
		c.Index = DefaultIndex
	}
	if c.LogstashPrefix == "" {
		c.LogstashPrefix = DefaultLogstashPrefix
	}
	if c.LogstashDateFormat == "" {
		c.LogstashDateFormat = DefaultLogstashDateFormat
	}
	if c.TimeZone == "" {
		c.TimeZone = "UTC"
	}
	if c.OpType == "" {
		c.OpType = OpIndex
	}
	if c.ID == "" {
		c.ID = IDRecord
	}
	if c.TimeKey == "" {
		c.TimeKey = DefaultTimeKey
	}
	if c.ReplaceDots == "" {
		c.ReplaceDots = DotsKubernetes
	}
	if c.ReplaceDotsWith == "" {
		c.ReplaceDotsWith = "_"
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.Compress == "" {
		c.Compress = CompressGzip
	}
	if c.AWS != nil && c.AWS.Service == "" {
		c.AWS.Service = "es"
	}
	if c.Template != nil && c.Template.Priority == 0 {
		c.Template.Priority = 200
	}
}

// Validate reports the first unusable field as "field: problem".
func (c Config) Validate() error {
	for i, u := range c.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("urls[%d]: %q is not an http(s) URL", i, u)
		}
	}
	if len(c.URLs) == 0 {
		return errors.New("urls: at least one is needed")
	}
	nameTpl := c.Index
	field := "index"
	if c.LogstashFormat {
		nameTpl, field = c.LogstashPrefix, "logstash_prefix"
	}
	t, err := fieldtpl.Parse(nameTpl)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if s, ok := t.Static(); ok {
		if err := checkIndexName(s, c.LogstashFormat); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	if c.IndexFallback != "" {
		if err := checkIndexName(c.IndexFallback, c.LogstashFormat); err != nil {
			return fmt.Errorf("index_fallback: %w", err)
		}
	}
	if _, err := fieldtpl.ParseLayout(c.LogstashDateFormat); err != nil {
		return fmt.Errorf("logstash_date_format: %w", err)
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		return fmt.Errorf("time_zone: %w", err)
	}
	switch {
	case c.OpType != OpIndex && c.OpType != OpCreate:
		return fmt.Errorf("op_type: %q is not index or create", c.OpType)
	case c.ID != IDRecord && c.ID != IDNone:
		return fmt.Errorf("id: %q is not record or none", c.ID)
	case c.TimeKey == "":
		return errors.New(`time_key: must not be empty (use "-" to leave the time out)`)
	case c.ReplaceDots != DotsKubernetes && c.ReplaceDots != DotsAll && c.ReplaceDots != DotsNone:
		return fmt.Errorf("replace_dots: %q is not kubernetes, all or none", c.ReplaceDots)
	case strings.Contains(c.ReplaceDotsWith, "."):
		return errors.New("replace_dots_with: must not contain a dot")
	case c.MaxRequestBytes < 1024:
		return errors.New("max_request_bytes: must be at least 1KiB")
	case c.Compress != CompressGzip && c.Compress != CompressNone:
		return fmt.Errorf("compress: %q is not gzip or none", c.Compress)
	case c.Password != "" && c.Username == "":
		return errors.New("password: needs username")
	}
	for i, k := range c.RemoveKeys {
		if k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			return fmt.Errorf("remove_keys[%d]: %q is not a dotted field path", i, k)
		}
	}
	auths := 0
	for _, set := range []bool{c.Username != "", c.APIKey != "", c.BearerToken != "", c.AWS != nil} {
		if set {
			auths++
		}
	}
	if auths > 1 {
		return errors.New("username, api_key, bearer_token, aws: set at most one way to authenticate")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	for _, f := range []struct{ name, path string }{{"tls.ca_file", c.TLS.CAFile}, {"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if c.AWS != nil {
		if err := c.AWS.Config.Validate(); err != nil {
			return fmt.Errorf("aws.%w", err)
		}
		if c.AWS.Service != "es" && c.AWS.Service != "aoss" {
			return fmt.Errorf("aws.service: %q is not es or aoss", c.AWS.Service)
		}
	}
	if tc := c.Template; tc != nil {
		if tc.Name == "" {
			return errors.New("template.name: must be set")
		}
		if tc.File != "" {
			if _, err := os.Stat(tc.File); err != nil {
				return fmt.Errorf("template.file: %w", err)
			}
		} else if len(c.templatePatterns()) == 0 {
			return errors.New("template.index_patterns: must be set when the index is a template")
		}
	}
	return nil
}

// templatePatterns are the index patterns of the built-in template.
func (c Config) templatePatterns() []string {
	if len(c.Template.IndexPatterns) > 0 {
		return c.Template.IndexPatterns
	}
	if c.LogstashFormat {
		if t, err := fieldtpl.Parse(c.LogstashPrefix); err == nil {
			if s, ok := t.Static(); ok {
				return []string{s + "-*"}
			}
		}
		return nil
	}
	if t, err := fieldtpl.Parse(c.Index); err == nil {
		if s, ok := t.Static(); ok {
			return []string{s}
		}
	}
	return nil
}

// checkIndexName applies Elasticsearch's rules for index names; a prefix
// (logstash) is checked as the start of a name.
func checkIndexName(s string, prefix bool) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case s != strings.ToLower(s):
		return fmt.Errorf("%q must be lowercase", s)
	case strings.ContainsAny(s, `\/*?"<>| ,#:`):
		return fmt.Errorf(`%q must not contain any of \ / * ? " < > | space , # :`, s)
	case strings.IndexAny(s[:1], "-_+") == 0:
		return fmt.Errorf("%q must not start with -, _ or +", s)
	case !prefix && (s == "." || s == ".."):
		return fmt.Errorf("%q is not a valid index name", s)
	case len(s) > 255:
		return fmt.Errorf("%q is longer than 255 bytes", s)
	}
	return nil
}
