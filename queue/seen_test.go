package queue

import (
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
	"time"
)

// seenKeys returns n keys (MsgID form), the i-th from counter i.
func seenKeys(from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		var p [8]byte
		binary.LittleEndian.PutUint64(p[:], uint64(i))
		if i > from {
			b.WriteByte(' ')
		}
		b.WriteString(MsgID("chunk", "app", p[:]))
	}
	return b.String()
}

// BenchmarkSeenMemory feeds the index a fleet's keys (2,000 chunks a
// second, 20 to a batch message) for six minutes of stored time and reports
// the most heap it held, per key of a duplicate window (2 minutes).
//
//	go test -run '^$' -bench SeenMemory ./queue/
func BenchmarkSeenMemory(b *testing.B) {
	const (
		window     = 2 * time.Minute
		perSecond  = 2000
		perMessage = 20
	)
	for b.Loop() {
		s := newSeenIndex(window)
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		base, peak := ms.HeapAlloc, uint64(0)
		t0 := time.Unix(1_700_000_000, 0)
		seq := uint64(0)
		for i := 0; i < 6*60*perSecond; i += perMessage {
			seq++
			s.addKeys(seq, t0.Add(time.Duration(i)*time.Second/perSecond), seenKeys(i, perMessage))
			if i%(10*perSecond) == 0 {
				runtime.GC()
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc-base)
			}
		}
		b.ReportMetric(float64(peak)/(perSecond*window.Seconds()), "B/key-in-window")
		b.ReportMetric(float64(peak)/(1<<20), "MiB-peak")
	}
}
