package hugepages

import (
	"fmt"
	"os"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

// modeFile is where Linux says its transparent huge page mode.
const modeFile = "/sys/kernel/mm/transparent_hugepage/enabled"

// Mode is the kernel's transparent huge page mode: "always", "madvise" or
// "never", empty when it has none.
func Mode() string {
	list, _ := os.ReadFile(modeFile)
	return selected(string(list))
}

// Reserve advises a range of the Go heap as Plan decides, given the Go
// soft memory limit (0: none). It returns the range advised (empty when
// there was nothing to do, with the reason) and any error; on error the
// heap is as it was, with no advice. Call it once, early, before the heap
// has grown: the range comes from memory the runtime maps for it.
func Reserve(limit int64) (start uintptr, bytes int64, why string, err error) {
	if bytes, why = Plan(Mode(), os.Getenv("GODEBUG"), limit); bytes == 0 {
		return 0, 0, why, nil
	}
	// The runtime throws, which cannot be recovered, when it cannot map
	// the heap it needs: try the mapping first (a container's address
	// space or commit limit may refuse it).
	probe, err := unix.Mmap(-1, 0, int(bytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, 0, "", fmt.Errorf("hugepages: mapping %d MiB: %w", bytes>>20, err)
	}
	if err := unix.Munmap(probe); err != nil {
		return 0, 0, "", fmt.Errorf("hugepages: %w", err)
	}
	start, err = advise(bytes)
	// Collect the range and give its pages back to the system untouched,
	// so that it counts neither against the memory limit nor in RSS.
	debug.FreeOSMemory()
	if err != nil {
		return 0, 0, "", fmt.Errorf("hugepages: madvise: %w", err)
	}
	return start, bytes, "", nil
}

// advise has the runtime map n bytes of heap (fresh memory, which it does
// not clear) and advises them; nothing refers to them once it returns.
//
//go:noinline
func advise(n int64) (uintptr, error) {
	b := make([]byte, n)
	return uintptr(unsafe.Pointer(unsafe.SliceData(b))), unix.Madvise(b, unix.MADV_HUGEPAGE)
}
