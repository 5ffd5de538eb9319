// Package tlsconfig builds server TLS configurations from certificate files.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Config is a listener's TLS setup. TLS is on when CertFile is set.
type Config struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes client certificates required and
	// verified against these CAs (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether TLS is configured.
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate checks that the files are set together and load; error texts
// start with the field name.
func (c Config) Validate() error {
	if !c.Enabled() {
		if c.ClientCAFile != "" {
			return errors.New("client_ca_file: needs cert_file and key_file")
		}
		return nil
	}
	if c.CertFile == "" {
		return errors.New("cert_file: must be set with key_file")
	}
	if c.KeyFile == "" {
		return errors.New("key_file: must be set with cert_file")
	}
	_, err := c.Load()
	return err
}

// Load returns the server tls.Config, or nil when TLS is off.
func (c Config) Load() (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file: no PEM certificate in %s", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
