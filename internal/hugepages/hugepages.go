// Package hugepages asks Linux to back sluice's Go heap with transparent
// huge pages where the kernel gives them only on request (the `madvise`
// mode, the default of many distributions).
//
// Every page the heap touches for the first time costs a page fault, and on
// a VM whose guest page tables are shadowed by the hypervisor a fault is
// dear: 11 µs for each 4 KiB page on the benchmark machine, 0.16 ms for a
// 2 MiB huge page that covers 512 of them. A fresh sluice grows its heap to
// about 100 MB in its first second of heavy load, and those 22,000 faults
// were a tenth of its CPU over a two-million-record run
// (docs/PERFORMANCE.md).
//
// The runtime maps its heap as it grows, and a mapping made after an
// madvise does not inherit it, so Reserve has the runtime map a range at
// once (one large allocation, which the runtime leaves untouched: fresh
// memory is already zero), advises it, and gives it back: the pages are
// returned to the operating system untouched, so the range costs address
// space, not memory, and later allocations fault in huge pages there.
package hugepages

import (
	"strings"
)

// DefaultBytes is the heap range advised when no memory limit bounds the
// heap.
const DefaultBytes = 1 << 30

// minBytes is the least range advised, for a memory limit below it: a busy
// sluice's heap is larger than that.
const minBytes = 64 << 20

// Plan decides how many bytes of heap to advise. mode is the kernel's
// transparent huge page mode (Mode); godebug is the GODEBUG variable;
// limit is the Go soft memory limit (0 or less: none). It returns 0 and the
// reason when there is nothing to do.
func Plan(mode, godebug string, limit int64) (bytes int64, why string) {
	switch mode {
	case "madvise":
	case "always":
		return 0, "the kernel backs every mapping with huge pages already"
	case "never":
		return 0, "transparent huge pages are off in the kernel"
	default:
		return 0, "no transparent huge pages in this kernel"
	}
	for _, kv := range strings.Split(godebug, ",") {
		if strings.TrimSpace(kv) == "disablethp=1" {
			return 0, "GODEBUG=disablethp=1"
		}
	}
	bytes = DefaultBytes
	if limit > 0 && limit < bytes {
		// The collector keeps the heap under the limit: a larger range
		// would never be used.
		bytes = max(limit, minBytes)
	}
	return bytes, ""
}

// selected returns the bracketed word of a sysfs choice list.
func selected(list string) string {
	_, rest, ok := strings.Cut(list, "[")
	if !ok {
		return ""
	}
	word, _, ok := strings.Cut(rest, "]")
	if !ok {
		return ""
	}
	return word
}
