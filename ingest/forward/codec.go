// Package forward implements the Fluentd Forward protocol v1: a pure codec
// (Decoder) and a TCP/TLS listener with acks and a UDP heartbeat (Server).
package forward

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// ErrShort means the buffer holds only the beginning of a value: read more.
var ErrShort = errors.New("forward: incomplete value")

// Reasons a value is rejected; they are metric label values.
const (
	ReasonMalformed     = chunk.ReasonMalformed // not msgpack at all
	ReasonType          = "bad_type"            // msgpack, but not a Forward event shape
	ReasonTag           = "bad_tag"
	ReasonOption        = "bad_option"
	ReasonEntry         = chunk.ReasonEntry
	ReasonTime          = chunk.ReasonTime
	ReasonRecord        = chunk.ReasonRecord
	ReasonTooDeep       = chunk.ReasonTooDeep
	ReasonTooLarge      = "too_large"        // above Limits.MaxChunkBytes
	ReasonDecompressMax = "decompress_limit" // above Limits.MaxDecompressedBytes
	ReasonCompression   = "bad_compression"  // unknown `compressed` value or corrupt data
	ReasonTruncated     = "truncated"        // the peer closed inside a value
)

// Error is a rejected value. The connection that sent it must be closed.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return "forward: " + e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func reject(reason string, format string, args ...any) *Error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Mode is the Forward protocol event mode.
type Mode uint8

// The event modes.
const (
	ModeMessage Mode = iota + 1
	ModeForward
	ModePackedForward
	ModeCompressedPackedForward
)

func (m Mode) String() string {
	switch m {
	case ModeMessage:
		return "message"
	case ModeForward:
		return "forward"
	case ModePackedForward:
		return "packed"
	case ModeCompressedPackedForward:
		return "compressed"
	}
	return "unknown"
}

// Limits bound what one value may cost.
type Limits struct {
	// MaxChunkBytes caps one Forward value as it arrives on the wire.
	MaxChunkBytes int
	// MaxDecompressedBytes caps a compressed payload once inflated.
	MaxDecompressedBytes int
	// MaxTagBytes caps the length of a tag.
	MaxTagBytes int
}

// DefaultLimits are the limits used when none are configured.
var DefaultLimits = Limits{MaxChunkBytes: 16 << 20, MaxDecompressedBytes: 64 << 20, MaxTagBytes: 1024}

// Event is one decoded Forward value.
type Event struct {
	// Keepalive is set for a msgpack nil; nothing else is.
	Keepalive bool
	Mode      Mode
	// Tag aliases the input.
	Tag []byte
	// Entries is the validated msgpack stream of [time, record] entries. It
	// aliases the input or the decoder's scratch space: it is valid until the
	// next call to Decode.
	Entries []byte
	// Count is the number of entries.
	Count int
	// Chunk is the `chunk` option (aliases the input), nil when absent.
	Chunk []byte
	// Signal is Fluent Bit's `fluent_signal` option: 0 logs, 1 metrics, 2 traces.
	Signal int64
	// Compression is "gzip" or "zstd" when the payload was compressed.
	Compression string
}

// Decoder decodes Forward values. It is pure (bytes in, events out) and
// reuses its scratch space; one Decoder serves one connection at a time.
type Decoder struct {
	limits Limits
	// declared is the length the headers of the value being decoded
	// announce, up to the end of its entries: 0 while unknown, and for
	// values whose entries are under 64 KiB.
	declared int
	scratch  []byte
	gz       *gzip.Reader
	zs       *zstd.Decoder
	br       bytes.Reader
}

// NewDecoder returns a decoder with the given limits; zero fields take their
// default.
func NewDecoder(l Limits) *Decoder {
	if l.MaxChunkBytes <= 0 {
		l.MaxChunkBytes = DefaultLimits.MaxChunkBytes
	}
	if l.MaxDecompressedBytes <= 0 {
		l.MaxDecompressedBytes = DefaultLimits.MaxDecompressedBytes
	}
	if l.MaxTagBytes <= 0 {
		l.MaxTagBytes = DefaultLimits.MaxTagBytes
	}
	return &Decoder{limits: l}
}

