// Package apptest starts a whole sluice in a test: embedded JetStream in
// the test's temporary directory, every listener on a loopback port, a file
// sink, enrichment off.
package apptest

import (
	"context"
	"testing"
	"time"

	"github.com/sluicelog/sluice/cmd/sluice/app"
	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/sinks/file"
)

// Start runs sluice until the test ends, with the configuration above as
// edit leaves it, and returns it with the file sink's directory.
func Start(t *testing.T, edit func(*config.Config)) (*app.App, string) {
	t.Helper()
	out := t.TempDir()
	c := &config.Config{}
	c.NATS.Embedded.StoreDir = t.TempDir()
	c.Forward.Listen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	c.OTLP.HTTP.Listen, c.OTLP.GRPC.Listen = "127.0.0.1:0", "127.0.0.1:0"
	c.API.Listen = "127.0.0.1:0"
	off := false
	c.Enrich.Enabled = &off
	c.Sinks = []config.SinkConfig{{Name: "file", File: &file.Config{Path: out}}}
	if edit != nil {
		edit(c)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	a := app.New(c, component.Settings{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	return a, out
}
