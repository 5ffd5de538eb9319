package httpin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/tlsconfig"
	"github.com/sluicelog/sluice/internal/units"
)

// Publisher stores chunks durably; the queue implements it.
type Publisher interface {
	// Publish starts storing c and returns at once (or blocks briefly when the
	// publisher is saturated). The chunk must not change until the returned
	// Pending reports.
	Publish(c *chunk.Chunk) (chunk.Pending, error)
}

// Config configures HTTP ingest.
type Config struct {
	// Listen is the address of the separate ingest port (Fluentd in_http's
	// 9880 by default); "off" disables it (the API port still serves
	// /v1/ingest).
	Listen string `yaml:"listen"`
	// TLS serves the separate port over HTTPS.
	TLS tlsconfig.Config `yaml:"tls"`
	// MaxBodyBytes caps a request body as sent (413 above it).
	MaxBodyBytes units.ByteSize `yaml:"max_body_bytes"`
	// MaxDecompressedBytes caps a gzip, deflate or zstd body once inflated
	// (413 above it).
	MaxDecompressedBytes units.ByteSize `yaml:"max_decompressed_bytes"`
	// MaxRecordBytes caps one record in msgpack (413 above it); it must stay
	// below the queue's message size.
	MaxRecordBytes units.ByteSize `yaml:"max_record_bytes"`
	// MaxRecords caps the records of one request (413 above it).
	MaxRecords int `yaml:"max_records"`
	// MaxConcurrentRequests bounds the requests read, decoded and waiting
	// for storage at once; others wait before their body is read.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// HeaderTag names a request header whose value, when present, is the tag
	// (Fluent Bit's header_tag); otherwise the tag is the URL path.
	HeaderTag string `yaml:"header_tag"`
	// TimeKeys are the record keys that may hold the record's time; the key
	// used is removed from the record. Default: [date, time] (Fluent Bit's
	// json_date_key, Fluentd's time key); [] disables.
	TimeKeys []string `yaml:"time_keys"`
	// StoreTimeout bounds the wait for JetStream to store a request's
	// records (503 after it).
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// ReadTimeout bounds reading a whole request on the separate port.
	ReadTimeout time.Duration `yaml:"read_timeout"`
}

// ListenDisabled as Listen turns the separate port off ("" cannot: it
// means the default).
const ListenDisabled = "off"

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = ":9880"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.MaxDecompressedBytes == 0 {
		c.MaxDecompressedBytes = 64 << 20
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.MaxConcurrentRequests == 0 {
		c.MaxConcurrentRequests = 64
	}
	if c.TimeKeys == nil {
		c.TimeKeys = append([]string(nil), DefaultTimeKeys...)
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 30 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = time.Minute
	}
}

// Validate checks the configuration; error texts start with the field name.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, msg string) { errs = append(errs, fmt.Errorf("%s: %s", field, msg)) }
	if c.Listen != ListenDisabled {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			add("listen", fmt.Sprintf("%q is not host:port (or %q to disable)", c.Listen, ListenDisabled))
		}
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("tls.%w", err))
	}
	errs = append(errs, ValidateSizes(c.MaxBodyBytes, c.MaxDecompressedBytes, c.MaxRecordBytes)...)
	if c.MaxRecords < 1 {
		add("max_records", "must be positive")
	}
	if c.MaxConcurrentRequests < 1 {
		add("max_concurrent_requests", "must be positive")
	}
	if strings.ContainsAny(c.HeaderTag, " :\t\r\n") {
		add("header_tag", fmt.Sprintf("%q is not a header name", c.HeaderTag))
	}
	for i, k := range c.TimeKeys {
		if k == "" {
			add(fmt.Sprintf("time_keys[%d]", i), "must not be empty")
		}
	}
	if c.StoreTimeout <= 0 {
		add("store_timeout", "must be positive")
	}
	if c.ReadTimeout <= 0 {
		add("read_timeout", "must be positive")
	}
	return errors.Join(errs...)
}

// Reasons a request is refused before decoding; metric label values next to
// the decoder's.
const (
	ReasonTag         = "bad_tag"
	ReasonContentType = "bad_content_type" // 415
	ReasonEncoding    = "bad_encoding"     // unsupported Content-Encoding (415)
	ReasonCompression = "bad_compression"  // corrupt compressed body
	ReasonTooLarge    = "too_large"        // body above max_body_bytes
	ReasonDecompress  = "decompress_limit" // above max_decompressed_bytes
	ReasonForm        = "bad_form"         // form without json=/ndjson=/msgpack=
	ReasonQuery       = "bad_query"        // bad ?time= or ?format=
	ReasonRead        = "read_failed"      // the body could not be read
)

// MaxTagBytes caps a tag, as the Forward listener does.
const MaxTagBytes = 1024

// Metrics are an ingest listener's counters, labelled with the listener.
// Their names and help are shared with the Forward listener's, so that all
// register in one registry and sum across listeners.
type Metrics struct {
	Records  prometheus.Counter
	Bytes    prometheus.Counter
	Rejected *prometheus.CounterVec // by reason
	Requests *prometheus.CounterVec // by code
}

