package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluicelog/sluice/internal/hugepages"
)

// sluice advises its heap for huge pages on its defaults, and leaves it
// alone with huge_pages: false: the start-up log and the mappings that
// /proc/<pid>/smaps shows advised.
func TestHeapAdvisedForHugePages(t *testing.T) {
	skipShort(t, "starts sluice processes")
	if hugepages.Mode() != "madvise" {
		t.Skip("transparent huge pages are not in madvise mode on this machine")
	}
	srv := repStartNATS(t)
	on := repStartReplica(t, "hp-on", srv.ClientURL(), t.TempDir())
	off := repStartReplica(t, "hp-off", srv.ClientURL(), t.TempDir(), "huge_pages: false\n")
	logged := hpLogged(on)
	if logged < 64<<20 {
		t.Fatalf("on its defaults sluice logged %d bytes advised for huge pages, want at least 64 MiB:\n%s", logged, on.logs.tail(40))
	}
	if n := hpLogged(off); n != 0 {
		t.Errorf("with huge_pages: false sluice logged %d bytes advised", n)
	}
	// The runtime advises some of its own metadata: compare the two.
	onAdvised, offAdvised := hpAdvised(t, on), hpAdvised(t, off)
	if onAdvised-offAdvised < logged {
		t.Errorf("advised mappings: %d bytes on the defaults, %d with huge_pages: false; want %d more", onAdvised, offAdvised, logged)
	}
}

// hpLogged returns the bytes of the "heap advised for huge pages" line of
// p's log, 0 without one.
func hpLogged(p *repProc) int64 {
	for _, line := range strings.Split(p.logs.tail(2000), "\n") {
		var rec struct {
			Msg   string `json:"msg"`
			Bytes int64  `json:"bytes"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "heap advised for huge pages" {
			return rec.Bytes
		}
	}
	return 0
}

// hpAdvised sums the sizes of p's mappings advised MADV_HUGEPAGE.
func hpAdvised(t *testing.T, p *repProc) int64 {
	t.Helper()
	maps, err := hugepages.Smaps(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, m := range maps {
		if m.Advised {
			n += int64(m.End - m.Start)
		}
	}
	return n
}
