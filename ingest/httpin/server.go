package httpin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/tlsconfig"
)

// Server serves a Handler on the separate ingest port (Config.Listen).
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	srv *http.Server

	conns  atomic.Int64 // open
	marked atomic.Int64 // open and asked to close
	gauge  prometheus.Gauge
	shed   *prometheus.CounterVec

	// open holds the open connections, for shedding.
	openMu sync.Mutex
	open   map[net.Conn]*connState

	mu   sync.Mutex
	ln   net.Listener
	done chan struct{}
}

// NewServer returns a server for h, usually the *Handler that the API port
// mounts too (wrapped in the ingest auth middleware); cfg must be valid and
// its Listen not ListenDisabled.
func NewServer(cfg Config, h http.Handler, set component.Settings) *Server {
	return NewServerFor(ServerConfig{Listener: "http", Listen: cfg.Listen, TLS: cfg.TLS, ReadTimeout: cfg.ReadTimeout}, h, set)
}

// ServerConfig is what a Server needs of its listener's configuration.
type ServerConfig struct {
	// Listener names it in logs and metrics (the listener label).
	Listener    string
	Listen      string
	TLS         tlsconfig.Config
	ReadTimeout time.Duration
}

// NewServerFor returns a server for h on another listener than HTTP ingest
// (OTLP/HTTP), with the same connection gauge, shedding and shutdown.
func NewServerFor(cfg ServerConfig, h http.Handler, set component.Settings) *Server {
	set = set.Defaults()
	s := &Server{
		cfg: cfg,
		log: set.Logger.With("listener", cfg.Listener),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_ingest_connections",
			Help: "Open connections.", ConstLabels: prometheus.Labels{"listener": cfg.Listener}}),
	}
	s.shed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_connections_shed_total",
		Help:        "Connections closed by sluice between chunks, after their acks, so that the forwarder reconnects elsewhere: by reason (balance, max_age).",
		ConstLabels: prometheus.Labels{"listener": cfg.Listener}}, []string{"reason"})
	set.Registerer.MustRegister(s.gauge, s.shed)
	s.open = map[net.Conn]*connState{}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cs, ok := r.Context().Value(connKey{}).(*connState); ok && cs.shed.Load() {
				// Answer this request, then close: the client's next
				// request opens a connection through the balancer.
				w.Header().Set("Connection", "close")
			}
			h.ServeHTTP(w, r)
		}),
		// ConnContext runs for each accepted connection before its
		// StateNew.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			cs := &connState{opened: time.Now()}
			s.openMu.Lock()
			s.open[c] = cs
			s.openMu.Unlock()
			return context.WithValue(ctx, connKey{}, cs)
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(set.Logger.Handler(), slog.LevelDebug),
		ConnState: func(c net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.gauge.Set(float64(s.conns.Add(1)))
			case http.StateClosed, http.StateHijacked:
				s.openMu.Lock()
				if cs := s.open[c]; cs != nil && cs.shed.Load() {
					s.marked.Add(-1)
				}
				delete(s.open, c)
				s.openMu.Unlock()
				s.gauge.Set(float64(s.conns.Add(-1)))
			}
		},
	}
	return s
}

// Connections returns the open connections that were not asked to close.
func (s *Server) Connections() int { return int(s.conns.Load() - s.marked.Load()) }

type connKey struct{}

// connState is what the server knows of one connection.
type connState struct {
	opened time.Time
	shed   atomic.Bool
}

// Shed asks up to n open keep-alive connections, the longest open first,
// to close: the next response on each carries Connection: close, and the
// client opens its next connection through the load balancer. A request
// in progress is answered as usual. reason labels
// sluice_ingest_connections_shed_total. It returns how many it asked.
func (s *Server) Shed(n int, reason string) int {
	s.openMu.Lock()
	cands := make([]*connState, 0, len(s.open))
	for _, cs := range s.open {
		if !cs.shed.Load() {
			cands = append(cands, cs)
		}
	}
	s.openMu.Unlock()
	slices.SortFunc(cands, func(a, b *connState) int { return a.opened.Compare(b.opened) })
	asked := 0
	s.openMu.Lock()
	for _, cs := range cands[:min(n, len(cands))] {
		if cs.shed.CompareAndSwap(false, true) {
			s.marked.Add(1)
			asked++
		}
	}
	s.openMu.Unlock()
	s.shed.WithLabelValues(reason).Add(float64(asked))
	return asked
}

// Start binds the listener and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	tc, err := s.cfg.TLS.Load()
	if err != nil {
		return fmt.Errorf("%s ingest: tls.%w", s.cfg.Listener, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("%s ingest: listen: %w", s.cfg.Listener, err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	s.mu.Lock()
	s.ln, s.done = ln, make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ingest server stopped", "err", err)
		}
	}()
	s.log.Info("ingest listener started", "addr", ln.Addr().String(), "tls", tc != nil)
	return nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln.Addr()
}

// Shutdown stops accepting and waits for the requests in progress, which
// answer once their records are stored (or storing failed). When ctx ends
// first the remaining connections are closed: their records are not
// acknowledged and the forwarders resend them. It is safe to call more than
// once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ln, done := s.ln, s.done
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("%s ingest: shutdown: %w", s.cfg.Listener, err)
	}
	<-done
	return err
}