// Close releases the decompressors.
func (d *Decoder) Close() {
	if d.zs != nil {
		d.zs.Close()
		d.zs = nil
	}
}

// scratchKeep is the scratch capacity kept between values; a larger one is
// dropped so that one big chunk does not pin memory for the connection's life.
const scratchKeep = 4 << 20

// Decode decodes the value at the start of b and returns it with the number
// of bytes it used. It returns ErrShort when b holds only part of a value
// (and fewer than MaxChunkBytes bytes), and an *Error for a rejected value.
// After ErrShort, Declared tells how long the value is, when known.
func (d *Decoder) Decode(b []byte) (Event, int, error) {
	if cap(d.scratch) > scratchKeep {
		d.scratch = nil
	}
	d.declared = 0
	ev, n, err := d.decode(b)
	if err == nil && n > d.limits.MaxChunkBytes {
		return Event{}, 0, reject(ReasonTooLarge, "value of %d bytes is above the limit of %d", n, d.limits.MaxChunkBytes)
	}
	if errors.Is(err, msgp.ErrShort) || errors.Is(err, ErrShort) {
		if len(b) >= d.limits.MaxChunkBytes {
			return Event{}, 0, reject(ReasonTooLarge, "value is above the limit of %d bytes", d.limits.MaxChunkBytes)
		}
		return Event{}, 0, ErrShort
	}
	if err != nil {
		return Event{}, 0, asError(err)
	}
	d.declared = 0
	return ev, n, nil
}

// Declared returns the bytes the value that the last Decode found
// incomplete takes at least, as far as its headers announce them (up to the
// end of a PackedForward event's entries, without its option): 0 when they
// do not tell, or the entries are under 64 KiB. A reader can make room for
// the whole value at once instead of growing its buffer step by step.
func (d *Decoder) Declared() int { return d.declared }

// asError turns a lower-level error into an *Error with a reason.
func asError(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	var ce *chunk.Error
	if errors.As(err, &ce) {
		return &Error{Reason: ce.Reason, Err: ce.Err}
	}
	if errors.Is(err, msgp.ErrMalformed) {
		return &Error{Reason: ReasonMalformed, Err: err}
	}
	if errors.Is(err, msgp.ErrTooDeep) {
		return &Error{Reason: ReasonTooDeep, Err: err}
	}
	return &Error{Reason: ReasonType, Err: err}
}

