package forward

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sluicelog/sluice/internal/msgp"
)

// Reasons a connection fails before its Forward stream starts; they are the
// reason label of sluice_auth_failures_total{listener="forward"}.
const (
	AuthReasonTimeout      = "timeout"        // no complete PING (or TLS handshake) within handshake_timeout
	AuthReasonMalformed    = "malformed"      // the client sent something other than a PING
	AuthReasonSharedKey    = "bad_shared_key" // the shared key digest does not match
	AuthReasonUser         = "bad_user"       // unknown user or wrong password (not told apart)
	AuthReasonSameHostname = "same_hostname"  // the client has the server's self_hostname
	AuthReasonTLS          = "tls"            // the TLS handshake failed
)

var authReasons = []string{AuthReasonTimeout, AuthReasonMalformed, AuthReasonSharedKey, AuthReasonUser,
	AuthReasonSameHostname, AuthReasonTLS}

// maxPingBytes bounds the PING value a client may send.
const maxPingBytes = 64 << 10

// Secret is a configuration value that must never be shown: it prints,
// logs and marshals (JSON, YAML, text) as "[redacted]", or "" when empty.
// It is read from YAML as a plain string.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText is used by encoding/json and YAML encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// SecurityConfig configures the Forward handshake (HELO, PING, PONG) of
// Forward protocol v1. The handshake is on when a shared key is set.
type SecurityConfig struct {
	// SharedKey is the key shared with the forwarders; SharedKeyFile names
	// a file holding it instead (surrounding white space is trimmed). Set
	// one of them.
	SharedKey     Secret `yaml:"shared_key"`
	SharedKeyFile string `yaml:"shared_key_file"`
	// SelfHostname is the name the server gives in its PONG; clients must
	// have another one. It defaults to the host name.
	SelfHostname string `yaml:"self_hostname"`
	// Users, when set, makes clients also authenticate with a username and
	// password.
	Users []UserConfig `yaml:"users"`
	// HandshakeTimeout bounds the TLS handshake and the Forward handshake
	// together: a client that has not completed them in time is closed.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
}

