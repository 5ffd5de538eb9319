// Package elasticsearch is a sink that bulk-writes records to Elasticsearch
// or OpenSearch through the official client, github.com/elastic/go-elasticsearch/v8.
//
// # Requests
//
// A batch from the runner becomes one or more _bulk requests, each at most
// max_request_bytes of NDJSON before compression (a single larger document
// goes alone) and gzip-compressed by default. A compressed request is
// held compressed: its NDJSON goes through the gzip stream 64 KiB at a
// time, and a request the cluster refuses as too large (413) is encoded
// again in halves. The runner bounds the documents per batch
// (batch.max_records), how long a batch waits to fill (batch.linger, the
// flush interval) and how many are written at once (concurrency, 4 by
// default for this sink).
//
// # Documents
//
// Each record becomes a JSON document with the event time first, under
// time_key (@timestamp), as RFC 3339 with nine fraction digits: the date
// type keeps milliseconds, date_nanos all nine. Dots in the keys of
// kubernetes.labels and kubernetes.annotations are replaced by "_" (see
// replace_dots), and remove_keys are left out.
//
// # Outcomes
//
// A document's _id is the record's stable id, <stream sequence>-<index in
// the chunk>, so a redelivered record overwrites itself (op_type index) or
// answers 409, counted as delivered (op_type create). In a 200 response with
// errors: true, each item is judged alone: 429 is retried after a pause,
// 5xx is retried, and any other 4xx (400 mapping conflicts, 404 missing
// index) goes to the dead-letter stream with Elasticsearch's reason. A
// failed request (connection error, timeout, 5xx, 401, 403) is retried
// whole; 429 pauses by Retry-After; 413 splits the request in two.
package elasticsearch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/awsconf"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/jsonl"
	"github.com/sluicelog/sluice/sinks"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("elasticsearch sink: closed")

// Sink writes records to an Elasticsearch or OpenSearch cluster.
type Sink struct {
	cfg    Config
	name   string
	client *elasticsearch.Client
	log    *slog.Logger

	index    indexNamer
	rw       *rewriter
	jopts    jsonl.Options
	op       []byte // `{"index":{"_index":"` or the create form
	withID   bool
	maxBytes int
	headers  http.Header

	bufs   sync.Pool // *buffers
	closed atomic.Bool

	templateMu   sync.Mutex
	templateDone atomic.Bool

	m metrics
}

// Option changes how a sink is built.
type Option func(*options)

type options struct {
	transport http.RoundTripper
}

// WithTransport sends the requests through rt instead of a new HTTP
// transport (tests, benchmarks); TLS settings are then rt's business.
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// New returns a sink named name. cfg must have its defaults set and be
// valid. The first write installs the index template when one is
// configured; New itself does not contact the cluster.
func New(ctx context.Context, cfg Config, name string, set component.Settings, opts ...Option) (*Sink, error) {
	set = set.Defaults()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	rt := o.transport
	if rt == nil {
		base, err := newTransport(cfg.TLS)
		if err != nil {
			return nil, err
		}
		rt = base
	}
	if cfg.AWS != nil {
		awsCfg, err := cfg.AWS.Config.Load(ctx)
		if err != nil {
			return nil, fmt.Errorf("aws: %w", err)
		}
		rt = &awsconf.Signer{Base: rt, Credentials: awsCfg.Credentials, Region: awsCfg.Region, Service: cfg.AWS.Service}
	}
	if cfg.OpenSearch {
		rt = productHeader{rt}
	}
	urls := make([]string, len(cfg.URLs))
	for i, u := range cfg.URLs {
		urls[i] = strings.TrimRight(u, "/")
	}
	client, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:    urls,
		Username:     cfg.Username,
		Password:     cfg.Password,
		APIKey:       cfg.APIKey,
		ServiceToken: cfg.BearerToken,
		Transport:    rt,
		// The runner retries, with backoff and per-record outcomes.
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	namer, err := newIndexNamer(cfg)
	if err != nil {
		return nil, err
	}
	s := &Sink{
		cfg: cfg, name: name, client: client,
		log:      set.Logger.With("sink", name),
		index:    namer,
		rw:       newRewriter(cfg),
		withID:   cfg.ID == IDRecord,
		maxBytes: int(cfg.MaxRequestBytes),
		headers:  http.Header{},
		m:        newMetrics(name, set.Registerer),
	}
	if cfg.TimeKey != "-" {
		s.jopts.TimeKey = cfg.TimeKey
	}
	s.jopts.TagKey = cfg.TagKey
	s.op = []byte(`{"` + cfg.OpType + `":{"_index":"`)
	for k, v := range cfg.Headers {
		s.headers.Set(k, v)
	}
	if cfg.Compress == CompressGzip {
		s.headers.Set("Content-Encoding", "gzip")
	}
	s.headers.Set("Content-Type", "application/x-ndjson")
	s.bufs.New = func() any { return &buffers{names: s.index.cache(), enc: jsonl.NewEncoder(s.jopts)} }
	return s, nil
}

