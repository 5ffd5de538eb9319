// Package api serves sluice's HTTP API on chi: liveness, readiness and
// Prometheus metrics. (HTTP ingest and the operator API build on it.)
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicelog/sluice/internal/component"
)

// Config configures the API listener.
type Config struct {
	// Listen is the API address.
	Listen string `yaml:"listen"`
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
}

// Validate checks the configuration; error texts start with the field name.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	return nil
}

// Check is a named readiness check; nil means ready.
type Check struct {
	Name  string
	Check func() error
}

// Server is the API server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	srv    *http.Server
	ln     net.Listener
	checks []Check
}

// New returns the API server. gatherer serves /metrics; checks decide /readyz.
func New(cfg Config, gatherer prometheus.Gatherer, checks []Check, set component.Settings) *Server {
	set = set.Defaults()
	s := &Server{cfg: cfg, log: set.Logger.With("listener", "api"), checks: checks}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", s.ready)
	r.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	s.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	return s
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	failed := map[string]string{}
	for _, c := range s.checks {
		if err := c.Check(); err != nil {
			failed[c.Name] = err.Error()
		}
	}
	if len(failed) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failed": failed})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Start binds the listener and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("api: listen: %w", err)
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", "err", err)
		}
	}()
	s.log.Info("api listener started", "addr", ln.Addr().String())
	return nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server gracefully.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}