// UserConfig is one user of the handshake.
type UserConfig struct {
	Username string `yaml:"username"`
	// Password, or PasswordFile naming a file holding it (trimmed).
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// Enabled reports whether the handshake is on.
func (c *SecurityConfig) Enabled() bool { return c.SharedKey != "" || c.SharedKeyFile != "" }

func (c *SecurityConfig) setDefaults() {
	if c.SelfHostname == "" {
		if h, err := os.Hostname(); err == nil {
			c.SelfHostname = h
		}
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
}

// load reads the secrets and returns the authenticator, or nil when the
// handshake is off. Error texts start with the field path
// (security.shared_key, ...) and never contain a secret.
func (c *SecurityConfig) load() (*authenticator, error) {
	var errs []error
	add := func(field, msg string) { errs = append(errs, fmt.Errorf("security.%s: %s", field, msg)) }
	if c.HandshakeTimeout <= 0 {
		add("handshake_timeout", "must be positive")
	}
	if !c.Enabled() {
		if len(c.Users) > 0 {
			add("shared_key", "must not be empty when users are set")
		}
		return nil, errors.Join(errs...)
	}
	a := &authenticator{hostname: c.SelfHostname}
	switch {
	case c.SharedKey != "" && c.SharedKeyFile != "":
		add("shared_key_file", "set either shared_key or shared_key_file, not both")
	case c.SharedKey != "":
		a.sharedKey = []byte(c.SharedKey)
	default:
		key, err := readSecretFile(c.SharedKeyFile)
		if err != nil {
			add("shared_key_file", err.Error())
		}
		a.sharedKey = key
	}
	if c.SelfHostname == "" {
		add("self_hostname", "must not be empty (the host name is unknown)")
	}
	seen := map[string]int{}
	for i, u := range c.Users {
		field := fmt.Sprintf("users[%d].", i)
		if u.Username == "" {
			add(field+"username", "must not be empty")
		} else if j, dup := seen[u.Username]; dup {
			add(field+"username", fmt.Sprintf("%q is already users[%d]", u.Username, j))
		} else {
			seen[u.Username] = i
		}
		var password []byte
		switch {
		case u.Password != "" && u.PasswordFile != "":
			add(field+"password_file", "set either password or password_file, not both")
		case u.Password != "":
			password = []byte(u.Password)
		case u.PasswordFile != "":
			p, err := readSecretFile(u.PasswordFile)
			if err != nil {
				add(field+"password_file", err.Error())
			}
			password = p
		default:
			add(field+"password", "must not be empty (or set password_file)")
		}
		a.users = append(a.users, user{name: []byte(u.Username), password: password})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return a, nil
}

// readSecretFile returns the trimmed content of a file holding a secret.
func readSecretFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err // names the path, never the content
	}
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return []byte(s), nil
}

// authenticator checks PINGs against the loaded secrets.
type authenticator struct {
	sharedKey []byte
	hostname  string
	users     []user
}

type user struct {
	name, password []byte
}

// hexDigest returns hex(sha512(parts...)), the digest form of the handshake.
func hexDigest(parts ...[]byte) []byte {
	h := sha512.New()
	for _, p := range parts {
		h.Write(p)
	}
	var sum [sha512.Size]byte
	return hex.AppendEncode(nil, h.Sum(sum[:0]))
}

// ping is a parsed PING; its slices alias the read buffer.
type ping struct {
	hostname, sharedKeySalt, sharedKeyDigest, username, passwordDigest []byte
}

// check verifies p against the nonce and user salt of the HELO. It returns
// "" when p authenticates, else a reason label and the text for the PONG.
// Digests are compared in constant time; an unknown user and a wrong
// password take the same path and give the same answer.
func (a *authenticator) check(p *ping, nonce, userSalt []byte) (reason, text string) {
	want := hexDigest(p.sharedKeySalt, p.hostname, nonce, a.sharedKey)
	if subtle.ConstantTimeCompare(want, p.sharedKeyDigest) != 1 {
		return AuthReasonSharedKey, "shared_key mismatch"
	}
	if string(p.hostname) == a.hostname {
		return AuthReasonSameHostname, "same hostname between input and output: invalid configuration"
	}
	if len(a.users) > 0 {
		match := 0
		for _, u := range a.users {
			// Every user is tried, so that the time taken does not tell
			// which names exist.
			d := hexDigest(userSalt, p.username, u.password)
			match |= subtle.ConstantTimeCompare(u.name, p.username) & subtle.ConstantTimeCompare(d, p.passwordDigest)
		}
		if match != 1 {
			return AuthReasonUser, "username/password mismatch"
		}
	}
	return "", ""
}

// parsePing parses a complete msgpack value as
// ["PING", hostname, shared_key_salt, shared_key_digest, username, password_digest].
// Strings may be str or bin (Fluent Bit sends the raw salt as str).
func parsePing(b []byte) (*ping, error) {
	n, off, err := msgp.ReadArrayHeader(b, 0)
	if err != nil {
		return nil, fmt.Errorf("PING is not an array: %w", err)
	}
	if n != 6 {
		return nil, fmt.Errorf("PING has %d elements, want 6", n)
	}
	var f [6][]byte
	for i := range f {
		if f[i], off, err = msgp.ReadBytes(b, off); err != nil {
			return nil, fmt.Errorf("PING element %d: %w", i, err)
		}
	}
	if string(f[0]) != "PING" {
		return nil, errors.New("message is not a PING")
	}
	return &ping{hostname: f[1], sharedKeySalt: f[2], sharedKeyDigest: f[3], username: f[4], passwordDigest: f[5]}, nil
}

func appendHelo(b, nonce, userSalt []byte) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendStr(b, "HELO")
	b = msgp.AppendMapHeader(b, 3)
	b = msgp.AppendBin(msgp.AppendStr(b, "nonce"), nonce)
	b = msgp.AppendStr(b, "auth")
	if userSalt != nil {
		b = msgp.AppendBin(b, userSalt)
	} else {
		b = msgp.AppendStr(b, "")
	}
	b = msgp.AppendStr(b, "keepalive")
	return append(b, 0xc3) // true
}

// appendPong encodes a PONG. A failed one carries only the reason, as
// Fluentd and Fluent Bit send it.
func appendPong(b []byte, ok bool, reason, hostname string, digest []byte) []byte {
	b = msgp.AppendArrayHeader(b, 5)
	b = msgp.AppendStr(b, "PONG")
	if ok {
		b = append(b, 0xc3)
	} else {
		b = append(b, 0xc2)
	}
	b = msgp.AppendStr(b, reason)
	b = msgp.AppendStr(b, hostname)
	return msgp.AppendStr(b, string(digest))
}

// authError is a failed handshake.
type authError struct {
	reason string
	text   string
	// pong, when set, is the reason a failed PONG gives the client; it is
	// written once the failure is counted.
	pong string
}

func (e *authError) Error() string { return e.text }

// errClosedEarly means the client closed the connection before sending
// anything: a port probe, not counted as a failure.
var errClosedEarly = errors.New("closed before the handshake")

