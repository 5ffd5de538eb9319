// Package vltest runs VictoriaLogs, a log store that speaks Elasticsearch's
// bulk API, for tests: the binary `make test` builds (.ci/victoria-logs).
package vltest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicelog/sluice/loadtest"
)

// Start runs VictoriaLogs as a child process on a loopback port, with its
// data in a temporary directory, and returns its base URL; the test's end
// stops it. The binary is SLUICE_VICTORIALOGS, else bin/victoria-logs at
// the module's root.
func Start(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("SLUICE_VICTORIALOGS")
	if bin == "" {
		bin = filepath.Join(moduleRoot(), "bin", "victoria-logs")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("VictoriaLogs is needed for this test: run .ci/victoria-logs (make test does) or set SLUICE_VICTORIALOGS: %v", err)
	}
	stop, base, err := loadtest.StartVictoriaLogs(context.Background(), bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return base
}

// moduleRoot is the nearest directory above the working directory (a
// test's package) that holds go.mod, or the working directory.
func moduleRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}
