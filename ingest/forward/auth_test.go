package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gopkg.in/yaml.v3"

	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/internal/msgp"
)

const (
	testKey      = "k3y-never-logged"
	testHostname = "sluice-test"
)

// authFailures returns sluice_auth_failures_total{reason}.
func authFailures(s *Server, reason string) float64 {
	return testutil.ToFloat64(s.m.authFailures.WithLabelValues(reason))
}

// totalAuthFailures sums sluice_auth_failures_total over reasons.
func totalAuthFailures(s *Server) float64 {
	n := 0.0
	for _, r := range authReasons {
		n += authFailures(s, r)
	}
	return n
}

// waitAuthFailures waits until reason has been counted want times; for
// failures the client cannot observe (it gave up first).
func waitAuthFailures(t *testing.T, s *Server, reason string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for authFailures(s, reason) < want {
		if time.Now().After(deadline) {
			t.Fatalf("sluice_auth_failures_total{reason=%q} = %v, want %v", reason, authFailures(s, reason), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func withKey(edit func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Security.SharedKey = testKey
		c.Security.SelfHostname = testHostname
		if edit != nil {
			edit(c)
		}
	}
}

func client(host string) forwardtest.Auth {
	return forwardtest.Auth{Hostname: host, SharedKey: testKey}
}

// handshake dials s and completes the handshake with a.
func handshake(t *testing.T, s *Server, a forwardtest.Auth) *forwardtest.Conn {
	t.Helper()
	c := dial(t, s)
	ok, reason, err := c.Handshake(a, 10*time.Second)
	if err != nil || !ok {
		t.Fatalf("handshake: ok %v, reason %q, %v", ok, reason, err)
	}
	return c
}

// refused dials s, expects the handshake with a to be refused with a PONG
// naming pongReason and the connection closed, counted under reason, and
// nothing stored.
func refused(t *testing.T, s *Server, pub *memPub, a forwardtest.Auth, pongReason, reason string) {
	t.Helper()
	before, stored := authFailures(s, reason), pub.records()
	c := dial(t, s)
	ok, got, err := c.Handshake(a, 10*time.Second)
	if err != nil || ok || got != pongReason {
		t.Fatalf("handshake: ok %v, reason %q, %v; want refused with %q", ok, got, err, pongReason)
	}
	// Whatever the client sends next is not read as events.
	_, _ = c.Write(forwardtest.Packed("t", entries(0, 1), forwardtest.Options{Chunk: "sneaky"}))
	waitClosed(t, c)
	if n := authFailures(s, reason); n != before+1 {
		t.Fatalf("auth failures{reason=%q} %v, want %v", reason, n, before+1)
	}
	if pub.records() != stored {
		t.Fatal("a refused connection stored records")
	}
}

func TestHandshakeSharedKey(t *testing.T) {
	pub := &memPub{}
	s, _ := startServer(t, pub, withKey(nil))
	good := handshake(t, s, client("fluent-bit-1"))
	sent := 0
	sendGood := func() {
		t.Helper()
		id := fmt.Sprintf("good-%d", sent)
		if err := good.SendAck(forwardtest.Packed("ok", entries(sent, 1), forwardtest.Options{Chunk: id}), id, 10*time.Second); err != nil {
			t.Fatalf("good connection: %v", err)
		}
		sent++
	}
	sendGood()

	t.Run("right key", func(t *testing.T) {
		c := handshake(t, s, client("fluent-bit-2"))
		if err := c.SendAck(forwardtest.Packed("t", entries(0, 2), forwardtest.Options{Chunk: "a"}), "a", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		sent += 2
		sendGood()
	})
	t.Run("wrong key", func(t *testing.T) {
		a := client("fluent-bit-3")
		a.SharedKey = "not the key"
		refused(t, s, pub, a, "shared_key mismatch", AuthReasonSharedKey)
		sendGood()
	})
	t.Run("same hostname", func(t *testing.T) {
		refused(t, s, pub, client(testHostname), "same hostname between input and output: invalid configuration",
			AuthReasonSameHostname)
		sendGood()
	})
	t.Run("user fields ignored without users", func(t *testing.T) {
		c := dial(t, s)
		h, err := c.ReadHelo(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Nonce) != 16 || len(h.Auth) != 0 || !h.Keepalive {
			t.Fatalf("HELO %+v: want a 16-byte nonce, no user salt, keepalive", h)
		}
		a := client("fluent-bit-4")
		a.Username, a.Password = "someone", "anything"
		salt := forwardtest.NewSalt()
		if _, err := c.Write(forwardtest.Ping(forwardtest.Helo{Nonce: h.Nonce, Auth: []byte("x")}, a, salt)); err != nil {
			t.Fatal(err)
		}
		if ok, reason, err := c.ReadPong(h, a, salt, 10*time.Second); !ok || err != nil {
			t.Fatalf("PONG %v %q %v", ok, reason, err)
		}
	})
	t.Run("chunk pipelined after PING", func(t *testing.T) {
		c := dial(t, s)
		h, err := c.ReadHelo(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		a := client("fluent-bit-5")
		salt := forwardtest.NewSalt()
		b := forwardtest.Ping(h, a, salt)
		b = append(b, forwardtest.Packed("t", entries(0, 3), forwardtest.Options{Chunk: "p"})...)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if ok, reason, err := c.ReadPong(h, a, salt, 10*time.Second); !ok || err != nil {
			t.Fatalf("PONG %v %q %v", ok, reason, err)
		}
		if id, err := c.ReadAck(10 * time.Second); err != nil || id != "p" {
			t.Fatalf("ack %q, %v", id, err)
		}
		sent += 3
	})

	str := func(s string) []byte { return msgp.AppendStr(nil, s) }
	malformed := []struct {
		name  string
		input []byte
	}{
		{"garbage", []byte("garbage")},
		{"a chunk instead of PING", forwardtest.Packed("t", entries(0, 1), forwardtest.Options{Chunk: "x"})},
		{"PING of 5 elements", append(msgp.AppendArrayHeader(nil, 5), bytes.Repeat(str("PING"), 5)...)},
		{"PING with an int", append(append(msgp.AppendArrayHeader(nil, 6), bytes.Repeat(str("PING"), 5)...), 0x01)},
		{"HELO sent back", append(append(msgp.AppendArrayHeader(nil, 6), str("HELO")...), bytes.Repeat(str(""), 5)...)},
		{"never-used byte", []byte{0xc1}},
		{"oversized PING", append(msgp.AppendArrayHeader(nil, 6), msgp.AppendStr(nil, strings.Repeat("P", 100<<10))...)},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			before, stored := authFailures(s, AuthReasonMalformed), pub.records()
			c := dial(t, s)
			if _, err := c.ReadHelo(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write(tc.input) // the server may close before all is written
			waitClosed(t, c)
			if n := authFailures(s, AuthReasonMalformed); n != before+1 {
				t.Fatalf("malformed failures %v, want %v", n, before+1)
			}
			if pub.records() != stored {
				t.Fatal("stored records")
			}
			sendGood()
		})
	}
	t.Run("refused PONG for a bad PING", func(t *testing.T) {
		c := dial(t, s)
		if _, err := c.ReadHelo(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(str("hello")); err != nil {
			t.Fatal(err)
		}
		v, err := c.ReadValue(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want := appendPong(nil, false, "invalid ping message", "", nil)
		if !bytes.Equal(v, want) {
			t.Fatalf("reply %x, want PONG false %x", v, want)
		}
		waitClosed(t, c)
	})
	if got := pub.records(); got != sent {
		t.Fatalf("stored %d records, want the %d sent over authenticated connections", got, sent)
	}
}

func TestHandshakeUsers(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "bob")
	if err := os.WriteFile(pwFile, []byte("  b0b-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := &memPub{}
	s, _ := startServer(t, pub, func(c *Config) {
		c.Security.SharedKeyFile = keyFile
		c.Security.SelfHostname = testHostname
		c.Security.Users = []UserConfig{{Username: "alice", Password: "al1ce-pw"}, {Username: "bob", PasswordFile: pwFile}}
	})
	user := func(name, password string) forwardtest.Auth {
		a := client("fluent-bit-" + name)
		a.Username, a.Password = name, password
		return a
	}
	good := handshake(t, s, user("alice", "al1ce-pw"))
	if err := good.SendAck(forwardtest.Packed("t", entries(0, 1), forwardtest.Options{Chunk: "alice"}), "alice", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	handshake(t, s, user("bob", "b0b-pw")) // from the trimmed file

	t.Run("HELO asks for users", func(t *testing.T) {
		c := dial(t, s)
		h, err := c.ReadHelo(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Auth) != 16 {
			t.Fatalf("HELO auth salt of %d bytes, want 16", len(h.Auth))
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		refused(t, s, pub, user("alice", "b0b-pw"), "username/password mismatch", AuthReasonUser)
	})
	t.Run("unknown user", func(t *testing.T) {
		// Refused exactly as a wrong password: nothing tells names apart.
		refused(t, s, pub, user("mallory", "al1ce-pw"), "username/password mismatch", AuthReasonUser)
	})
	t.Run("no user", func(t *testing.T) {
		refused(t, s, pub, user("", ""), "username/password mismatch", AuthReasonUser)
	})
	t.Run("wrong key with a right user", func(t *testing.T) {
		a := user("alice", "al1ce-pw")
		a.SharedKey = "other"
		refused(t, s, pub, a, "shared_key mismatch", AuthReasonSharedKey)
	})
	if err := good.SendAck(forwardtest.Packed("t", entries(1, 1), forwardtest.Options{Chunk: "again"}), "again", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if pub.records() != 2 {
		t.Fatalf("stored %d records, want 2", pub.records())
	}
}

// TestHandshakeTimeout closes a client that never answers HELO.
func TestHandshakeTimeout(t *testing.T) {
	pub := &memPub{}
	s, _ := startServer(t, pub, withKey(func(c *Config) { c.Security.HandshakeTimeout = 200 * time.Millisecond }))
	silent := dial(t, s)
	if _, err := silent.ReadHelo(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, silent)
	if n := authFailures(s, AuthReasonTimeout); n != 1 {
		t.Fatalf("timeout failures %v, want 1", n)
	}

	// A client that stops in the middle of its PING is timed out too.
	half := dial(t, s)
	h, err := half.ReadHelo(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ping := forwardtest.Ping(h, client("fluent-bit"), forwardtest.NewSalt())
	if _, err := half.Write(ping[:len(ping)/2]); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, half)
	if n := authFailures(s, AuthReasonTimeout); n != 2 {
		t.Fatalf("timeout failures %v, want 2", n)
	}

	// A connection that completed the handshake is not timed out.
	good := handshake(t, s, client("fluent-bit"))
	time.Sleep(300 * time.Millisecond) // idle beyond handshake_timeout
	if err := good.SendAck(forwardtest.Packed("t", entries(0, 1), forwardtest.Options{Chunk: "late"}), "late", 10*time.Second); err != nil {
		t.Fatalf("idle authenticated connection: %v", err)
	}
}

// TestHandshakeEarlyCloseNotCounted closes without sending anything, as a
// port probe does: not an authentication failure.
func TestHandshakeEarlyCloseNotCounted(t *testing.T) {
	s, _ := startServer(t, &memPub{}, withKey(nil))
	c := dial(t, s)
	if _, err := c.ReadHelo(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A later connection proves the first one was handled.
	handshake(t, s, client("fluent-bit"))
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.m.conns) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection was never released")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := totalAuthFailures(s); n != 0 {
		t.Fatalf("%v auth failures counted for a closed connection", n)
	}
}

// TestShutdownDuringHandshake stops the server while a client sits in the
// handshake: shutdown does not wait for handshake_timeout and counts nothing.
func TestShutdownDuringHandshake(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0"}
	withKey(func(c *Config) { c.Security.HandshakeTimeout = time.Hour })(&cfg)
	cfg.SetDefaults()
	s := New(cfg, &memPub{}, component.Settings{})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := forwardtest.Dial(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ReadHelo(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	if n := totalAuthFailures(s); n != 0 {
		t.Fatalf("%v auth failures counted at shutdown", n)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestSecretsNotShown checks that the shared key and passwords appear in
// no log line (at debug level), printed config, JSON or YAML, and that
// they are still read from YAML.
func TestSecretsNotShown(t *testing.T) {
	const password = "pa55-never-logged"
	var cfg Config
	raw := fmt.Sprintf("listen: 127.0.0.1:0\nsecurity:\n  shared_key: %s\n  self_hostname: %s\n  users:\n    - username: alice\n      password: %s\n",
		testKey, testHostname, password)
	if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Security.SharedKey != testKey || cfg.Security.Users[0].Password != password {
		t.Fatalf("secrets not read from YAML: %q %q", string(cfg.Security.SharedKey), string(cfg.Security.Users[0].Password))
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	set := component.Settings{
		Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: prometheus.NewRegistry(),
	}
	s := New(cfg, &memPub{}, set)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	a := forwardtest.Auth{Hostname: "fluent-bit", SharedKey: testKey, Username: "alice", Password: password}
	handshake(t, s, a)
	wrongKey := a
	wrongKey.SharedKey = testKey + "x"
	wrongPassword := a
	wrongPassword.Password = password + "x"
	for _, bad := range []forwardtest.Auth{wrongKey, wrongPassword} {
		c := dial(t, s)
		if ok, _, err := c.Handshake(bad, 10*time.Second); ok || err != nil {
			t.Fatalf("bad credentials accepted: %v %v", ok, err)
		}
		waitClosed(t, c)
	}
	if !strings.Contains(logs.String(), "reason="+AuthReasonUser) || !strings.Contains(logs.String(), "reason="+AuthReasonSharedKey) {
		t.Fatalf("handshake failures not logged with their reason:\n%s", logs.String())
	}

	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ym, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]string{
		"logs":  logs.String(),
		"%v":    fmt.Sprintf("%v", cfg),
		"%+v":   fmt.Sprintf("%+v", cfg),
		"%#v":   fmt.Sprintf("%#v", cfg),
		"json":  string(js),
		"yaml":  string(ym),
		"slog":  slogText(cfg),
		"users": fmt.Sprint(cfg.Security.Users),
	}
	for where, text := range shown {
		for _, secret := range []string{testKey, password} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows a secret:\n%s", where, text)
			}
		}
	}
	if !strings.Contains(string(js), redacted) {
		t.Errorf("json does not mark the redacted secrets: %s", js)
	}
}

func slogText(v any) string {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", "config", v)
	return b.String()
}

func TestSecurityConfigValidate(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		sec   SecurityConfig
		field string
	}{
		{"users without key", SecurityConfig{Users: []UserConfig{{Username: "a", Password: "b"}}},
			"security.shared_key: must not be empty when users are set"},
		{"key and key file", SecurityConfig{SharedKey: testKey, SharedKeyFile: empty}, "security.shared_key_file:"},
		{"missing key file", SecurityConfig{SharedKeyFile: filepath.Join(dir, "nope")}, "security.shared_key_file:"},
		{"empty key file", SecurityConfig{SharedKeyFile: empty}, "security.shared_key_file:"},
		{"no username", SecurityConfig{SharedKey: testKey, Users: []UserConfig{{Password: "b"}}}, "security.users[0].username:"},
		{"duplicate username", SecurityConfig{SharedKey: testKey, Users: []UserConfig{{Username: "a", Password: "b"},
			{Username: "a", Password: "c"}}}, "security.users[1].username:"},
		{"no password", SecurityConfig{SharedKey: testKey, Users: []UserConfig{{Username: "a"}}}, "security.users[0].password:"},
		{"password and file", SecurityConfig{SharedKey: testKey, Users: []UserConfig{{Username: "a", Password: "b",
			PasswordFile: empty}}}, "security.users[0].password_file:"},
		{"empty password file", SecurityConfig{SharedKey: testKey, Users: []UserConfig{{Username: "a",
			PasswordFile: empty}}}, "security.users[0].password_file:"},
		{"handshake timeout", SecurityConfig{HandshakeTimeout: -1}, "security.handshake_timeout:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Listen: "127.0.0.1:0", Security: tc.sec}
			c.SetDefaults()
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v does not name %s", err, tc.field)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Fatalf("error shows the key: %v", err)
			}
		})
	}
	var d Config
	d.SetDefaults()
	if d.Security.Enabled() || d.TLS.Enabled() || d.Security.HandshakeTimeout != 10*time.Second || d.TLS.MinVersion != "1.2" {
		t.Fatalf("defaults %+v %+v", d.Security, d.TLS)
	}
	if h, err := os.Hostname(); err == nil && d.Security.SelfHostname != h {
		t.Fatalf("self_hostname default %q, want %q", d.Security.SelfHostname, h)
	}
}
