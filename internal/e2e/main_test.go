// Package e2e holds end-to-end tests that run sluice as real processes (and
// against real nats-servers) rather than in the test process.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// sluiceBin is the path of the sluice binary built by TestMain for this test
// run (or given in SLUICE_E2E_BIN). Tests start it with exec.Command.
var sluiceBin string

// TestMain builds cmd/sluice once into a temporary directory, runs the tests
// and removes the directory. A binary that does not build fails the whole
// package with the compiler's output. SLUICE_E2E_BIN=path uses an existing
// binary instead (e.g. one built with -race).
func TestMain(m *testing.M) {
	os.Exit(mainBuildAndRun(m))
}

func mainBuildAndRun(m *testing.M) int {
	if p := os.Getenv("SLUICE_E2E_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: SLUICE_E2E_BIN: %v\n", err)
			return 1
		}
		if _, err := os.Stat(abs); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: SLUICE_E2E_BIN: %v\n", err)
			return 1
		}
		sluiceBin = abs
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	sluiceBin = filepath.Join(dir, "sluice")
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot build sluice: no go in PATH: %v\n", err)
		return 1
	}
	build := exec.Command(goTool, "build", "-o", sluiceBin, "github.com/sluicelog/sluice/cmd/sluice")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build github.com/sluicelog/sluice/cmd/sluice failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// skipShort skips a test under -short, naming what makes it long (sluice
// processes, a JetStream cluster). make test does not pass -short, so
// every such test runs in CI.
func skipShort(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip(what)
	}
}
