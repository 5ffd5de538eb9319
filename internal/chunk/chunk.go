// Package chunk holds the one type every stage of sluice speaks: a chunk of
// log entries that share a tag, stored as the msgpack bytes a forwarder sent.
//
// Entries is a msgpack stream of entries, each `[time, record]` or Fluent Bit's
// `[[time, metadata], record]`, exactly the PackedForward payload of the
// Forward protocol. Ingest validates it once; later stages walk it with
// ReadEntry and never turn it into Go maps.
package chunk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/sluicelog/sluice/internal/msgp"
)

// Encoding is the value of the encoding header for Entries as described above.
const Encoding = "forward-entries"

// Chunk is a batch of entries with one tag.
type Chunk struct {
	// Tag is the forwarder's tag, e.g. kube.var.log.containers.app_ns_c-id.log.
	Tag string
	// ID is the forwarder's chunk id (the `chunk` option), "" when it sent none.
	ID string
	// Count is the number of entries in Entries.
	Count int
	// Entries is the msgpack stream of entries.
	Entries []byte
	// Nonce stands in for ID in the message ids of a chunk without one. The
	// queue sets it at the chunk's first publish and reuses it when the same
	// chunk is published again, so that JetStream stores the chunk once even
	// if a publish that seemed to fail had stored it.
	Nonce string
	// Eager asks the queue not to hold the chunk for others to join it in a
	// batch message: its sender waits for its ack before it sends more.
	Eager bool
}

// Entry is one decoded entry. Meta and Record alias the chunk's bytes.
type Entry struct {
	// Sec and Nsec are the event time.
	Sec  int64
	Nsec int32
	// Meta is the msgpack map of Fluent Bit's metadata form, nil otherwise.
	Meta []byte
	// Record is the msgpack map of the record.
	Record []byte
	// Raw is the whole entry as it was read.
	Raw []byte
}

// Reasons for a rejected entry; they are metric label values.
const (
	ReasonMalformed = "malformed"
	ReasonEntry     = "bad_entry"
	ReasonTime      = "bad_time"
	ReasonRecord    = "bad_record"
	ReasonTooDeep   = "too_deep"
)

// Error describes why bytes are not a valid entry.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func fail(reason string, err error) error {
	if errors.Is(err, msgp.ErrShort) {
		return msgp.ErrShort
	}
	if errors.Is(err, msgp.ErrMalformed) {
		reason = ReasonMalformed
	}
	if errors.Is(err, msgp.ErrTooDeep) {
		reason = ReasonTooDeep
	}
	return &Error{Reason: reason, Err: err}
}

// ReadEntry reads and validates the entry at off and returns it with the
// offset past it. The record must be a map; the time an EventTime, an integer
// or a finite float. It returns msgp.ErrShort when b ends inside the entry.
func ReadEntry(b []byte, off int) (Entry, int, error) {
	var e Entry
	n, next, err := msgp.ReadArrayHeader(b, off)
	if err != nil {
		return e, off, fail(ReasonEntry, err)
	}
	if n != 2 {
		return e, off, &Error{Reason: ReasonEntry, Err: fmt.Errorf("entry has %d elements, want 2", n)}
	}
	if t, _ := msgp.Peek(b, next); t == msgp.TypeArray {
		// [[time, metadata], record]
		n, next, err = msgp.ReadArrayHeader(b, next)
		if err != nil {
			return e, off, fail(ReasonTime, err)
		}
		if n != 2 {
			return e, off, &Error{Reason: ReasonTime, Err: fmt.Errorf("time with metadata has %d elements, want 2", n)}
		}
		if e.Sec, e.Nsec, next, err = ReadTime(b, next); err != nil {
			return e, off, err
		}
		start := next
		if _, next, err = msgp.ReadMapHeader(b, next); err != nil {
			return e, off, fail(ReasonTime, fmt.Errorf("metadata: %w", err))
		}
		if next, err = msgp.Skip(b, start); err != nil {
			return e, off, fail(ReasonTime, err)
		}
		e.Meta = b[start:next]
	} else if e.Sec, e.Nsec, next, err = ReadTime(b, next); err != nil {
		return e, off, err
	}
	start := next
	if _, _, err = msgp.ReadMapHeader(b, next); err != nil {
		return e, off, fail(ReasonRecord, err)
	}
	if next, err = msgp.Skip(b, start); err != nil {
		return e, off, fail(ReasonRecord, err)
	}
	e.Record = b[start:next]
	e.Raw = b[off:next]
	return e, next, nil
}

// ReadTime reads an event time: EventTime (ext 0, 8 bytes), integer seconds or
// float seconds.
func ReadTime(b []byte, off int) (sec int64, nsec int32, next int, err error) {
	t, err := msgp.Peek(b, off)
	if err != nil {
		return 0, 0, off, fail(ReasonTime, err)
	}
	switch t {
	case msgp.TypeExt:
		typ, data, next, err := msgp.ReadExt(b, off)
		if err != nil {
			return 0, 0, off, fail(ReasonTime, err)
		}
		if typ != 0 || len(data) != 8 {
			return 0, 0, off, &Error{Reason: ReasonTime, Err: fmt.Errorf("ext type %d with %d bytes is not an EventTime", typ, len(data))}
		}
		ns := binary.BigEndian.Uint32(data[4:])
		if ns >= 1e9 {
			return 0, 0, off, &Error{Reason: ReasonTime, Err: fmt.Errorf("EventTime nanoseconds %d out of range", ns)}
		}
		return int64(binary.BigEndian.Uint32(data)), int32(ns), next, nil
	case msgp.TypeInt, msgp.TypeUint:
		v, next, err := msgp.ReadInt(b, off)
		if err != nil {
			return 0, 0, off, fail(ReasonTime, err)
		}
		return v, 0, next, nil
	case msgp.TypeFloat:
		f, next, err := msgp.ReadFloat(b, off)
		if err != nil {
			return 0, 0, off, fail(ReasonTime, err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<62 {
			return 0, 0, off, &Error{Reason: ReasonTime, Err: fmt.Errorf("time %v is not a usable float", f)}
		}
		s := math.Floor(f)
		ns := int32((f - s) * 1e9)
		if ns >= 1e9 {
			ns = 1e9 - 1
		}
		return int64(s), ns, next, nil
	}
	return 0, 0, off, &Error{Reason: ReasonTime, Err: &msgp.TypeError{Want: "EventTime, integer or float", Got: t}}
}

// Pending is a chunk on its way into durable storage.
type Pending interface {
	// Wait blocks until the chunk is stored (nil), storing failed, or ctx ends.
	Wait(ctx context.Context) error
}

// Copied is implemented by a Pending whose publisher copied the chunk's
// entries and pointed Entries at its copy: the bytes the caller passed are
// free for reuse at once, not only once the chunk is stored. The copy stays
// readable until the chunk is stored, and for good if storing fails (to
// publish the chunk again); once the chunk is stored, only len(Entries)
// is.
type Copied interface {
	Pending
	Copied()
}

// AppendEntryHead appends what comes before the record of an entry like e:
// the entry's array header and its time, with e's metadata when it has
// some ([[time, meta], record]). The caller appends a record after it.
func AppendEntryHead(dst []byte, e Entry) []byte {
	dst = msgp.AppendArrayHeader(dst, 2)
	if e.Meta == nil {
		return msgp.AppendEventTime(dst, uint32(e.Sec), uint32(e.Nsec))
	}
	dst = msgp.AppendArrayHeader(dst, 2)
	dst = msgp.AppendEventTime(dst, uint32(e.Sec), uint32(e.Nsec))
	return append(dst, e.Meta...)
}
