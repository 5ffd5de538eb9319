package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
)

// ErrNotFound is returned by an Operator for an unknown sink or dead letter.
var ErrNotFound = errors.New("not found")

// Operator is what the operator API controls; the app implements it.
type Operator interface {
	// Status describes the listeners, the stream and every sink.
	Status(ctx context.Context) (*Status, error)
	// Rewind makes a sink deliver again from a stream sequence, or from the
	// first message at or after a time when seq is 0.
	Rewind(ctx context.Context, sink string, seq uint64, at time.Time) (uint64, error)
	// DeadLetters lists up to limit dead letters of a sink from a
	// dead-letter sequence on.
	DeadLetters(ctx context.Context, sink string, from uint64, limit int) ([]DeadLetter, error)
	// DeadLetter returns one dead letter by its dead-letter sequence.
	DeadLetter(ctx context.Context, seq uint64) (*DeadLetter, error)
	// ReplayDeadLetters writes up to limit of a sink's dead letters to it
	// again.
	ReplayDeadLetters(ctx context.Context, sink string, limit int) (int, error)
}

// Status is the pipeline's state.
type Status struct {
	// Replica is this replica's id; Replicas lists every replica sharing
	// the JetStream that announced itself within the TTL, this one
	// included.
	Replica   string           `json:"replica"`
	Replicas  []ReplicaStatus  `json:"replicas"`
	Listeners []ListenerStatus `json:"listeners"`
	Stream    StreamStatus     `json:"stream"`
	Sinks     []SinkStatus     `json:"sinks"`
}

// ReplicaStatus is what a replica last announced.
type ReplicaStatus struct {
	ID                 string    `json:"id"`
	ForwardConnections int       `json:"forward_connections"`
	HTTPConnections    int       `json:"http_connections"`
	OTLPConnections    int       `json:"otlp_connections"` // OTLP/HTTP's
	RecordsPerSec      float64   `json:"records_per_sec"`  // ingested, over its last announce interval
	Draining           bool      `json:"draining"`
	Announced          time.Time `json:"announced"`
}

// ListenerStatus is one ingest listener.
type ListenerStatus struct {
	Name        string `json:"name"`
	Addr        string `json:"addr"`
	Connections int    `json:"connections,omitempty"`
}

// StreamStatus is the log stream.
type StreamStatus struct {
	Name      string `json:"name"`
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Retention string `json:"retention"`
	Connected bool   `json:"jetstream_connected"`
}

// SinkStatus is one sink and its consumer.
type SinkStatus struct {
	Name        string     `json:"name"`
	Type        string     `json:"type"`
	Lag         uint64     `json:"lag"`          // messages not yet delivered to the sink
	AckPending  int        `json:"ack_pending"`  // delivered, not yet acknowledged
	Redelivered int        `json:"redelivered"`  // delivered more than once, now pending
	Delivered   int64      `json:"delivered"`    // records, since this replica started
	Dead        int64      `json:"dead"`         // records, since this replica started
	Retried     int64      `json:"retried"`      // record attempts retried, since start
	DeadLetters uint64     `json:"dead_letters"` // in the dead-letter stream now
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// DeadLetter is one record a sink gave up on.
type DeadLetter struct {
	Seq      uint64          `json:"seq"` // in the dead-letter stream
	Sink     string          `json:"sink"`
	Tag      string          `json:"tag"`
	Error    string          `json:"error"`
	Attempts int             `json:"attempts"`
	Origin   string          `json:"origin"` // the record's id: log stream sequence and index
	Stored   time.Time       `json:"stored"`
	Time     string          `json:"time,omitempty"` // the event time, RFC 3339
	Record   json.RawMessage `json:"record,omitempty"`
}

func (s *Server) mountOperator(r chi.Router, op Operator) {
	r.Get("/v1/status", func(w http.ResponseWriter, req *http.Request) {
		st, err := op.Status(req.Context())
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	r.Post("/v1/sinks/{sink}/rewind", func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Seq  uint64    `json:"seq"`
			Time time.Time `json:"time"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be {\"seq\": N} or {\"time\": \"RFC 3339\"}: " + err.Error()})
			return
		}
		if (body.Seq == 0) == body.Time.IsZero() {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "give exactly one of seq and time"})
			return
		}
		seq, err := op.Rewind(req.Context(), chi.URLParam(req, "sink"), body.Seq, body.Time)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]uint64{"reset_seq": seq})
	})
	r.Get("/v1/sinks/{sink}/dead-letters", func(w http.ResponseWriter, req *http.Request) {
		from, err1 := uintParam(req, "from", 0)
		limit, err2 := uintParam(req, "limit", 100)
		if err := errors.Join(err1, err2); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		dls, err := op.DeadLetters(req.Context(), chi.URLParam(req, "sink"), from, int(min(limit, 10000)))
		if err != nil {
			s.fail(w, err)
			return
		}
		if dls == nil {
			dls = []DeadLetter{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"dead_letters": dls})
	})
	r.Post("/v1/sinks/{sink}/dead-letters/replay", func(w http.ResponseWriter, req *http.Request) {
		limit, err := uintParam(req, "limit", 1000)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		n, err := op.ReplayDeadLetters(req.Context(), chi.URLParam(req, "sink"), int(min(limit, 1_000_000)))
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"replayed": n})
	})
	r.Get("/v1/dead-letters/{seq}", func(w http.ResponseWriter, req *http.Request) {
		seq, err := strconv.ParseUint(chi.URLParam(req, "seq"), 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "seq must be a dead-letter sequence number"})
			return
		}
		dl, err := op.DeadLetter(req.Context(), seq)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, dl)
	})
}

func uintParam(req *http.Request, name string, def uint64) (uint64, error) {
	v := req.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errors.New(name + " must be a non-negative integer")
	}
	return n, nil
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	s.log.Warn("operator request failed", "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
}
