// Package sinks holds the interface every destination implements and the
// runner that feeds a sink from its JetStream consumer.
package sinks

import (
	"context"

	"github.com/sluicelog/sluice/internal/chunk"
)

// Sink writes chunks of records to a destination.
type Sink interface {
	// Write writes every entry of every chunk. It blocks until the records
	// are handed over durably (for the file sink: written to the operating
	// system), so that the caller may acknowledge them when it returns nil.
	// On error no record of the batch counts as written; the caller retries
	// the whole batch. The sink must not keep the chunks after it returns.
	Write(ctx context.Context, batch []*chunk.Chunk) error
	// Close flushes and releases the sink. It is safe to call more than once.
	Close(ctx context.Context) error
}
