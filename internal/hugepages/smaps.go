package hugepages

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Mapping is one mapping of a process as /proc/<pid>/smaps describes it.
type Mapping struct {
	Start, End uintptr
	// Advised is the VmFlags' "hg": advised MADV_HUGEPAGE.
	Advised bool
	// AnonHugeKB is the mapping's AnonHugePages: the memory huge pages
	// back, in KiB.
	AnonHugeKB int64
}

// Smaps reads the mappings of process pid (0: this one) from
// /proc/<pid>/smaps (Linux).
func Smaps(pid int) ([]Mapping, error) {
	path := "/proc/self/smaps"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/smaps", pid)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hugepages: %w", err)
	}
	defer f.Close()
	return ReadSmaps(f)
}

// ReadSmaps reads the mappings of /proc/<pid>/smaps (Linux).
func ReadSmaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			out = append(out, Mapping{Start: lo, End: hi})
			continue
		}
		if len(out) == 0 {
			continue
		}
		m := &out[len(out)-1]
		if rest, ok := strings.CutPrefix(line, "AnonHugePages:"); ok {
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &m.AnonHugeKB); err != nil {
				return nil, fmt.Errorf("hugepages: smaps: %q: %w", line, err)
			}
		}
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			m.Advised = strings.Contains(rest+" ", " hg ")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hugepages: smaps: %w", err)
	}
	return out, nil
}
