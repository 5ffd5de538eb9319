// Package component holds what every sluice component is built with: a
// logger, a metrics registerer and a clock. Nothing in sluice uses globals.
package component

import (
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