// newTransport is an HTTP transport with the TLS settings and enough idle
// connections for concurrent bulk requests.
func newTransport(c TLSConfig) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = 0 // the write timeout bounds requests
	if c == (TLSConfig{}) {
		return t, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // an explicit, documented option
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate in %s", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	t.TLSClientConfig = tc
	return t, nil
}

// productHeader lets the client talk to servers that do not say they are
// Elasticsearch (OpenSearch): go-elasticsearch refuses a first successful
// response without X-Elastic-Product.
type productHeader struct{ base http.RoundTripper }

func (p productHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := p.base.RoundTrip(req)
	if err == nil && res.Header.Get("X-Elastic-Product") == "" {
		res.Header.Set("X-Elastic-Product", "Elasticsearch")
	}
	return res, err
}

// Limits keeps the runner's batches near one request: documents are JSON
// with an action line and the time, about a third larger than the msgpack
// records the runner counts.
func (s *Sink) Limits() sinks.Limits { return sinks.Limits{MaxBytes: s.maxBytes * 3 / 4} }

// buffers are one Write's working memory, pooled.
type buffers struct {
	// body is the NDJSON being built. Compressed, it is handed to the
	// gzip stream every stageBytes, so a request is held compressed, not
	// whole; uncompressed, it is the request's body.
	body    []byte
	zw      *gzip.Writer // writes the request's compressed body into gz
	gz      bytes.Buffer
	resp    bytes.Buffer
	scratch []byte // the rewritten record
	recIdx  []int  // the record index of each document of the request
	names   *namerCache
	enc     *jsonl.Encoder // remembers the last tag and second it wrote
}

// stageBytes is how much NDJSON gathers before the gzip stream takes it.
const stageBytes = 64 << 10

// maxKeptBuffer bounds the buffers kept in the pool.
const maxKeptBuffer = 16 << 20

// Write sends the records in one or more bulk requests.
func (s *Sink) Write(ctx context.Context, records []sinks.Record) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.ensureTemplate(ctx); err != nil {
		return err
	}
	b := s.bufs.Get().(*buffers)
	defer func() {
		if max(cap(b.body), cap(b.scratch), b.gz.Cap(), b.resp.Cap()) <= maxKeptBuffer {
			s.bufs.Put(b)
		}
	}()
	w := write{s: s, b: b, records: records}
	return w.run(ctx)
}

// write is the state of one Write.
type write struct {
	s         *Sink
	b         *buffers
	records   []sinks.Record
	ndjson    int // bytes of NDJSON in the request being built
	failed    map[int]error
	delivered int
	permanent int
}

func (w *write) fail(i int, err error) {
	if w.failed == nil {
		w.failed = make(map[int]error)
	}
	w.failed[i] = err
	if sinks.IsPermanent(err) {
		w.permanent++
	}
}

func (w *write) run(ctx context.Context) error {
	w.begin()
	for i := range w.records {
		doc, err := w.encode(i)
		if err != nil {
			w.fail(i, sinks.Permanent(fmt.Errorf("elasticsearch: record cannot be converted to JSON: %w", err)))
			continue
		}
		if w.ndjson+doc > w.s.maxBytes && len(w.b.recIdx) > 0 {
			// This document would take the request over the limit: send
			// what came before it, then start again from it (encoded
			// again: it encoded once, so it does again).
			w.b.body = w.b.body[:len(w.b.body)-doc]
			if err := w.send(ctx); err != nil {
				return w.abort(err, i)
			}
			w.begin()
			_, _ = w.encode(i)
		}
		if err := w.add(i, doc); err != nil {
			return w.abort(err, i+1)
		}
	}
	if len(w.b.recIdx) > 0 {
		if err := w.send(ctx); err != nil {
			return w.abort(err, len(w.records))
		}
	}
	if w.failed == nil {
		return nil
	}
	return &sinks.PartialError{Failed: w.failed}
}

