package queue

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seenKeys returns n keys (MsgID form), the i-th of chunk id i and
// entries i.
func seenKeys(from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		if i > from {
			b.WriteByte(' ')
		}
		b.WriteString(seenKey1(strconv.Itoa(i), i))
	}
	return b.String()
}

// seenKey1 is the key of a chunk with id and entries i.
func seenKey1(id string, i int) string {
	var p [8]byte
	binary.LittleEndian.PutUint64(p[:], uint64(i))
	return MsgID(id, "app", p[:])
}

// The index keeps every key of the last two windows, in whichever
// generation it came (the one taking keys, or the sorted ones before it),
// and drops a generation once all of it is older: a sink up to a window
// behind the index still tells resends.
func TestSeenGenerations(t *testing.T) {
	const window = 40 * time.Second
	s := newSeenIndex(window)
	t0 := time.Unix(1_700_000_000, 0)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 100 * time.Millisecond) } // ten messages a second
	// 200 s of messages of ten keys each: five windows, twenty generations.
	const n = 2000
	for i := 0; i < n; i++ {
		s.addKeys(uint64(i+1), at(i), seenKeys(10*i, 10))
		if len(s.gens) > keyRetention*seenGens+2 {
			t.Fatalf("%d generations at message %d, want at most %d", len(s.gens), i, keyRetention*seenGens+2)
		}
	}
	s.addKeys(n+1, at(n), "") // the index read up to n+1
	for _, lag := range []time.Duration{0, window / 2, window} {
		// A resend in a message stored lag before the newest, found when
		// its first copy came at most a window before that message.
		asked := at(n).Add(-lag)
		for i := 0; i < n; i++ {
			if at(i).After(asked) {
				break
			}
			key := seenKey1(strconv.Itoa(10*i+3), 10*i+3)
			dup, err := s.Earlier(context.Background(), key, n+1, asked)
			want := asked.Sub(at(i)) <= window
			if err != nil || dup != want {
				t.Fatalf("lag %v, key of message %d (%v before the message asking): resend %v %v, want %v", lag, i, asked.Sub(at(i)), dup, err, want)
			}
		}
	}
	kept := 0
	for _, g := range s.gens {
		kept += len(g.keys) + len(g.sorted)
	}
	perWindow := 10 * int(window/(100*time.Millisecond))
	if kept < keyRetention*perWindow || kept > keyRetention*perWindow+perWindow/seenGens+10 {
		t.Errorf("%d keys kept, want two windows' (%d) and at most a generation more", kept, keyRetention*perWindow)
	}
}

// Chunk ids repeat (a forwarder restarted, or one that numbers its chunks
// from zero): keys that share their first half are each found, and one
// that differs in its second half only is not.
func TestSeenSharedChunkIDs(t *testing.T) {
	s := newSeenIndex(time.Minute)
	t0 := time.Unix(1_700_000_000, 0)
	for i := 0; i < 300; i++ {
		s.addKeys(uint64(i+1), t0.Add(time.Duration(i)*100*time.Millisecond), seenKey1("same", i)+" "+seenKey1("same", 1000+i))
	}
	newest := t0.Add(300 * 100 * time.Millisecond)
	s.addKeys(301, newest, "")
	if len(s.gens) < 3 || len(s.gens[1].sorted) == 0 {
		t.Fatalf("generations %d: the test needs sorted ones", len(s.gens))
	}
	for i := 0; i < 300; i++ {
		for _, j := range []int{i, 1000 + i} {
			if dup, _ := s.Earlier(context.Background(), seenKey1("same", j), 301, newest); !dup {
				t.Fatalf("key %d of the shared chunk id not found", j)
			}
		}
	}
	if dup, _ := s.Earlier(context.Background(), seenKey1("same", 5000), 301, newest); dup {
		t.Error("a key never added found")
	}
}

// A closed generation finds each of its keys with where it came, those
// that share the exclusive or of their halves with another too, and no
// other key, at every size around its buckets' edges.
func TestSortedGeneration(t *testing.T) {
	key := func(hi, lo uint64) (k [16]byte) {
		binary.BigEndian.PutUint64(k[:8], hi)
		binary.BigEndian.PutUint64(k[8:], lo)
		return k
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 15, 16, 17, 1000, 4096} {
		keys := map[[16]byte]seenAt{}
		for i := 0; len(keys) < n; i++ {
			hi, lo := r.Uint64(), r.Uint64()
			keys[key(hi, lo)] = seenAt{seq: uint64(i + 1), stored: int64(i)}
			if i%3 == 0 && len(keys) < n {
				// Another key with the same exclusive or of its halves.
				hi2 := r.Uint64()
				keys[key(hi2, hi^lo^hi2)] = seenAt{seq: uint64(i + 1000000)}
			}
		}
		g := keyGen{}
		g.sorted, g.starts, g.shift = sortedGen(keys)
		for k, want := range keys {
			if at, ok := g.find(k); !ok || at != want {
				t.Fatalf("%d keys: %x gave %+v %v, want %+v", n, k, at, ok, want)
			}
			// The same exclusive or, another key.
			hi := binary.BigEndian.Uint64(k[:8])
			lo := binary.BigEndian.Uint64(k[8:])
			if _, ok := keys[key(hi+1, lo^1)]; !ok {
				if at, ok := g.find(key(hi+1, lo^1)); ok {
					t.Fatalf("%d keys: a key never added found (%+v)", n, at)
				}
			}
		}
		for i := 0; i < 2000; i++ {
			k := key(r.Uint64(), r.Uint64())
			if _, in := keys[k]; !in {
				if _, ok := g.find(k); ok {
					t.Fatalf("%d keys: %x found, never added", n, k)
				}
			}
		}
	}
}

// BenchmarkSeenMemory feeds the index a fleet's keys (2,000 chunks a
// second, 20 to a batch message) for six minutes of stored time and reports
// the most heap it held, per key of a duplicate window (2 minutes): sampled
// every 10 s of stored time, before and after its first message, so also
// just before and after each switch of generations (the map being closed
// and its sorted copy exist together for the moment of the switch).
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
		sample := func() {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc-base)
		}
		for i := 0; i < 6*60*perSecond; i += perMessage {
			seq++
			if i%(10*perSecond) == 0 {
				sample()
			}
			s.addKeys(seq, t0.Add(time.Duration(i)*time.Second/perSecond), seenKeys(i, perMessage))
			if i%(10*perSecond) == 0 {
				sample()
			}
		}
		b.ReportMetric(float64(peak)/(perSecond*window.Seconds()), "B/key-in-window")
		b.ReportMetric(float64(peak)/(1<<20), "MiB-peak")
	}
}

// BenchmarkSeenEarlier asks the index of a fleet's keys about chunks that
// are not resends (every generation is searched).
//
//	go test -run '^$' -bench SeenEarlier ./queue/
func BenchmarkSeenEarlier(b *testing.B) {
	const perSecond = 2000
	s := newSeenIndex(2 * time.Minute)
	t0 := time.Unix(1_700_000_000, 0)
	n := 5 * 60 * perSecond
	for i := 0; i < n; i += 20 {
		s.addKeys(uint64(i/20+1), t0.Add(time.Duration(i)*time.Second/perSecond), seenKeys(i, 20))
	}
	keys := strings.Fields(seenKeys(n, 1024))
	newest := t0.Add(5 * time.Minute)
	last := s.last.Load()
	for i := 0; b.Loop(); i++ {
		if dup, _ := s.Earlier(context.Background(), keys[i%len(keys)], last, newest); dup {
			b.Fatal("a new key found")
		}
	}
}
