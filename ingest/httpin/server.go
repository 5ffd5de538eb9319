package httpin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/component"
)

// Server serves a Handler on the separate ingest port (Config.Listen).
type Server struct {
	cfg Config
	log *slog.Logger
	srv *http.Server

	conns atomic.Int64
	gauge prometheus.Gauge

	mu   sync.Mutex
	ln   net.Listener
	done chan struct{}
}

// NewServer returns a server for h, usually the *Handler that the API port
// mounts too (wrapped in the ingest auth middleware); cfg must be valid and
// its Listen not ListenDisabled.
func NewServer(cfg Config, h http.Handler, set component.Settings) *Server {
	set = set.Defaults()
	s := &Server{
		cfg: cfg,
		log: set.Logger.With("listener", "http"),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_ingest_connections",
			Help: "Open connections.", ConstLabels: prometheus.Labels{"listener": "http"}}),
	}
	set.Registerer.MustRegister(s.gauge)
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(set.Logger.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.gauge.Set(float64(s.conns.Add(1)))
			case http.StateClosed, http.StateHijacked:
				s.gauge.Set(float64(s.conns.Add(-1)))
			}
		},
	}
	return s
}

// Connections returns the open connections.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Start binds the listener and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	tc, err := s.cfg.TLS.Load()
	if err != nil {
		return fmt.Errorf("http ingest: tls.%w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http ingest: listen: %w", err)
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
			s.log.Error("http ingest server stopped", "err", err)
		}
	}()
	s.log.Info("http ingest listener started", "addr", ln.Addr().String(), "tls", tc != nil)
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
		err = fmt.Errorf("http ingest: shutdown: %w", err)
	}
	<-done
	return err
}