// begin starts a request: no documents, an empty body.
func (w *write) begin() {
	b := w.b
	b.body, b.recIdx, w.ndjson = b.body[:0], b.recIdx[:0], 0
	if w.s.cfg.Compress == CompressGzip {
		b.gz.Reset()
		if b.zw == nil {
			b.zw, _ = gzip.NewWriterLevel(&b.gz, gzip.BestSpeed) // a valid level
		} else {
			b.zw.Reset(&b.gz)
		}
	}
}

// encode appends record i's document to the body and returns its size;
// on error the body is as it was.
func (w *write) encode(i int) (int, error) {
	b := w.b
	start := len(b.body)
	var err error
	if b.body, err = w.s.appendDoc(b.body, &w.records[i], b); err != nil {
		b.body = b.body[:start]
	}
	return len(b.body) - start, err
}

// add counts record i's document, of size bytes at the end of the body,
// in the request.
func (w *write) add(i, size int) error {
	w.b.recIdx = append(w.b.recIdx, i)
	w.ndjson += size
	return w.stage(false)
}

// stage hands the NDJSON gathered to the gzip stream once there is
// stageBytes of it, or all of it when last.
func (w *write) stage(last bool) error {
	b := w.b
	if w.s.cfg.Compress != CompressGzip || (!last && len(b.body) < stageBytes) {
		return nil
	}
	_, err := b.zw.Write(b.body)
	b.body = b.body[:0]
	if err == nil && last {
		err = b.zw.Close()
	}
	return err
}

// abort ends a write after a whole request failed: the documents of that
// request, and the records not sent yet from next on, fail with err.
func (w *write) abort(err error, next int) error {
	if w.delivered == 0 && w.permanent == 0 {
		return err
	}
	for _, i := range w.b.recIdx {
		w.fail(i, err)
	}
	for i := next; i < len(w.records); i++ {
		if _, done := w.failed[i]; !done {
			w.fail(i, err)
		}
	}
	return &sinks.PartialError{Failed: w.failed}
}

// send sends the request built since begin: the documents of records
// recIdx. It returns an error when the request failed as a whole;
// per-document failures are recorded in w.
func (w *write) send(ctx context.Context) error {
	b := w.b
	if err := w.stage(true); err != nil {
		return err
	}
	payload := b.body
	if w.s.cfg.Compress == CompressGzip {
		payload = b.gz.Bytes()
	}
	res, err := w.s.post(ctx, payload, w.ndjson, b)
	if err != nil || res.status != http.StatusOK {
		// The transport may still be reading payload after an error or an
		// early answer (a 413 sent from Content-Length alone): the next
		// request is built in memory of its own.
		if w.s.cfg.Compress == CompressGzip {
			b.gz = bytes.Buffer{}
		} else {
			b.body = nil
		}
	}
	if err != nil {
		return err
	}
	switch {
	case res.status == http.StatusOK:
		return w.judge(res.body, b.recIdx)
	case res.status == http.StatusRequestEntityTooLarge && len(b.recIdx) > 1:
		// The cluster takes less than max_request_bytes: halve, each half
		// encoded again (into the buffers recIdx is part of). A half that
		// fails leaves in recIdx what of it failed, for abort.
		idx := append([]int(nil), b.recIdx...)
		half := len(idx) / 2
		if err := w.resend(ctx, idx[:half]); err != nil {
			b.recIdx = append(b.recIdx, idx[half:]...) // never sent
			return err
		}
		return w.resend(ctx, idx[half:])
	case res.status == http.StatusRequestEntityTooLarge:
		w.fail(b.recIdx[0], sinks.Permanent(fmt.Errorf("elasticsearch: a document of %d bytes is larger than the cluster accepts (413; see http.max_content_length): %s", w.ndjson, res.reason)))
		return nil
	case res.status == http.StatusTooManyRequests:
		return sinks.Throttled(fmt.Errorf("elasticsearch: 429: %s", res.reason), retryAfter(res.header))
	}
	return fmt.Errorf("elasticsearch: bulk request failed with %d: %s", res.status, res.reason)
}