func (d *Decoder) decode(b []byte) (ev Event, n int, err error) {
	if len(b) == 0 {
		return ev, 0, ErrShort
	}
	if b[0] == 0xc0 {
		return Event{Keepalive: true}, 1, nil
	}
	size, off, err := msgp.ReadArrayHeader(b, 0)
	if err != nil {
		return ev, 0, err
	}
	if size < 2 || size > 4 {
		return ev, 0, reject(ReasonType, "event array has %d elements, want 2 to 4", size)
	}
	if t, err := msgp.Peek(b, off); err != nil {
		return ev, 0, err
	} else if t != msgp.TypeStr {
		return ev, 0, reject(ReasonTag, "tag is a %s, want str", t)
	}
	tag, off, err := msgp.ReadStr(b, off)
	if err != nil {
		return ev, 0, err
	}
	if err := d.checkTag(tag); err != nil {
		return ev, 0, err
	}
	ev.Tag = tag

	second, err := msgp.Peek(b, off)
	if err != nil {
		return ev, 0, err
	}
	switch second {
	case msgp.TypeStr, msgp.TypeBin:
		ev.Mode = ModePackedForward
		if size > 3 {
			return ev, 0, reject(ReasonType, "PackedForward event has %d elements, want 2 or 3", size)
		}
		if err := d.checkDeclaredSize(b, off); err != nil {
			return ev, 0, err
		}
		ev.Entries, off, err = msgp.ReadBytes(b, off)
	case msgp.TypeArray:
		ev.Mode = ModeForward
		if size > 3 {
			return ev, 0, reject(ReasonType, "Forward event has %d elements, want 2 or 3", size)
		}
		var count, start int
		count, start, err = msgp.ReadArrayHeader(b, off)
		if err != nil {
			return ev, 0, err
		}
		off = start
		for i := 0; i < count; i++ {
			if _, off, err = chunk.ReadEntry(b, off); err != nil {
				return ev, 0, err
			}
		}
		ev.Entries, ev.Count = b[start:off], count
	case msgp.TypeExt, msgp.TypeInt, msgp.TypeUint, msgp.TypeFloat:
		ev.Mode = ModeMessage
		if size < 3 {
			return ev, 0, reject(ReasonType, "Message event has %d elements, want 3 or 4", size)
		}
		start := off
		if _, _, off, err = chunk.ReadTime(b, off); err != nil {
			return ev, 0, err
		}
		if t, err := msgp.Peek(b, off); err != nil {
			return ev, 0, err
		} else if t != msgp.TypeMap {
			return ev, 0, reject(ReasonRecord, "record is a %s, want map", t)
		}
		if off, err = msgp.Skip(b, off); err != nil {
			return ev, 0, err
		}
		// Re-pack as one [time, record] entry: an array header and the raw
		// span of time and record, which lie next to each other.
		d.scratch = append(append(d.scratch[:0], 0x92), b[start:off]...)
		ev.Entries, ev.Count = d.scratch, 1
		size-- // the record is read; what is left is the optional option map
	default:
		return ev, 0, reject(ReasonType, "second element is a %s: not a Forward event", second)
	}
	if err != nil {
		return ev, 0, err
	}
	if size == 3 {
		if off, err = d.readOptions(b, off, &ev); err != nil {
			return ev, 0, err
		}
	}
	if ev.Compression != "" {
		if ev.Mode != ModePackedForward {
			return ev, 0, reject(ReasonOption, "compressed=%q in %s mode", ev.Compression, ev.Mode)
		}
		ev.Mode = ModeCompressedPackedForward
		if ev.Entries, err = d.decompress(ev.Compression, ev.Entries); err != nil {
			return ev, 0, err
		}
	}
	if ev.Mode == ModePackedForward || ev.Mode == ModeCompressedPackedForward {
		if ev.Count, err = countEntries(ev.Entries); err != nil {
			return ev, 0, err
		}
	}
	return ev, off, nil
}

func (d *Decoder) checkTag(tag []byte) error {
	if len(tag) == 0 {
		return reject(ReasonTag, "tag is empty")
	}
	if len(tag) > d.limits.MaxTagBytes {
		return reject(ReasonTag, "tag of %d bytes is above the limit of %d", len(tag), d.limits.MaxTagBytes)
	}
	if !utf8.Valid(tag) {
		return reject(ReasonTag, "tag is not valid UTF-8")
	}
	for _, c := range tag {
		if c < 0x20 || c == 0x7f {
			return reject(ReasonTag, "tag has control character 0x%02x", c)
		}
	}
	return nil
}

// checkDeclaredSize rejects a str/bin payload whose header already announces
// more than the limit, without waiting for its bytes.
func (d *Decoder) checkDeclaredSize(b []byte, off int) error {
	var n int
	switch {
	case off+5 <= len(b) && (b[off] == 0xc6 || b[off] == 0xdb):
		n = int(b[off+1])<<24 | int(b[off+2])<<16 | int(b[off+3])<<8 | int(b[off+4])
	default:
		return nil // small headers cannot exceed any sane limit on their own
	}
	if n > d.limits.MaxChunkBytes {
		return reject(ReasonTooLarge, "payload of %d bytes is above the limit of %d", n, d.limits.MaxChunkBytes)
	}
	d.declared = off + 5 + n
	return nil
}

