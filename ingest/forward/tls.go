package forward

import (
	"crypto/tls"
	"fmt"

	"github.com/sluicelog/sluice/internal/tlsconfig"
)

// TLSConfig configures TLS on the Forward port. TLS is on when CertFile and
// KeyFile are set; the UDP heartbeat stays plain UDP.
type TLSConfig struct {
	// CertFile and KeyFile are the server certificate (with its chain) and
	// its private key, in PEM.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes client certificates required and
	// verified against the CAs in this PEM file (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is the lowest TLS version accepted: "1.2" or "1.3".
	MinVersion string `yaml:"min_version"`
}

// Enabled reports whether TLS is configured.
func (c *TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

func (c *TLSConfig) setDefaults() {
	if c.MinVersion == "" {
		c.MinVersion = "1.2"
	}
}

// load returns the server tls.Config, or nil when TLS is off. Error texts
// start with the field path (tls.cert_file, ...).
func (c *TLSConfig) load() (*tls.Config, error) {
	var minVersion uint16
	switch c.MinVersion {
	case "1.2":
		minVersion = tls.VersionTLS12
	case "1.3":
		minVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls.min_version: %q is not one of 1.2, 1.3", c.MinVersion)
	}
	fc := tlsconfig.Config{CertFile: c.CertFile, KeyFile: c.KeyFile, ClientCAFile: c.ClientCAFile}
	if err := fc.Validate(); err != nil {
		return nil, prefixTLS(err)
	}
	tc, err := fc.Load()
	if err != nil {
		return nil, prefixTLS(err)
	}
	if tc != nil {
		tc.MinVersion = minVersion
	}
	return tc, nil
}

// prefixTLS puts "tls." before the field name that starts err's text
// (internal/tlsconfig names its fields that way).
func prefixTLS(err error) error { return fmt.Errorf("tls.%w", err) }
