// Package component holds what every sluice component is built with: a
// logger, a metrics registerer and a clock. Nothing in sluice uses globals.
package component

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Settings carry the shared facilities of a component.
type Settings struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Defaults fills the zero fields: a discarding logger, a private registry and
// the wall clock. Tests may pass Settings{} and get working components.
func (s Settings) Defaults() Settings {
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.Registerer == nil {
		s.Registerer = prometheus.NewRegistry()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	return s
}

// AuthFailures returns the counter every listener shares for rejected
// credentials, sluice_auth_failures_total{listener, reason}, registering it
// on r the first time.
func AuthFailures(r prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_auth_failures_total",
		Help: "Connections or requests rejected for missing or wrong credentials (token, shared key, user, TLS), by listener and reason."},
		[]string{"listener", "reason"})
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic(err) // the same name registered with another shape: a programming error
	}
	return c
}
