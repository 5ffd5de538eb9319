// Package memlimit sets the Go runtime's soft memory limit (GOMEMLIMIT) for
// sluice: from the environment when GOMEMLIMIT is set, else from the
// memory_limit setting, else from the memory limit of the container's
// cgroup, so that the garbage collector works harder before the container
// is killed for memory rather than after.
package memlimit

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// Share is the part of a memory limit given to the Go heap and runtime; the
// rest is headroom (stacks outside the limit's accounting, the kernel's page
// cache charged to the cgroup, fragmentation).
const Share = 0.9

// unlimited is cgroup v1's "no limit" (a page-rounded max int64) and above.
const unlimited = 1 << 60

// Source says where the limit came from.
type Source string

// Sources of a limit.
const (
	FromEnv     Source = "GOMEMLIMIT"
	FromConfig  Source = "memory_limit"
	FromCgroup  Source = "cgroup"
	FromNothing Source = "none"
)

// Decide returns the soft limit to apply and its source. configured is the
// memory_limit setting (0: unset); cgroupRoot is where the cgroup
// filesystem is mounted (/sys/fs/cgroup); getenv reads the environment.
// With GOMEMLIMIT set the runtime has applied it already: limit is 0.
func Decide(configured int64, cgroupRoot string, getenv func(string) string) (limit int64, src Source, err error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, FromEnv, nil
	}
	if configured > 0 {
		return int64(float64(configured) * Share), FromConfig, nil
	}
	max, err := cgroupLimit(cgroupRoot)
	if err != nil || max <= 0 {
		return 0, FromNothing, err
	}
	return int64(float64(max) * Share), FromCgroup, nil
}

// cgroupLimit reads the memory limit of the process's cgroup: v2
// (memory.max, "max" when unlimited) or v1 (memory/memory.limit_in_bytes).
// No cgroup filesystem, or no limit, is 0 and no error.
func cgroupLimit(root string) (int64, error) {
	for _, f := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("memlimit: %w", err)
		}
		s := strings.TrimSpace(string(raw))
		if s == "max" {
			return 0, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("memlimit: %s: %q is not a number of bytes", f, s)
		}
		if n >= unlimited {
			return 0, nil
		}
		return n, nil
	}
	return 0, nil
}

// Apply decides the limit (see Decide) and sets it. It returns what it
// did, for the start-up log.
func Apply(configured int64) (limit int64, src Source, err error) {
	limit, src, err = Decide(configured, "/sys/fs/cgroup", os.Getenv)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	if src == FromEnv {
		limit = debug.SetMemoryLimit(-1) // the runtime's, from the environment
	}
	return limit, src, err
}
