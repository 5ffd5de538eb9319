package hugepages

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// After Reserve, a large allocation lands in the advised range and the
// kernel backs it with huge pages.
func TestReserveBacksTheHeapWithHugePages(t *testing.T) {
	mode, _ := os.ReadFile(modeFile)
	if selected(string(mode)) != "madvise" {
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
	flags, huge, err := mapping(at)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flags, " hg") {
		t.Errorf("the mapping holding the allocation is not advised for huge pages: VmFlags:%s", flags)
	}
	if huge == 0 {
		t.Errorf("AnonHugePages: 0 kB in the mapping holding 8 MiB touched")
	}
	if x[len(x)-4096] != 1 {
		t.Fatal("lost a write") // keeps x alive
	}
}

// mapping reads /proc/self/smaps for the mapping holding addr: its VmFlags
// and its AnonHugePages in kB.
func mapping(addr uintptr) (flags string, hugeKB int64, err error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			if in {
				break
			}
			in = lo <= addr && addr < hi
			continue
		}
		if !in {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "AnonHugePages:"); ok {
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &hugeKB)
		}
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			flags = rest + " "
		}
	}
	if err := sc.Err(); err != nil {
		return "", 0, err
	}
	if flags == "" {
		return "", 0, fmt.Errorf("no mapping holds %#x in /proc/self/smaps", addr)
	}
	return flags, hugeKB, nil
}
