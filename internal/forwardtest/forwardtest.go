// Package forwardtest builds Forward protocol values and speaks to a Forward
// listener as a forwarder would: for tests, benchmarks and the load generator.
//
// Times in tests: no test may depend on the date it runs. A fixed date is
// right for pure code and for in-process fakes that take a pinned clock
// (cwfake.Server.Now, component.Settings.Now), so that names and age rules
// come out the same on any day. Records sent to a real server with a clock of
// its own (VictoriaLogs, Elasticsearch, anything with a retention window or a
// "too old / too new" rule) carry times relative to time.Now instead, and the
// test computes what it expects from those times.
package forwardtest

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/msgp"
)

// Entry encodes one [EventTime, record] entry.
func Entry(t time.Time, record map[string]any) []byte {
	b := msgp.AppendArrayHeader(nil, 2)
	b = msgp.AppendEventTime(b, uint32(t.Unix()), uint32(t.Nanosecond()))
	rec, err := msgpack.Marshal(record)
	if err != nil {
		panic(err) // records in tests are plain maps
	}
	return append(b, rec...)
}

// Options are the Forward option map; empty fields are left out.
type Options struct {
	Chunk      string
	Size       int
	Compressed string
}

func (o Options) append(b []byte) []byte {
	n := 0
	if o.Chunk != "" {
		n++
	}
	if o.Size > 0 {
		n++
	}
	if o.Compressed != "" {
		n++
	}
	b = msgp.AppendMapHeader(b, n)
	if o.Chunk != "" {
		b = msgp.AppendStr(msgp.AppendStr(b, "chunk"), o.Chunk)
	}
	if o.Size > 0 {
		b = msgp.AppendStr(b, "size")
		b = append(b, 0xce, byte(o.Size>>24), byte(o.Size>>16), byte(o.Size>>8), byte(o.Size))
	}
	if o.Compressed != "" {
		b = msgp.AppendStr(msgp.AppendStr(b, "compressed"), o.Compressed)
	}
	return b
}

// Packed encodes a PackedForward value with the payload as bin (as Fluent
// Bit sends it).
func Packed(tag string, payload []byte, o Options) []byte {
	b := msgp.AppendArrayHeader(nil, 3)
	b = msgp.AppendStr(b, tag)
	b = msgp.AppendBin(b, payload)
	return o.append(b)
}

// Gzipped encodes a CompressedPackedForward value whose payload is one gzip
// member per part (Fluentd writes one per buffered write).
func Gzipped(tag string, parts [][]byte, o Options) []byte {
	var z bytes.Buffer
	for _, p := range parts {
		w := gzip.NewWriter(&z)
		_, _ = w.Write(p)
		_ = w.Close()
	}
	o.Compressed = "gzip"
	return Packed(tag, z.Bytes(), o)
}

// Message encodes a Message mode value [tag, time, record(, option)].
func Message(tag string, t time.Time, record map[string]any, o *Options) []byte {
	n := 3
	if o != nil {
		n = 4
	}
	b := msgp.AppendArrayHeader(nil, n)
	b = msgp.AppendStr(b, tag)
	b = msgp.AppendEventTime(b, uint32(t.Unix()), uint32(t.Nanosecond()))
	rec, err := msgpack.Marshal(record)
	if err != nil {
		panic(err)
	}
	b = append(b, rec...)
	if o != nil {
		b = o.append(b)
	}
	return b
}

// Conn is a client connection to a Forward listener.
type Conn struct {
	net.Conn
	buf []byte
}

// Dial connects to addr.
func Dial(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}

// DialTLS connects to addr over TLS and completes the TLS handshake.
func DialTLS(addr string, cfg *tls.Config) (*Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}

