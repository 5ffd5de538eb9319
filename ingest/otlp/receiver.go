package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/ingest/httpin"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
)

// Listener names, the listener label of the metrics.
const (
	ListenerHTTP = "otlp_http"
	ListenerGRPC = "otlp_grpc"
)

// Reasons a whole request is refused; metric label values.
const (
	ReasonDecode      = "bad_request"      // not an ExportLogsServiceRequest
	ReasonContentType = "bad_content_type" // 415
)

// Receiver is OTLP ingest: an OTLP/HTTP server and an OTLP/gRPC server
// sharing one converter, one bound on concurrent requests and one
// publisher. It is safe for concurrent use.
type Receiver struct {
	cfg    Config
	pub    httpin.Publisher
	log    *slog.Logger
	cv     converter
	sem    *semaphore.Weighted
	body   *httpin.Body
	tokens api.Tokens
	auth   *prometheus.CounterVec

	httpM, grpcM *httpin.Metrics
	// rejectedRecords counts log records refused alone in a partial
	// success, by listener and reason.
	rejectedRecords *prometheus.CounterVec

	http    *httpin.Server
	grpc    *grpc.Server
	health  *health.Server
	grpcLn  net.Listener
	grpcEnd chan struct{}
}

// New returns a receiver; cfg must have its defaults set and be valid.
// tokens, when any, are required as bearer tokens on both listeners.
func New(cfg Config, tokens []string, pub httpin.Publisher, set component.Settings) *Receiver {
	set = set.Defaults()
	tag, err := parseTag(cfg.Tag)
	if err != nil {
		panic(fmt.Sprintf("otlp: invalid config: tag: %v", err)) // Validate catches it
	}
	r := &Receiver{
		cfg:    cfg,
		pub:    pub,
		log:    set.Logger,
		cv:     converter{tag: tag, maxRecord: int(cfg.MaxRecordBytes), now: set.Now},
		sem:    semaphore.NewWeighted(int64(cfg.MaxConcurrentRequests)),
		body:   httpin.NewBody(cfg.MaxBodyBytes, cfg.MaxDecompressedBytes),
		tokens: api.NewTokens(tokens),
		auth:   component.AuthFailures(set.Registerer),
		httpM:  httpin.NewMetrics(ListenerHTTP, set.Registerer),
		grpcM:  httpin.NewMetrics(ListenerGRPC, set.Registerer),
		rejectedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_otlp_rejected_records_total",
			Help: "OTLP log records refused alone (partial success) while the rest of their request was stored, by reason."},
			[]string{"listener", "reason"}),
	}
	set.Registerer.MustRegister(r.rejectedRecords)
	if cfg.HTTP.Listen != ListenDisabled {
		r.http = httpin.NewServerFor(httpin.ServerConfig{Listener: ListenerHTTP, Listen: cfg.HTTP.Listen,
			TLS: cfg.HTTP.TLS, ReadTimeout: cfg.HTTP.ReadTimeout}, r.Handler(), set)
	}
	return r
}

// Start binds the enabled listeners.
func (r *Receiver) Start(ctx context.Context) error {
	if r.http != nil {
		if err := r.http.Start(ctx); err != nil {
			return err
		}
	}
	if r.cfg.GRPC.Listen != ListenDisabled {
		if err := r.startGRPC(ctx); err != nil {
			return err
		}
	}
	return nil
}

// HTTPAddr is the OTLP/HTTP listener's address, nil when it is off.
func (r *Receiver) HTTPAddr() net.Addr {
	if r.http == nil {
		return nil
	}
	return r.http.Addr()
}

// GRPCAddr is the OTLP/gRPC listener's address, nil when it is off.
func (r *Receiver) GRPCAddr() net.Addr {
	if r.grpcLn == nil {
		return nil
	}
	return r.grpcLn.Addr()
}

// Connections returns the open OTLP/HTTP connections that were not asked
// to close (0 when the listener is off).
func (r *Receiver) Connections() int {
	if r.http == nil {
		return 0
	}
	return r.http.Connections()
}

// Shed asks up to n OTLP/HTTP keep-alive connections, the longest open
// first, to close after their next answer, so that the clients reconnect
// through the load balancer (balancing across replicas). It returns how
// many it asked.
func (r *Receiver) Shed(n int, reason string) int {
	if r.http == nil {
		return 0
	}
	return r.http.Shed(n, reason)
}

// Shutdown stops accepting and waits for the requests in progress, which
// answer once their records are stored; when ctx ends first the rest are
// cut off unanswered, and their clients send them again.
func (r *Receiver) Shutdown(ctx context.Context) error {
	var errs []error
	if r.http != nil {
		errs = append(errs, r.http.Shutdown(ctx))
	}
	if r.grpcLn != nil {
		r.health.Shutdown() // NOT_SERVING: health checks turn clients away first
		stopped := make(chan struct{})
		go func() { r.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			r.grpc.Stop()
			<-stopped
			errs = append(errs, fmt.Errorf("otlp grpc: shutdown: %w", ctx.Err()))
		}
		<-r.grpcEnd
	}
	r.body.Close()
	return errors.Join(errs...)
}

// outcome is what became of one request's records.
type outcome struct {
	stored   int
	rejected int
	msg      string // the first rejected record's reason, for partial success
}

// export converts ld and stores it, answering once JetStream holds every
// record that was not rejected alone.
func (r *Receiver) export(ctx context.Context, listener string, m *httpin.Metrics, ld plog.Logs, sizeHint int) (outcome, *httpin.Status) {
	var b batch
	r.cv.convert(ld, &b, sizeHint)
	for reason, n := range b.rejected {
		r.rejectedRecords.WithLabelValues(listener, reason).Add(float64(n))
	}
	out := outcome{stored: b.records, rejected: b.rejectedCount(), msg: b.firstErr}
	if b.records == 0 {
		b.release()
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	err := r.store(ctx, &b)
	if err == nil || !errors.Is(err, ctx.Err()) {
		b.release() // the publisher reported on every chunk: it no longer needs the bytes
	}
	if err != nil {
		st := httpin.Backpressure(err)
		r.log.Warn("records not stored", "listener", listener, "records", b.records, "status", st.Code, "err", err)
		return out, st
	}
	m.Records.Add(float64(b.records))
	for _, c := range b.chunks {
		m.Bytes.Add(float64(len(c.Entries)))
	}
	return out, nil
}

// store publishes every chunk of b, then waits for all of them.
func (r *Receiver) store(ctx context.Context, b *batch) error {
	var errs []error
	pending := make([]chunk.Pending, 0, len(b.chunks))
	for _, c := range b.chunks {
		if c.Count == 0 {
			continue
		}
		p, err := r.pub.Publish(c)
		if err != nil {
			errs = append(errs, err)
			break
		}
		pending = append(pending, p)
	}
	for _, p := range pending {
		errs = append(errs, p.Wait(ctx))
	}
	return errors.Join(errs...)
}

// acquire waits for a request slot.
func (r *Receiver) acquire(ctx context.Context) *httpin.Status {
	if err := r.sem.Acquire(ctx, 1); err != nil {
		return &httpin.Status{Code: http.StatusServiceUnavailable, RetryAfter: 1, Msg: "request ended while waiting: " + err.Error()}
	}
	return nil
}

func (r *Receiver) count(m *httpin.Metrics, code int, st *httpin.Status) {
	if st != nil && st.Reason != "" {
		m.Rejected.WithLabelValues(st.Reason).Inc()
	}
	m.Requests.WithLabelValues(strconv.Itoa(code)).Inc()
}