// NewMetrics registers the counters of listener on r.
func NewMetrics(listener string, r prometheus.Registerer) *Metrics {
	l := prometheus.Labels{"listener": listener}
	m := &Metrics{
		Records: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_records_total",
			Help: "Records stored durably (and acknowledged when asked).", ConstLabels: l}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_bytes_total",
			Help: "Bytes of records stored durably, after decompression.", ConstLabels: l}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_rejected_total",
			Help: "Connections closed (Forward) or requests refused (HTTP, OTLP) for bad input, by reason.", ConstLabels: l}, []string{"reason"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_http_requests_total",
			Help: "HTTP ingest requests answered, by status code.", ConstLabels: l}, []string{"code"}),
	}
	r.MustRegister(m.Records, m.Bytes, m.Rejected, m.Requests)
	return m
}

// Handler serves HTTP ingest: POST /<tag> with a body of records. It is
// mounted on its own port by Server and under /v1/ingest on the API port
// (chi Mount, or http.StripPrefix). It is safe for concurrent use.
//
// Answers: 200 with an empty body once every record is stored in JetStream
// (as Fluentd's in_http; Fluent Bit takes any 2xx); 400 {"error": ...} for a
// bad body, tag or query (nothing stored); 405 for other methods than POST;
// 413 above a size limit; 415 for an unknown Content-Type or
// Content-Encoding; 429 with Retry-After: 1 when the stream is full; 503
// with Retry-After: 5 when JetStream cannot store.
type Handler struct {
	cfg  Config
	pub  Publisher
	log  *slog.Logger
	now  func() time.Time
	m    *Metrics
	sem  *semaphore.Weighted
	body *Body // also pools the entries' buffers
}

// NewHandler returns the ingest handler; cfg must have its defaults set and
// be valid. It registers its metrics on set.Registerer; use one Handler for
// both ports.
func NewHandler(cfg Config, pub Publisher, set component.Settings) *Handler {
	set = set.Defaults()
	return &Handler{
		cfg:  cfg,
		pub:  pub,
		log:  set.Logger.With("listener", "http"),
		now:  set.Now,
		m:    NewMetrics("http", set.Registerer),
		sem:  semaphore.NewWeighted(int64(cfg.MaxConcurrentRequests)),
		body: NewBody(cfg.MaxBodyBytes, cfg.MaxDecompressedBytes),
	}
}

// Close releases the zstd decoder; the handler must not serve afterwards.
func (h *Handler) Close() { h.body.Close() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e := h.serve(w, r); e != nil {
		h.fail(w, e)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	h.m.Requests.WithLabelValues("200").Inc()
}

func (h *Handler) fail(w http.ResponseWriter, e *Status) {
	if e.Reason != "" {
		h.m.Rejected.WithLabelValues(e.Reason).Inc()
	}
	h.m.Requests.WithLabelValues(strconv.Itoa(e.Code)).Inc()
	if e.Code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	body, _ := json.Marshal(map[string]string{"error": e.Msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Code)
	_, _ = w.Write(append(body, '\n'))
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) *Status {
	if r.Method != http.MethodPost {
		return &Status{Code: http.StatusMethodNotAllowed, Msg: "use POST"}
	}
	tag, err := h.tag(r)
	if err != nil {
		return bad(ReasonTag, "%v", err)
	}
	if r.ContentLength > int64(h.cfg.MaxBodyBytes) {
		return h.body.TooLarge()
	}
	q := r.URL.Query()
	f, form, e := h.format(r, q)
	if e != nil {
		return e
	}
	opts := Options{TimeKeys: h.cfg.TimeKeys, MaxRecords: h.cfg.MaxRecords, MaxRecordBytes: int(h.cfg.MaxRecordBytes)}
	if t := q.Get("time"); t != "" {
		if opts.Time, err = parseQueryTime(t); err != nil {
			return bad(ReasonQuery, "time query parameter: %v", err)
		}
	}
	if _, e := encoding(r); e != nil {
		return e
	}

	if err := h.sem.Acquire(r.Context(), 1); err != nil {
		return &Status{Code: http.StatusServiceUnavailable, RetryAfter: 1, Msg: "request ended while waiting: " + err.Error()}
	}
	defer h.sem.Release(1)

	body, release, e := h.body.Read(w, r)
	defer release()
	if e != nil {
		return e
	}
	if form {
		if body, f, e = formField(body, q); e != nil {
			return e
		}
	}

	opts.Now = h.now()
	entBuf := h.getBuf()
	entries, count, err := AppendDecode((*entBuf)[:0], body, f, opts)
	*entBuf = entries
	if err != nil {
		h.putBuf(entBuf)
		var de *Error
		if errors.As(err, &de) {
			code := http.StatusBadRequest
			if de.Reason == ReasonTooMany || de.Reason == ReasonRecordTooLarge {
				code = http.StatusRequestEntityTooLarge
			}
			return &Status{Code: code, Reason: de.Reason, Msg: de.Error()}
		}
		return bad(ReasonRecord, "%v", err)
	}
	if count == 0 {
		h.putBuf(entBuf)
		return nil
	}
	return h.store(r.Context(), &chunk.Chunk{Tag: tag, Count: count, Entries: entries}, entBuf)
}

// store publishes c and waits until it is stored. The entries buffer goes
// back to the pool only once the publisher is done with it.
func (h *Handler) store(ctx context.Context, c *chunk.Chunk, buf *[]byte) *Status {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StoreTimeout)
	defer cancel()
	p, err := h.pub.Publish(c)
	if err == nil {
		err = p.Wait(ctx)
	}
	if err == nil || !errors.Is(err, ctx.Err()) {
		h.putBuf(buf) // the publisher reported: it no longer needs the bytes
	}
	if err != nil {
		e := Backpressure(err)
		h.log.Warn("records not stored", "tag", c.Tag, "records", c.Count, "status", e.Code, "err", err)
		return e
	}
	h.m.Records.Add(float64(c.Count))
	h.m.Bytes.Add(float64(len(c.Entries)))
	return nil
}

// tag returns the tag: the header_tag header when set and present, else
// the path below the mount point with slashes turned into dots (Fluentd
// in_http: POST /a/b is tag a.b).
func (h *Handler) tag(r *http.Request) (string, error) {
	tag := ""
	if h.cfg.HeaderTag != "" {
		tag = r.Header.Get(h.cfg.HeaderTag)
	}
	if tag == "" {
		path := r.URL.Path
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePath != "" {
			path = rc.RoutePath // below a chi Mount
		}
		tag = strings.ReplaceAll(strings.Trim(path, "/"), "/", ".")
	}
	switch {
	case tag == "":
		return "", errors.New("tag is empty: POST to /<tag>")
	case len(tag) > MaxTagBytes:
		return "", fmt.Errorf("tag of %d bytes is above the limit of %d", len(tag), MaxTagBytes)
	case !utf8.ValidString(tag):
		return "", errors.New("tag is not valid UTF-8")
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("tag has control character 0x%02x", c)
		}
	}
	return tag, nil
}

