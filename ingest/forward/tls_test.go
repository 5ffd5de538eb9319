package forward

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/forwardtest"
)

// testCA is a certificate authority generated for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key signed by ca, in PEM: for a server at
// 127.0.0.1, or for a client.
func (ca *testCA) issue(t *testing.T, name string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// clientCert returns a client certificate signed by ca.
func (ca *testCA) clientCert(t *testing.T) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, "fluent-bit", false)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsFiles writes a server certificate and key signed by ca (and, when
// clientCA is set, its certificate) and returns the TLS configuration.
func tlsFiles(t *testing.T, ca, clientCA *testCA) TLSConfig {
	t.Helper()
	dir := t.TempDir()
	c, k := ca.issue(t, "sluice", true)
	cfg := TLSConfig{CertFile: writeFile(t, dir, "server.crt", c), KeyFile: writeFile(t, dir, "server.key", k)}
	if clientCA != nil {
		cfg.ClientCAFile = writeFile(t, dir, "clients.crt", clientCA.pem)
	}
	return cfg
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
	ca, other := newCA(t, "sluice test CA"), newCA(t, "another CA")
	pub := &memPub{}
	s, _ := startServer(t, pub, func(c *Config) { c.TLS = tlsFiles(t, ca, nil) })

	t.Run("verified", func(t *testing.T) {
		c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.pool()})
		if err != nil {
			t.Fatal(err)
		}
		if err := sendOne(c, "tls"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("client trusts another CA", func(t *testing.T) {
		before := authFailures(s, AuthReasonTLS)
		_, err := dialTLS(t, s, &tls.Config{RootCAs: other.pool()})
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
	ca, other := newCA(t, "sluice test CA"), newCA(t, "another CA")
	pub := &memPub{}
	s, _ := startServer(t, pub, func(c *Config) { c.TLS = tlsFiles(t, ca, ca) })

	t.Run("certificate signed by the client CA", func(t *testing.T) {
		c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{ca.clientCert(t)}})
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
		{"certificate of another CA", []tls.Certificate{other.clientCert(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, stored := authFailures(s, AuthReasonTLS), pub.records()
			// With TLS 1.3 the client finishes its side before the server
			// checks the certificate: the refusal shows on the first read.
			c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.pool(), Certificates: tc.certs})
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
	ca := newCA(t, "sluice test CA")
	pub := &memPub{}
	s, _ := startServer(t, pub, withKey(func(c *Config) { c.TLS = tlsFiles(t, ca, nil) }))
	c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.pool()})
	if err != nil {
		t.Fatal(err)
	}
	if ok, reason, err := c.Handshake(client("fluent-bit"), 10*time.Second); !ok || err != nil {
		t.Fatalf("handshake over TLS: %v %q %v", ok, reason, err)
	}
	if err := sendOne(c, "both"); err != nil {
		t.Fatal(err)
	}
	bad, err := dialTLS(t, s, &tls.Config{RootCAs: ca.pool()})
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
	ca := newCA(t, "sluice test CA")
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
	ca := newCA(t, "sluice test CA")
	s, _ := startServer(t, &memPub{}, func(c *Config) {
		c.TLS = tlsFiles(t, ca, nil)
		c.TLS.MinVersion = "1.3"
	})
	if _, err := dialTLS(t, s, &tls.Config{RootCAs: ca.pool(), MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("TLS 1.2 accepted with min_version 1.3")
	}
	waitAuthFailures(t, s, AuthReasonTLS, 1)
	c, err := dialTLS(t, s, &tls.Config{RootCAs: ca.pool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sendOne(c, "v13"); err != nil {
		t.Fatal(err)
	}
}

func TestTLSConfigValidate(t *testing.T) {
	ca := newCA(t, "sluice test CA")
	good := tlsFiles(t, ca, ca)
	dir := t.TempDir()
	notPEM := writeFile(t, dir, "not.pem", []byte("not a certificate"))
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