// resend sends the documents of records idx in a request of their own.
// They were encoded once already, so encoding does not fail. When resend
// fails, recIdx holds the records that failed.
func (w *write) resend(ctx context.Context, idx []int) error {
	w.begin()
	for _, i := range idx {
		size, err := w.encode(i)
		if err == nil {
			err = w.add(i, size)
		}
		if err != nil {
			w.b.recIdx = append(w.b.recIdx[:0], idx...)
			return err
		}
	}
	return w.send(ctx)
}

// judge reads a 200 bulk response and records each document's outcome.
func (w *write) judge(body []byte, recIdx []int) error {
	if bulkSucceeded(body) {
		w.delivered += len(recIdx)
		return nil
	}
	var r bulkResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("elasticsearch: unreadable bulk response: %w", err)
	}
	if len(r.Items) != len(recIdx) {
		return fmt.Errorf("elasticsearch: bulk response has %d items for %d documents", len(r.Items), len(recIdx))
	}
	for j, item := range r.Items {
		var it bulkItem
		for op, v := range item {
			it = v
			it.op = op
		}
		i := recIdx[j]
		switch st := it.Status; {
		case st >= 200 && st < 300:
			w.delivered++
		case st == http.StatusConflict && it.op == OpCreate:
			w.s.m.conflicts.Inc()
			w.delivered++
		case st == http.StatusTooManyRequests:
			w.s.m.itemStatus(st).Inc()
			w.fail(i, sinks.Throttled(it.err(), 0))
		case st >= 500:
			w.s.m.itemStatus(st).Inc()
			w.fail(i, it.err())
		default:
			w.s.m.itemStatus(st).Inc()
			w.fail(i, sinks.Permanent(it.err()))
		}
	}
	return nil
}

// bulkSucceeded finds "errors":false before the items, as Elasticsearch
// and OpenSearch write it; anything else is read in full.
func bulkSucceeded(body []byte) bool {
	head := body
	if i := bytes.Index(body, []byte(`"items"`)); i >= 0 {
		head = body[:i]
	} else if len(head) > 256 {
		return false
	}
	return bytes.Contains(head, []byte(`"errors":false`))
}

type bulkResponse struct {
	Errors bool                  `json:"errors"`
	Items  []map[string]bulkItem `json:"items"`
}

type bulkItem struct {
	op     string
	Index  string          `json:"_index"`
	Status int             `json:"status"`
	Error  json.RawMessage `json:"error"`
}

func (it bulkItem) err() error {
	return fmt.Errorf("elasticsearch: %s %d: %s", it.op, it.Status, errorReason(it.Error))
}

