//go:build !unix

package procs

import (
	"errors"
	"time"
)

// CPUTime is not read here: Run then leaves GOMAXPROCS alone.
func CPUTime() (time.Duration, error) {
	return 0, errors.New("procs: process CPU time is not read on this system")
}
