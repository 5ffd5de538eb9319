package httpin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicelog/sluice/internal/units"
)

// Status is an answer other than 200.
type Status struct {
	Code int
	// Reason labels sluice_ingest_rejected_total; "" is not counted.
	Reason string
	// RetryAfter is the Retry-After header in seconds, 0 for none.
	RetryAfter int
	Msg        string
}

func (s *Status) Error() string { return s.Msg }

func bad(reason, format string, args ...any) *Status {
	return &Status{Code: http.StatusBadRequest, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// ValidateSizes checks the size limits both ingest handlers share; error
// texts start with the field name.
func ValidateSizes(maxBody, maxInflated, maxRecord units.ByteSize) []error {
	var errs []error
	if maxBody < 1<<10 || maxBody > 1<<30 {
		errs = append(errs, errors.New("max_body_bytes: must be between 1KiB and 1GiB"))
	}
	if maxInflated < maxBody || maxInflated > 4<<30 {
		errs = append(errs, errors.New("max_decompressed_bytes: must be at least max_body_bytes and at most 4GiB"))
	}
	if maxRecord < 1<<10 || maxRecord > 64<<20 {
		errs = append(errs, errors.New("max_record_bytes: must be between 1KiB and 64MiB"))
	}
	return errs
}

// Body reads request bodies within two limits, inflating gzip, deflate and
// zstd, into pooled buffers. Both ingest handlers (this package's and
// OTLP's) read through one. It is safe for concurrent use.
type Body struct {
	maxBytes, maxInflated int
	zstd                  *zstd.Decoder
	bufs                  sync.Pool // *[]byte
}

// NewBody returns a reader that refuses bodies above maxBytes as sent or
// above maxInflated once decompressed (413).
func NewBody(maxBytes, maxInflated units.ByteSize) *Body {
	zs, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(uint64(maxInflated)))
	if err != nil {
		panic(err) // only for invalid options, which these are not
	}
	return &Body{maxBytes: int(maxBytes), maxInflated: int(maxInflated), zstd: zs}
}

// Close releases the zstd decoder; the reader must not be used afterwards.
func (b *Body) Close() { b.zstd.Close() }

// TooLarge is the answer to a body above the limit as sent.
func (b *Body) TooLarge() *Status {
	return &Status{Code: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge,
		Msg: fmt.Sprintf("body is above the limit of %d bytes", b.maxBytes)}
}

// Read returns r's body, decompressed as its Content-Encoding says. release
// gives the buffers back; call it (it is never nil) once done with body.
func (b *Body) Read(w http.ResponseWriter, r *http.Request) (body []byte, release func(), e *Status) {
	release = func() {}
	if r.ContentLength > int64(b.maxBytes) {
		return nil, release, b.TooLarge()
	}
	enc, e := encoding(r)
	if e != nil {
		return nil, release, e
	}
	raw := b.get()
	release = func() { b.put(raw) }
	if r.ContentLength > 0 && int64(cap(*raw)) < r.ContentLength {
		*raw = make([]byte, 0, r.ContentLength)
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, int64(b.maxBytes)), (*raw)[:0], math.MaxInt)
	*raw = body
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, release, b.TooLarge()
		}
		return nil, release, bad(ReasonRead, "reading the body: %v", err)
	}
	if enc == "" {
		return body, release, nil
	}
	inflated := b.get()
	release = func() { b.put(raw); b.put(inflated) }
	body, e = b.inflate(enc, body, (*inflated)[:0])
	*inflated = body
	return body, release, e
}

func encoding(r *http.Request) (string, *Status) {
	ce := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch ce {
	case "", "identity":
		return "", nil
	case "gzip", "x-gzip":
		return "gzip", nil
	case "zstd", "deflate":
		return ce, nil
	}
	return "", &Status{Code: http.StatusUnsupportedMediaType, Reason: ReasonEncoding,
		Msg: fmt.Sprintf("Content-Encoding %q is not supported: use gzip, zstd or deflate", ce)}
}

var errLimit = errors.New("limit exceeded")

// readAll reads r to its end into buf; more than limit bytes is errLimit.
func readAll(r io.Reader, buf []byte, limit int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf, errLimit
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// inflate decompresses body into buf, never beyond the inflated limit.
func (b *Body) inflate(enc string, body, buf []byte) ([]byte, *Status) {
	limit := b.maxInflated
	tooBig := &Status{Code: http.StatusRequestEntityTooLarge, Reason: ReasonDecompress,
		Msg: fmt.Sprintf("%s body inflates above the limit of %d bytes", enc, limit)}
	var (
		out []byte
		err error
	)
	switch enc {
	case "zstd":
		out, err = b.zstd.DecodeAll(body, buf)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) || len(out) > limit {
			return out, tooBig
		}
	case "gzip":
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			out, err = readAll(zr, buf, limit) // every member
		}
	case "deflate":
		var zr io.ReadCloser
		if zr, err = zlib.NewReader(bytes.NewReader(body)); err == nil {
			out, err = readAll(zr, buf, limit)
		}
	}
	if errors.Is(err, errLimit) {
		return out, tooBig
	}
	if err != nil {
		return out, bad(ReasonCompression, "%s body: %v", enc, err)
	}
	return out, nil
}

// Buffers above this size are not kept for reuse.
const maxPooledBuf = 4 << 20

func (b *Body) get() *[]byte {
	if p, ok := b.bufs.Get().(*[]byte); ok {
		return p
	}
	p := make([]byte, 0, 64<<10)
	return &p
}

func (b *Body) put(p *[]byte) {
	if cap(*p) > maxPooledBuf {
		return
	}
	*p = (*p)[:0]
	b.bufs.Put(p)
}

// errCodeStoreFailed is nats-server's JSStreamStoreFailedF: the stream is
// full ("maximum bytes exceeded", discard new) or the store cannot write.
const errCodeStoreFailed = 10077

// Backpressure maps a storage failure to 429 (the stream is full or the
// publisher saturated: retry soon) or 503 (JetStream unavailable, timed out
// or anything else: retry later). Forwarders keep the records either way.
func Backpressure(err error) *Status {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed,
		errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return &Status{Code: http.StatusTooManyRequests, RetryAfter: 1,
			Msg: "log stream is full, retry later: " + err.Error()}
	case errors.As(err, &apiErr) && apiErr.Code == http.StatusServiceUnavailable,
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, context.DeadlineExceeded):
		return &Status{Code: http.StatusServiceUnavailable, RetryAfter: 5,
			Msg: "JetStream is unavailable, retry later: " + err.Error()}
	}
	return &Status{Code: http.StatusServiceUnavailable, RetryAfter: 5,
		Msg: "records not stored, retry later: " + err.Error()}
}
