// Package api serves sluice's HTTP API on chi: liveness and readiness
// (open, for probes), Prometheus metrics and the operator API (behind the API
// token), and HTTP ingest under /v1/ingest (behind the ingest tokens).
package api

import (
	"context"
	"crypto/tls"
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

	"github.com/sluicelog/sluice/api/tap"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/tlsconfig"
)

// Config configures the API listener.
type Config struct {
	// Listen is the API address.
	Listen string `yaml:"listen"`
	// Auth protects the operator API and /metrics (not /healthz, /readyz).
	Auth AuthConfig `yaml:"auth"`
	// TLS serves the API over HTTPS.
	TLS tlsconfig.Config `yaml:"tls"`
	// Pprof serves Go's profiles under /debug/pprof/ (behind Auth), for
	// measuring sluice under load; off by default.
	Pprof bool `yaml:"pprof"`
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
}

// Validate checks the configuration; error texts start with the field name.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port", c.Listen))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("auth.%w", err))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("tls.%w", err))
	}
	return errors.Join(errs...)
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

// Deps are what the API serves.
type Deps struct {
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// Checks decide /readyz.
	Checks []Check
	// Operator serves the operator API under /v1; nil leaves it out.
	Operator Operator
	// Ingest, when set, is mounted at /v1/ingest/ with its own auth (the
	// API token does not apply to it).
	Ingest http.Handler
	// Tap, when set, serves /v1/tap for the stages "ingest" and TapStages
	// (the sinks' names).
	Tap       *tap.Hub
	TapStages []string
}

// New returns the API server; cfg must be valid.
func New(cfg Config, deps Deps, set component.Settings) (*Server, error) {
	set = set.Defaults()
	tokens, err := cfg.Auth.Load()
	if err != nil {
		return nil, fmt.Errorf("api: auth.%w", err)
	}
	tlsConf, err := cfg.TLS.Load()
	if err != nil {
		return nil, fmt.Errorf("api: tls.%w", err)
	}
	s := &Server{cfg: cfg, log: set.Logger.With("listener", "api"), checks: deps.Checks}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", s.ready)
	if deps.Ingest != nil {
		r.Mount("/v1/ingest", deps.Ingest)
	}
	r.Group(func(r chi.Router) {
		r.Use(BearerAuth("api", NewTokens(tokens), AuthFailures(set.Registerer)))
		r.Handle("/metrics", promhttp.HandlerFor(deps.Gatherer, promhttp.HandlerOpts{}))
		if deps.Operator != nil {
			s.mountOperator(r, deps.Operator)
		}
		if deps.Tap != nil {
			s.mountTap(r, deps.Tap, deps.TapStages)
		}
		if cfg.Pprof {
			r.Mount("/debug", middleware.Profiler())
		}
	})
	s.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConf}
	return s, nil
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
	if s.srv.TLSConfig != nil {
		ln = tls.NewListener(ln, s.srv.TLSConfig)
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