// ReadValue reads one whole msgpack value (without interpreting it).
func (c *Conn) ReadValue(timeout time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	tmp := make([]byte, 512)
	for {
		if len(c.buf) > 0 {
			n, err := msgp.Skip(c.buf, 0)
			if err == nil {
				v := append([]byte(nil), c.buf[:n]...)
				c.buf = c.buf[n:]
				return v, nil
			}
			if !errors.Is(err, msgp.ErrShort) {
				return nil, fmt.Errorf("forwardtest: bad reply: %w", err)
			}
		}
		n, err := c.Read(tmp)
		c.buf = append(c.buf, tmp[:n]...)
		if err != nil {
			return nil, err
		}
	}
}

// Helo is the server's greeting of the shared-key handshake.
type Helo struct {
	Nonce     []byte
	Auth      []byte // the user salt; empty when no user authentication is asked
	Keepalive bool
}

// ReadHelo reads ["HELO", {"nonce": ..., "auth": ..., "keepalive": ...}].
func (c *Conn) ReadHelo(timeout time.Duration) (Helo, error) {
	var h Helo
	v, err := c.ReadValue(timeout)
	if err != nil {
		return h, err
	}
	bad := func(what string, err error) (Helo, error) {
		return Helo{}, fmt.Errorf("forwardtest: bad HELO: %s: %v", what, err)
	}
	n, off, err := msgp.ReadArrayHeader(v, 0)
	if err != nil || n != 2 {
		return bad("not an array of 2", err)
	}
	var kind []byte
	if kind, off, err = msgp.ReadStr(v, off); err != nil || string(kind) != "HELO" {
		return bad("first element", err)
	}
	pairs, off, err := msgp.ReadMapHeader(v, off)
	if err != nil {
		return bad("options", err)
	}
	for i := 0; i < pairs; i++ {
		var k []byte
		if k, off, err = msgp.ReadStr(v, off); err != nil {
			return bad("option key", err)
		}
		switch string(k) {
		case "nonce":
			h.Nonce, off, err = msgp.ReadBytes(v, off)
		case "auth":
			h.Auth, off, err = msgp.ReadBytes(v, off)
		case "keepalive":
			h.Keepalive, off, err = msgp.ReadBool(v, off)
		default:
			off, err = msgp.Skip(v, off)
		}
		if err != nil {
			return bad(string(k), err)
		}
	}
	if len(h.Nonce) == 0 {
		return bad("nonce", errors.New("missing"))
	}
	return h, nil
}

// Auth is what a forwarder authenticates with in the shared-key handshake.
type Auth struct {
	Hostname  string
	SharedKey string
	// Username and Password are sent when the server asks for them (its
	// HELO carries a user salt).
	Username string
	Password string
}

func hexDigest(parts ...[]byte) []byte {
	h := sha512.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.AppendEncode(nil, h.Sum(nil))
}

// Handshake performs the client side of the Forward v1 handshake as
// Fluentd's and Fluent Bit's out_forward do: it reads HELO, sends PING and
// reads PONG (see ReadPong).
func (c *Conn) Handshake(a Auth, timeout time.Duration) (ok bool, reason string, err error) {
	h, err := c.ReadHelo(timeout)
	if err != nil {
		return false, "", err
	}
	salt := NewSalt()
	if _, err := c.Write(Ping(h, a, salt)); err != nil {
		return false, "", err
	}
	return c.ReadPong(h, a, salt, timeout)
}

// NewSalt returns a shared key salt: 16 random bytes.
func NewSalt() []byte {
	salt := make([]byte, 16)
	rand.Read(salt)
	return salt
}

