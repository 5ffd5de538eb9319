// Package forwardtest builds Forward protocol values and speaks to a Forward
// listener as a forwarder would: for tests, benchmarks and the load generator.
package forwardtest

import (
	"bytes"
	"compress/gzip"
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
