// Package sinks holds what every destination shares: the Sink interface, the
// per-record outcome errors, and the Runner that feeds a sink from its
// JetStream consumer with batching, concurrency, retries with backoff and
// jitter, throttling, dead letters and acknowledgements.
//
// A sink only writes a batch and says what became of each record; it never
// retries, sleeps or acknowledges by itself.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sluicelog/sluice/internal/chunk"
)

// Sink writes batches of records to a destination.
type Sink interface {
	// Write writes the records. It blocks until they are handed over
	// durably. It returns nil when every record is delivered; a
	// *PartialError naming the records that were not; or an error for the
	// whole batch, which is retried unless it is Permanent. The sink must not
	// keep the records (their bytes belong to the runner) after it returns.
	// Write may be called from several goroutines at once when the runner's
	// concurrency is above one.
	Write(ctx context.Context, records []Record) error
	// Close flushes and releases the sink. It is safe to call more than once.
	Close(ctx context.Context) error
}

// Gatherer is implemented by sinks that gather the records of several
// Writes into one unit stored later as a whole (an S3 object). A record a
// Write accepted is stored with its unit whether or not the Write still
// waits, so the runner gives such a sink no write timeout (a Write that gave
// up and was retried would store its records twice), and the sink retries a
// failed store of the unit in place. Its Writes end early only when the
// runner stops hard.
type Gatherer interface {
	Sink
	// Flush stops gathering: it stores what is gathered now and each later
	// Write's records at once. The runner calls it when it has handed out
	// its last batch (shutdown), so that no Write waits for more records.
	Flush()
}

// Limits are a sink's hard batch limits, from its destination's API; the
// runner never hands it a larger batch. Zero means no limit.
type Limits struct {
	MaxRecords int
	MaxBytes   int
}

// Limiter is implemented by sinks with batch limits.
type Limiter interface {
	Limits() Limits
}

// Record is one log record on its way to a sink. Its bytes alias the queue
// message they came from.
type Record struct {
	// Tag is the tag of the chunk the record came in.
	Tag string
	// Entry holds the event time, the metadata and the msgpack record.
	chunk.Entry
	// Seq is the stream sequence of the message and Index the position of
	// the record in it: together the record's stable id.
	Seq   uint64
	Index int

	owner *message // nil for records replayed from the dead-letter stream
}

// AppendID appends the record's stable id, "<stream sequence>-<index>". A
// redelivered or replayed record has the same id, so destinations that
// support ids (Elasticsearch _id) overwrite instead of duplicating.
func (r *Record) AppendID(dst []byte) []byte {
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, '-')
	return strconv.AppendInt(dst, int64(r.Index), 10)
}

// ID returns the record's stable id as a string.
func (r *Record) ID() string { return string(r.AppendID(nil)) }

// Size is the number of bytes the record counts for in batch limits.
func (r *Record) Size() int { return len(r.Record) + len(r.Meta) }

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a rejected document, a
// record too large for the destination): the records go to the dead-letter
// stream at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// ThrottledError asks the runner to wait before the next attempt.
type ThrottledError struct {
	Err   error
	Delay time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("throttled (retry after %s): %v", e.Delay, e.Err)
}
func (e *ThrottledError) Unwrap() error { return e.Err }

// Throttled reports that the destination asked to slow down: the records are
// retried after at least delay (and the runner's own backoff).
func Throttled(err error, delay time.Duration) error {
	return &ThrottledError{Err: err, Delay: delay}
}

// PartialError reports per-record failures of a batch. Failed maps an index
// into the records passed to Write to its error (retryable, Permanent or
// Throttled); records not in Failed were delivered.
type PartialError struct {
	Failed map[int]error
}

func (e *PartialError) Error() string {
	for _, err := range e.Failed {
		return fmt.Sprintf("%d records failed, e.g.: %v", len(e.Failed), err)
	}
	return "no record failed"
}
