package hugepages

import (
	"testing"
	"unsafe"
)

// After Reserve, a large allocation lands in the advised range and the
// kernel backs it with huge pages.
func TestReserveBacksTheHeapWithHugePages(t *testing.T) {
	if Mode() != "madvise" {
		t.Skip("transparent huge pages are not in madvise mode on this machine")
	}
	start, n, why, err := Reserve(minBytes)
	if err != nil || n != minBytes || why != "" {
		t.Fatalf("Reserve = %#x, %d, %q, %v", start, n, why, err)
	}
	x := make([]byte, 8<<20)
	at := uintptr(unsafe.Pointer(unsafe.SliceData(x)))
	if at < start || at+uintptr(len(x)) > start+uintptr(n) {
		t.Fatalf("an 8 MiB allocation at %#x, outside the advised %#x+%d", at, start, n)
	}
	for i := 0; i < len(x); i += 4096 {
		x[i] = 1
	}
	maps, err := Smaps(0)
	if err != nil {
		t.Fatal(err)
	}
	var m *Mapping
	for i := range maps {
		if maps[i].Start <= at && at < maps[i].End {
			m = &maps[i]
		}
	}
	switch {
	case m == nil:
		t.Fatalf("no mapping holds %#x in /proc/self/smaps", at)
	case !m.Advised:
		t.Errorf("the mapping holding the allocation is not advised for huge pages: %+v", *m)
	case m.AnonHugeKB == 0:
		t.Errorf("AnonHugePages: 0 kB in the mapping holding 8 MiB touched: %+v", *m)
	}
	if x[len(x)-4096] != 1 {
		t.Fatal("lost a write") // keeps x alive
	}
}
