package forward

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/internal/testcerts"
)

// tlsFiles writes a server certificate and key signed by ca (and, when
// clientCA is set, its certificate) and returns the TLS configuration.
func tlsFiles(t *testing.T, ca, clientCA *testcerts.CA) TLSConfig {
	t.Helper()
	f := testcerts.Files(t, ca, clientCA)
	return TLSConfig{CertFile: f.CertFile, KeyFile: f.KeyFile, ClientCAFile: f.ClientCAFile}
}

func dialTLS(t *testing.T, s *Server, cfg *tls.Config) (*forwardtest.Conn, error) {
	t.Helper()
	c, err := forwardtest.DialTLS(s.Addr().String(), cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// sendOne sends one chunk and waits for its ack.
func sendOne(c *forwardtest.Conn, id string) error {
	return c.SendAck(forwardtest.Packed("t", entries(0, 1), forwardtest.Options{Chunk: id}), id, 10*time.Second)
}

func TestTLS(t *testing.T) {
	ca, other := testcerts.NewCA(t, "sluice test CA"), testcerts.NewCA(t, "another CA")
	pub := &memPub{}
	s, _ := startServer(t, pub, func(c *Config) { c.TLS = tlsFiles(t, ca, nil) })

	t.Run("verified", func(t *testing.T) {
		c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		if err := sendOne(c, "tls"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("client trusts another CA", func(t *testing.T) {
		before := authFailures(s, AuthReasonTLS)
		_, err := dialTLS(t, s, &tls.Config{RootCAs: other.Pool()})
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("dial with the wrong CA: %v, want unknown authority", err)
		}
		waitAuthFailures(t, s, AuthReasonTLS, before+1)
	})
	t.Run("plain TCP on the TLS port", func(t *testing.T) {
		before := authFailures(s, AuthReasonTLS)
		c := dial(t, s)
		_, _ = c.Write(forwardtest.Packed("t", entries(0, 1), forwardtest.Options{Chunk: "plain"}))
		waitClosed(t, c)
		if n := authFailures(s, AuthReasonTLS); n != before+1 {
			t.Fatalf("tls failures %v, want %v", n, before+1)
		}
	})
	if n := pub.records(); n != 1 {
		t.Fatalf("stored %d records, want 1", n)
	}
}

func TestTLSClientCertificates(t *testing.T) {
	ca, other := testcerts.NewCA(t, "sluice test CA"), testcerts.NewCA(t, "another CA")
	pub := &memPub{}
	s, _ := startServer(t, pub, func(c *Config) { c.TLS = tlsFiles(t, ca, ca) })

	t.Run("certificate signed by the client CA", func(t *testing.T) {
		c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.ClientCert(t)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := sendOne(c, "mtls"); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no certificate", nil},
		{"certificate of another CA", []tls.Certificate{other.ClientCert(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, stored := authFailures(s, AuthReasonTLS), pub.records()
			// With TLS 1.3 the client finishes its side before the server
			// checks the certificate: the refusal shows on the first read.
			c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.Pool(), Certificates: tc.certs})
			if err == nil {
				if err = sendOne(c, "refused"); err == nil {
					t.Fatal("chunk acknowledged without a valid client certificate")
				}
			}
			waitAuthFailures(t, s, AuthReasonTLS, before+1)
			if pub.records() != stored {
				t.Fatal("stored records")
			}
		})
	}
}

func TestTLSWithSharedKey(t *testing.T) {
	ca := testcerts.NewCA(t, "sluice test CA")
	pub := &memPub{}
	s, _ := startServer(t, pub, withKey(func(c *Config) { c.TLS = tlsFiles(t, ca, nil) }))
	c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if ok, reason, err := c.Handshake(client("fluent-bit"), 10*time.Second); !ok || err != nil {
		t.Fatalf("handshake over TLS: %v %q %v", ok, reason, err)
	}
	if err := sendOne(c, "both"); err != nil {
		t.Fatal(err)
	}
	bad, err := dialTLS(t, s, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	a := client("fluent-bit")
	a.SharedKey = "wrong"
	if ok, reason, err := bad.Handshake(a, 10*time.Second); ok || err != nil || reason != "shared_key mismatch" {
		t.Fatalf("wrong key over TLS: %v %q %v", ok, reason, err)
	}
	if n := authFailures(s, AuthReasonSharedKey); n != 1 {
		t.Fatalf("bad_shared_key failures %v, want 1", n)
	}
	if n := pub.records(); n != 1 {
		t.Fatalf("stored %d records, want 1", n)
	}
}

// TestTLSHandshakeTimeout closes a client that never starts TLS.
func TestTLSHandshakeTimeout(t *testing.T) {
	ca := testcerts.NewCA(t, "sluice test CA")
	s, _ := startServer(t, &memPub{}, func(c *Config) {
		c.TLS = tlsFiles(t, ca, nil)
		c.Security.HandshakeTimeout = 200 * time.Millisecond
	})
	c := dial(t, s)
	waitClosed(t, c)
	if n := authFailures(s, AuthReasonTimeout); n != 1 {
		t.Fatalf("timeout failures %v, want 1", n)
	}
}

func TestTLSMinVersion(t *testing.T) {
	ca := testcerts.NewCA(t, "sluice test CA")
	s, _ := startServer(t, &memPub{}, func(c *Config) {
		c.TLS = tlsFiles(t, ca, nil)
		c.TLS.MinVersion = "1.3"
	})
	if _, err := dialTLS(t, s, &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("TLS 1.2 accepted with min_version 1.3")
	}
	waitAuthFailures(t, s, AuthReasonTLS, 1)
	c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sendOne(c, "v13"); err != nil {
		t.Fatal(err)
	}
}

func TestTLSConfigValidate(t *testing.T) {
	ca := testcerts.NewCA(t, "sluice test CA")
	good := tlsFiles(t, ca, ca)
	dir := t.TempDir()
	notPEM := testcerts.WriteFile(t, dir, "not.PEM", []byte("not a certificate"))
	cases := []struct {
		name  string
		tls   TLSConfig
		field string
	}{
		{"cert without key", TLSConfig{CertFile: good.CertFile}, "tls.key_file:"},
		{"key without cert", TLSConfig{KeyFile: good.KeyFile}, "tls.cert_file:"},
		{"missing cert file", TLSConfig{CertFile: filepath.Join(dir, "nope"), KeyFile: good.KeyFile}, "tls.cert_file:"},
		{"cert file not PEM", TLSConfig{CertFile: notPEM, KeyFile: good.KeyFile}, "tls.cert_file:"},
		{"client CA without cert", TLSConfig{ClientCAFile: good.ClientCAFile}, "tls.client_ca_file:"},
		{"client CA not PEM", TLSConfig{CertFile: good.CertFile, KeyFile: good.KeyFile, ClientCAFile: notPEM}, "tls.client_ca_file:"},
		{"missing client CA", TLSConfig{CertFile: good.CertFile, KeyFile: good.KeyFile,
			ClientCAFile: filepath.Join(dir, "nope")}, "tls.client_ca_file:"},
		{"min version", TLSConfig{MinVersion: "1.0"}, "tls.min_version:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Listen: "127.0.0.1:0", TLS: tc.tls}
			c.SetDefaults()
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v does not name %s", err, tc.field)
			}
		})
	}
	c := Config{Listen: "127.0.0.1:0", TLS: good}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid TLS configuration refused: %v", err)
	}
}