func (d *Decoder) readOptions(b []byte, off int, ev *Event) (int, error) {
	if t, err := msgp.Peek(b, off); err != nil {
		return off, err
	} else if t == msgp.TypeNil {
		return off + 1, nil
	}
	n, off, err := msgp.ReadMapHeader(b, off)
	if err != nil {
		var te *msgp.TypeError
		if errors.As(err, &te) {
			return off, reject(ReasonOption, "option is a %s, want map", te.Got)
		}
		return off, err
	}
	for i := 0; i < n; i++ {
		var key []byte
		if key, off, err = msgp.ReadBytes(b, off); err != nil {
			return off, optionErr("key", err)
		}
		switch string(key) {
		case "chunk":
			if ev.Chunk, off, err = msgp.ReadBytes(b, off); err != nil {
				return off, optionErr("chunk", err)
			}
		case "size":
			if _, off, err = msgp.ReadInt(b, off); err != nil {
				return off, optionErr("size", err)
			}
		case "compressed":
			var v []byte
			if v, off, err = msgp.ReadBytes(b, off); err != nil {
				return off, optionErr("compressed", err)
			}
			switch string(v) {
			case "", "text":
			case "gzip", "zstd":
				ev.Compression = string(v)
			default:
				return off, reject(ReasonCompression, "unknown compressed value %q", v)
			}
		case "fluent_signal":
			if ev.Signal, off, err = msgp.ReadInt(b, off); err != nil {
				return off, optionErr("fluent_signal", err)
			}
		default:
			if off, err = msgp.Skip(b, off); err != nil {
				return off, err
			}
		}
	}
	return off, nil
}

func optionErr(name string, err error) error {
	var te *msgp.TypeError
	if errors.As(err, &te) {
		return reject(ReasonOption, "option %s: %v", name, err)
	}
	return err
}

// countEntries validates a payload of entries and counts them.
func countEntries(p []byte) (int, error) {
	count := 0
	for off := 0; off < len(p); count++ {
		var err error
		if _, off, err = chunk.ReadEntry(p, off); err != nil {
			if errors.Is(err, msgp.ErrShort) {
				// The payload is complete, so a short entry is a broken one.
				return 0, reject(ReasonEntry, "entry %d is truncated", count)
			}
			return 0, err
		}
	}
	return count, nil
}

func (d *Decoder) decompress(kind string, p []byte) ([]byte, error) {
	limit := d.limits.MaxDecompressedBytes
	switch kind {
	case "gzip":
		d.br.Reset(p)
		var err error
		if d.gz == nil {
			d.gz, err = gzip.NewReader(&d.br)
		} else {
			err = d.gz.Reset(&d.br)
		}
		if err != nil {
			return nil, reject(ReasonCompression, "gzip: %v", err)
		}
		// Every member is read (multistream), never more than limit+1 bytes.
		out := d.scratch[:0]
		r := io.LimitReader(d.gz, int64(limit)+1)
		for {
			if len(out) == cap(out) {
				out = append(out, 0)[:len(out)]
			}
			m, err := r.Read(out[len(out):cap(out)])
			out = out[:len(out)+m]
			if len(out) > limit {
				return nil, reject(ReasonDecompressMax, "gzip payload inflates above %d bytes", limit)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, reject(ReasonCompression, "gzip: %v", err)
			}
		}
		d.scratch = out
		return out, nil
	case "zstd":
		if d.zs == nil {
			zs, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)))
			if err != nil {
				return nil, reject(ReasonCompression, "zstd: %v", err)
			}
			d.zs = zs
		}
		out, err := d.zs.DecodeAll(p, d.scratch[:0])
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) || len(out) > limit {
			return nil, reject(ReasonDecompressMax, "zstd payload inflates above %d bytes", limit)
		}
		if err != nil {
			return nil, reject(ReasonCompression, "zstd: %v", err)
		}
		d.scratch = out
		return out, nil
	}
	return nil, reject(ReasonCompression, "unknown compressed value %q", kind)
}