// errorReason makes Elasticsearch's error object readable:
// "type: reason (caused by type: reason)".
func errorReason(raw json.RawMessage) string {
	var e struct {
		Type     string `json:"type"`
		Reason   string `json:"reason"`
		CausedBy *struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"caused_by"`
	}
	if len(raw) == 0 {
		return "no reason given"
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Type == "" {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return truncate(string(raw), 512)
	}
	out := e.Type + ": " + e.Reason
	if e.CausedBy != nil && e.CausedBy.Type != "" {
		out += " (caused by " + e.CausedBy.Type + ": " + e.CausedBy.Reason + ")"
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// retryAfter reads a Retry-After header in seconds.
func retryAfter(h http.Header) time.Duration {
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(min(s, 300)) * time.Second
	}
	return 0
}

// response is what send needs of an HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte // valid until the next post with the same buffers
	reason string // for failures: the error of the body
}

// post sends one bulk request: payload is its body as sent, ndjson the
// size of its NDJSON.
func (s *Sink) post(ctx context.Context, payload []byte, ndjson int, b *buffers) (response, error) {
	// The client adopts and changes the header map: one per request.
	req := esapi.BulkRequest{Body: bytes.NewReader(payload), Header: s.headers.Clone(), Pipeline: s.cfg.Pipeline}
	res, err := req.Do(ctx, s.client)
	if err != nil {
		s.m.requests.WithLabelValues("error").Inc()
		return response{}, fmt.Errorf("elasticsearch: bulk request: %w", err)
	}
	defer res.Body.Close()
	b.resp.Reset()
	_, err = b.resp.ReadFrom(res.Body)
	s.m.requests.WithLabelValues(strconv.Itoa(res.StatusCode)).Inc()
	s.m.bytes.WithLabelValues("ndjson").Add(float64(ndjson))
	s.m.bytes.WithLabelValues("wire").Add(float64(len(payload)))
	if err != nil {
		return response{}, fmt.Errorf("elasticsearch: reading the bulk response: %w", err)
	}
	out := response{status: res.StatusCode, header: res.Header, body: b.resp.Bytes()}
	if out.status != http.StatusOK {
		out.reason = responseReason(out.body)
	}
	return out, nil
}

// responseReason reads Elasticsearch's {"error": {...}, "status": N}.
func responseReason(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		return errorReason(e.Error)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "empty response"
	}
	return truncate(string(body), 512)
}

// appendDoc appends the action line and the document of one record.
func (s *Sink) appendDoc(dst []byte, rec *sinks.Record, b *buffers) ([]byte, error) {
	dst = append(dst, s.op...)
	dst = s.index.append(dst, rec, b.names)
	if s.withID {
		dst = append(dst, `","_id":"`...)
		dst = rec.AppendID(dst)
	}
	dst = append(dst, "\"}}\n"...)
	entry := rec.Entry
	if s.rw != nil {
		var changed bool
		var err error
		if b.scratch, changed, err = s.rw.Append(b.scratch[:0], entry.Record); err != nil {
			return dst, err
		}
		if changed {
			entry.Record = b.scratch
		}
	}
	return b.enc.AppendLine(dst, rec.Tag, entry)
}

// Close releases the client's connections.
func (s *Sink) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.client.Close(ctx)
}

// Prepare checks the cluster at start, logs its version, and installs the
// index template when one is configured.
func (s *Sink) Prepare(ctx context.Context) error {
	v, err := s.Ping(ctx)
	if err != nil {
		return err
	}
	s.log.Info("elasticsearch reached", "version", v)
	return s.ensureTemplate(ctx)
}

// Ping asks the cluster for its version, for checks at start.
func (s *Sink) Ping(ctx context.Context) (string, error) {
	res, err := s.client.Info(s.client.Info.WithContext(ctx))
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.IsError() {
		return "", fmt.Errorf("elasticsearch: %s: %s", res.Status(), responseReason(body))
	}
	var info struct {
		Version struct {
			Number       string `json:"number"`
			Distribution string `json:"distribution"`
		} `json:"version"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return "", fmt.Errorf("elasticsearch: unreadable info response: %w", err)
	}
	if info.Version.Distribution != "" {
		return info.Version.Distribution + " " + info.Version.Number, nil
	}
	return info.Version.Number, nil
}

type metrics struct {
	requests  *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	items     *prometheus.CounterVec
	conflicts prometheus.Counter
}

func newMetrics(name string, r prometheus.Registerer) metrics {
	l := prometheus.Labels{"sink": name}
	m := metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_elasticsearch_requests_total",
			Help: "Bulk requests by HTTP status (or error when no response came).", ConstLabels: l}, []string{"status"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_elasticsearch_request_bytes_total",
			Help: "Bulk request bytes: ndjson before compression, wire as sent.", ConstLabels: l}, []string{"encoding"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_elasticsearch_item_failures_total",
			Help: "Documents a bulk response failed, by item status (429 and 5xx are retried, other 4xx dead-lettered).", ConstLabels: l}, []string{"status"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_elasticsearch_conflicts_total",
			Help: "Documents answered 409 to op_type create: already written, counted as delivered.", ConstLabels: l}),
	}
	r.MustRegister(m.requests, m.bytes, m.items, m.conflicts)
	return m
}

func (m metrics) itemStatus(status int) prometheus.Counter {
	return m.items.WithLabelValues(strconv.Itoa(status))
}