// open runs what precedes the Forward stream on a new connection: the TLS
// handshake when TLS is on, then the Forward handshake when a shared key is
// set, both within handshake_timeout. It returns the bytes the client sent
// after its PING (the start of its stream) and whether to serve the
// connection. Failures are counted and logged here.
func (c *conn) open() ([]byte, bool) {
	s := c.s
	tc, isTLS := c.nc.(*tls.Conn)
	if !isTLS && s.auth == nil {
		return nil, true
	}
	if !c.setDeadline(time.Now().Add(s.cfg.Security.HandshakeTimeout)) {
		return nil, false
	}
	if isTLS {
		if err := tc.HandshakeContext(s.hard); err != nil {
			c.handshakeFailed(err, AuthReasonTLS)
			return nil, false
		}
	}
	var rest []byte
	if s.auth != nil {
		var err error
		if rest, err = c.authenticate(); err != nil {
			c.handshakeFailed(err, "")
			if ae := (*authError)(nil); errors.As(err, &ae) && ae.pong != "" {
				c.writePong(false, ae.pong, nil)
			}
			return nil, false
		}
	}
	return rest, c.setDeadline(time.Time{})
}

// setDeadline sets the read and write deadlines; it reports false when
// the server has begun stopping this connection (whose read deadline
// stopReading set and which must not be extended).
func (c *conn) setDeadline(t time.Time) bool {
	_ = c.nc.SetDeadline(t)
	return !c.stopped.Load()
}

// handshakeFailed counts and logs a failed handshake. other is the reason
// given to errors that are not an authError, a timeout or an early close;
// when it is empty such errors (a reset, a failed write) are only logged
// at debug level.
func (c *conn) handshakeFailed(err error, other string) {
	s := c.s
	if c.stopped.Load() || s.hard.Err() != nil {
		return // shutting down, not the client's fault
	}
	var ae *authError
	reason := other
	switch {
	case errors.As(err, &ae):
		reason = ae.reason
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason = AuthReasonTimeout
	case errors.Is(err, errClosedEarly), errors.Is(err, io.EOF):
		c.log.Debug("connection closed before the handshake")
		return
	case other == "":
		c.log.Debug("connection ended during the handshake", "err", err)
		return
	}
	s.m.authFailures.WithLabelValues(reason).Inc()
	// The error texts are built here and by crypto/tls: none holds a key,
	// a password or a digest.
	c.log.Warn("closing connection: handshake failed", "reason", reason, "err", err.Error())
}

// authenticate sends HELO, reads and checks the PING and answers PONG when
// the client authenticates. It returns the bytes read after the PING. A
// refusal is an *authError whose pong the caller writes once the failure
// is counted, so that a client told "no" finds the failure counted.
func (c *conn) authenticate() ([]byte, error) {
	a := c.s.auth
	nonce := make([]byte, 16)
	rand.Read(nonce)
	var userSalt []byte
	if len(a.users) > 0 {
		userSalt = make([]byte, 16)
		rand.Read(userSalt)
	}
	if _, err := c.nc.Write(appendHelo(nil, nonce, userSalt)); err != nil {
		return nil, err
	}
	buf, n, err := c.readPing()
	if err != nil {
		var ae *authError
		if errors.As(err, &ae) {
			ae.pong = "invalid ping message"
		}
		return nil, err
	}
	p, err := parsePing(buf[:n])
	if err != nil {
		return nil, &authError{reason: AuthReasonMalformed, text: err.Error(), pong: "invalid ping message"}
	}
	if reason, text := a.check(p, nonce, userSalt); reason != "" {
		return nil, &authError{reason: reason, text: text, pong: text}
	}
	if err := c.writePong(true, "", hexDigest(p.sharedKeySalt, []byte(a.hostname), nonce, a.sharedKey)); err != nil {
		return nil, err
	}
	return buf[n:], nil
}

// readPing reads until buf holds one whole msgpack value, of at most
// maxPingBytes, and returns its length n.
func (c *conn) readPing() (buf []byte, n int, err error) {
	tmp := make([]byte, 4<<10)
	for {
		if len(buf) > 0 {
			n, err := msgp.Skip(buf, 0)
			switch {
			case err == nil:
				return buf, n, nil
			case !errors.Is(err, msgp.ErrShort):
				return nil, 0, &authError{reason: AuthReasonMalformed, text: "PING is not msgpack: " + err.Error()}
			case len(buf) > maxPingBytes:
				return nil, 0, &authError{reason: AuthReasonMalformed, text: fmt.Sprintf("PING is above %d bytes", maxPingBytes)}
			}
		}
		m, err := c.nc.Read(tmp)
		buf = append(buf, tmp[:m]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(buf) == 0 {
					return nil, 0, errClosedEarly
				}
				return nil, 0, &authError{reason: AuthReasonMalformed, text: "connection closed inside the PING"}
			}
			return nil, 0, err
		}
	}
}

func (c *conn) writePong(ok bool, reason string, digest []byte) error {
	hostname := ""
	if ok {
		hostname = c.s.auth.hostname
	}
	_, err := c.nc.Write(appendPong(nil, ok, reason, hostname, digest))
	return err
}