// Ping encodes the PING answering h:
// ["PING", hostname, salt, hex(sha512(salt+hostname+nonce+shared_key)),
// username, hex(sha512(auth_salt+username+password))], the user fields
// empty when h asks for no user authentication. The salt goes as a str of
// raw bytes, as Fluent Bit sends it.
func Ping(h Helo, a Auth, salt []byte) []byte {
	user, passDigest := "", ""
	if len(h.Auth) > 0 {
		user = a.Username
		passDigest = string(hexDigest(h.Auth, []byte(a.Username), []byte(a.Password)))
	}
	b := msgp.AppendArrayHeader(nil, 6)
	b = msgp.AppendStr(b, "PING")
	b = msgp.AppendStr(b, a.Hostname)
	b = msgp.AppendStr(b, string(salt))
	b = msgp.AppendStr(b, string(hexDigest(salt, []byte(a.Hostname), h.Nonce, []byte(a.SharedKey))))
	b = msgp.AppendStr(b, user)
	return msgp.AppendStr(b, passDigest)
}

// ReadPong reads the PONG answering a PING sent with salt. A refused PONG
// returns false and the server's reason with a nil error. An accepted PONG
// is verified like a real client does: the server's digest must prove it
// knows the shared key and its hostname must differ from ours; otherwise
// an error is returned.
func (c *Conn) ReadPong(h Helo, a Auth, salt []byte, timeout time.Duration) (ok bool, reason string, err error) {
	v, err := c.ReadValue(timeout)
	if err != nil {
		return false, "", err
	}
	n, off, err := msgp.ReadArrayHeader(v, 0)
	if err != nil || n != 5 {
		return false, "", fmt.Errorf("forwardtest: bad PONG: not an array of 5 (%v)", err)
	}
	var f [4][]byte
	if f[0], off, err = msgp.ReadStr(v, off); err != nil || string(f[0]) != "PONG" {
		return false, "", fmt.Errorf("forwardtest: bad PONG: first element (%v)", err)
	}
	if ok, off, err = msgp.ReadBool(v, off); err != nil {
		return false, "", fmt.Errorf("forwardtest: bad PONG: result: %w", err)
	}
	for i := 1; i < 4; i++ {
		if f[i], off, err = msgp.ReadBytes(v, off); err != nil {
			return false, "", fmt.Errorf("forwardtest: bad PONG: element %d: %w", i+1, err)
		}
	}
	reason, serverHost, serverDigest := string(f[1]), f[2], f[3]
	if !ok {
		return false, reason, nil
	}
	if string(serverHost) == a.Hostname {
		return true, reason, errors.New("forwardtest: the server has our hostname")
	}
	want := hexDigest(salt, serverHost, h.Nonce, []byte(a.SharedKey))
	if subtle.ConstantTimeCompare(want, serverDigest) != 1 {
		return true, reason, errors.New("forwardtest: the server's shared key digest does not match")
	}
	return true, reason, nil
}

// ReadAck reads one {"ack": id} reply and returns the id.
func (c *Conn) ReadAck(timeout time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	tmp := make([]byte, 512)
	for {
		if len(c.buf) > 0 {
			n, next, err := msgp.ReadMapHeader(c.buf, 0)
			if err == nil && n == 1 {
				var k, v []byte
				if k, next, err = msgp.ReadStr(c.buf, next); err == nil {
					if v, next, err = msgp.ReadStr(c.buf, next); err == nil {
						if string(k) != "ack" {
							return "", fmt.Errorf("forwardtest: reply key %q, want ack", k)
						}
						id := string(v)
						c.buf = c.buf[next:]
						return id, nil
					}
				}
			}
			if err != nil && !errors.Is(err, msgp.ErrShort) {
				return "", fmt.Errorf("forwardtest: bad reply: %w", err)
			}
		}
		n, err := c.Read(tmp)
		c.buf = append(c.buf, tmp[:n]...)
		if err != nil {
			return "", err
		}
	}
}

// SendAck writes value and waits for the ack of id.
func (c *Conn) SendAck(value []byte, id string, timeout time.Duration) error {
	if _, err := c.Write(value); err != nil {
		return err
	}
	got, err := c.ReadAck(timeout)
	if err != nil {
		return err
	}
	if got != id {
		return fmt.Errorf("forwardtest: ack %q, want %q", got, id)
	}
	return nil
}