// format picks the body format from ?format= or the Content-Type; form
// reports a form body whose json=/ndjson=/msgpack= field holds the records.
func (h *Handler) format(r *http.Request, q url.Values) (f Format, form bool, e *Status) {
	if name := q.Get("format"); name != "" {
		f, ok := ParseFormat(name)
		if !ok {
			return 0, false, bad(ReasonQuery, "format query parameter %q: want json, json_lines, json_stream or msgpack", name)
		}
		return f, false, nil
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return FormatJSON, false, nil // sniffing is not worth it: JSON is the common case
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, false, &Status{Code: http.StatusUnsupportedMediaType, Reason: ReasonContentType,
			Msg: fmt.Sprintf("Content-Type %q: %v", ct, err)}
	}
	switch mt {
	case "application/json", "text/json", "application/csp-report":
		return FormatJSON, false, nil
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
		"application/jsonlines", "application/json-lines":
		return FormatNDJSON, false, nil
	case "application/json-seq", "application/stream+json", "application/x-json-stream":
		return FormatJSONStream, false, nil
	case "application/msgpack", "application/x-msgpack", "application/vnd.msgpack":
		return FormatMsgpack, false, nil
	case "application/x-www-form-urlencoded":
		return 0, true, nil
	}
	return 0, false, &Status{Code: http.StatusUnsupportedMediaType, Reason: ReasonContentType,
		Msg: fmt.Sprintf("Content-Type %q is not supported: use application/json, application/x-ndjson, application/msgpack or application/x-www-form-urlencoded", mt)}
}

// parseQueryTime reads Fluentd's ?time=: epoch seconds, possibly
// fractional (0 means now, as in Fluentd), or an RFC 3339 time.
func parseQueryTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f == 0 {
			return time.Time{}, nil
		}
		sec, nsec, ok := floatTime(f)
		if !ok {
			return time.Time{}, fmt.Errorf("%q is out of range", s)
		}
		return time.Unix(int64(sec), int64(nsec)), nil
	}
	if sec, nsec, ok := stringTime(s); ok {
		return time.Unix(int64(sec), int64(nsec)), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither epoch seconds nor an RFC 3339 time", s)
}

// formField returns the records of a form body: Fluentd's msgpack=, json=
// or ndjson= field, from the body or else the query.
func formField(body []byte, q url.Values) ([]byte, Format, *Status) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, 0, bad(ReasonForm, "form body: %v", err)
	}
	for _, src := range []url.Values{vals, q} {
		if v, ok := src["msgpack"]; ok {
			return []byte(v[0]), FormatMsgpack, nil
		}
		if v, ok := src["json"]; ok {
			return []byte(v[0]), FormatJSON, nil
		}
		if v, ok := src["ndjson"]; ok {
			return []byte(v[0]), FormatNDJSON, nil
		}
	}
	return nil, 0, bad(ReasonForm, "form body needs a 'json', 'ndjson' or 'msgpack' field")
}

func (h *Handler) getBuf() *[]byte  { return h.body.get() }
func (h *Handler) putBuf(b *[]byte) { h.body.put(b) }
