// Package otlp takes OpenTelemetry logs in: OTLP/HTTP (POST /v1/logs,
// protobuf or JSON, gzip) and OTLP/gRPC (LogsService/Export), decoded with
// the Collector's pdata packages. Each log record becomes a sluice record
// (docs/OTLP.md) in a chunk whose tag is built from the resource
// attributes, and a request is answered only once JetStream holds its
// records, as on the Forward and HTTP listeners.
package otlp

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/sluicelog/sluice/ingest/httpin"
	"github.com/sluicelog/sluice/internal/tlsconfig"
	"github.com/sluicelog/sluice/internal/units"
)

// ListenDisabled as a Listen turns that listener off.
const ListenDisabled = "off"

// DefaultTag builds the tag from the pod's resource attributes; a missing
// attribute reads "_".
const DefaultTag = "otlp.${k8s.namespace.name}.${k8s.pod.name}.${k8s.container.name}"

// Config configures OTLP ingest.
type Config struct {
	// HTTP is OTLP/HTTP (port 4318).
	HTTP ListenerConfig `yaml:"http"`
	// GRPC is OTLP/gRPC (port 4317).
	GRPC GRPCConfig `yaml:"grpc"`
	// Tag is the chunk tag of a resource's records: text with
	// ${attribute} references to resource attributes (DefaultTag).
	Tag string `yaml:"tag"`
	// MaxBodyBytes caps a request as sent (413, or gRPC
	// RESOURCE_EXHAUSTED above it).
	MaxBodyBytes units.ByteSize `yaml:"max_body_bytes"`
	// MaxDecompressedBytes caps a gzip body once inflated.
	MaxDecompressedBytes units.ByteSize `yaml:"max_decompressed_bytes"`
	// MaxRecordBytes caps one record in msgpack; a larger one is rejected
	// alone (partial success) while the rest of the request is stored.
	MaxRecordBytes units.ByteSize `yaml:"max_record_bytes"`
	// MaxConcurrentRequests bounds the requests decoded and waiting for
	// storage at once, over both listeners.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// StoreTimeout bounds the wait for JetStream to store a request
	// (503 / UNAVAILABLE after it).
	StoreTimeout time.Duration `yaml:"store_timeout"`
}

// ListenerConfig is one listener's address and TLS.
type ListenerConfig struct {
	// Listen is host:port, or "off".
	Listen string           `yaml:"listen"`
	TLS    tlsconfig.Config `yaml:"tls"`
	// ReadTimeout bounds reading a whole request (HTTP).
	ReadTimeout time.Duration `yaml:"read_timeout"`
}

// GRPCConfig is the gRPC listener.
type GRPCConfig struct {
	Listen string           `yaml:"listen"`
	TLS    tlsconfig.Config `yaml:"tls"`
	// MaxConnectionAge sends a connection GOAWAY after this age (±10%),
	// so that clients spread again over the replicas behind a load
	// balancer; 0 keeps connections.
	MaxConnectionAge time.Duration `yaml:"max_connection_age"`
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = ":4318"
	}
	if c.HTTP.ReadTimeout == 0 {
		c.HTTP.ReadTimeout = time.Minute
	}
	if c.GRPC.Listen == "" {
		c.GRPC.Listen = ":4317"
	}
	if c.Tag == "" {
		c.Tag = DefaultTag
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.MaxDecompressedBytes == 0 {
		c.MaxDecompressedBytes = 64 << 20
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = 1 << 20
	}
	if c.MaxConcurrentRequests == 0 {
		c.MaxConcurrentRequests = 64
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 30 * time.Second
	}
}

// Validate checks the configuration; error texts start with the field name.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, msg string) { errs = append(errs, fmt.Errorf("%s: %s", field, msg)) }
	for _, l := range []struct {
		name, listen string
		tls          tlsconfig.Config
	}{{"http", c.HTTP.Listen, c.HTTP.TLS}, {"grpc", c.GRPC.Listen, c.GRPC.TLS}} {
		if l.listen != ListenDisabled {
			if _, _, err := net.SplitHostPort(l.listen); err != nil {
				add(l.name+".listen", fmt.Sprintf("%q is not host:port (or %q to disable)", l.listen, ListenDisabled))
			}
		}
		if err := l.tls.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.tls.%w", l.name, err))
		}
	}
	if c.HTTP.Listen != ListenDisabled && c.HTTP.Listen == c.GRPC.Listen && !strings.HasSuffix(c.HTTP.Listen, ":0") {
		add("grpc.listen", fmt.Sprintf("%q is also http.listen", c.GRPC.Listen))
	}
	if c.HTTP.ReadTimeout <= 0 {
		add("http.read_timeout", "must be positive")
	}
	if c.GRPC.MaxConnectionAge < 0 {
		add("grpc.max_connection_age", "must not be negative")
	}
	if _, err := parseTag(c.Tag); err != nil {
		add("tag", err.Error())
	}
	errs = append(errs, httpin.ValidateSizes(c.MaxBodyBytes, c.MaxDecompressedBytes, c.MaxRecordBytes)...)
	if c.MaxConcurrentRequests < 1 {
		add("max_concurrent_requests", "must be positive")
	}
	if c.StoreTimeout <= 0 {
		add("store_timeout", "must be positive")
	}
	return errors.Join(errs...)
}
