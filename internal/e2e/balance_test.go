package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/loadtest"
)

// A replica's connections spread over replicas that start later (issue 18,
// points 2 and 3): twelve forwarders connect through a round-robin balancer
// while one replica runs; two more start, and balancing moves connections
// until each holds about a third; one then gets SIGTERM and its forwarders
// move to the other two. The forwarders behave like Fluent Bit's: a chunk
// not acknowledged is sent again on a new connection. Every acknowledged
// record is in the sink once.
func TestBalanceSpreadsConnections(t *testing.T) {
	skipShort(t, "starts sluice processes")
	srv := repStartNATS(t)
	out := t.TempDir()
	const cluster = "cluster: {announce_interval: 200ms, ttl: 2s, balance: {interval: 1s}}\n"
	lb, err := loadtest.NewBalancer()
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	a := repStartReplica(t, "ba", srv.ClientURL(), out, cluster)
	lb.Set(a.forward)

	const forwarders, perChunk = 12, 5
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var acked, reconnects atomic.Int64
	for f := range forwarders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn *forwardtest.Conn
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for n := 0; ctx.Err() == nil; {
				if conn == nil {
					c, err := forwardtest.Dial(lb.Addr())
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					conn = c
				}
				var p []byte
				for k := range perChunk {
					p = append(p, forwardtest.Entry(time.Now(), map[string]any{"seq": f*1_000_000 + n*perChunk + k, "log": "balanced"})...)
				}
				id := fmt.Sprintf("f%d-%d", f, n)
				_, err := conn.Write(forwardtest.Packed("app", p, forwardtest.Options{Chunk: id}))
				var got string
				if err == nil {
					got, err = conn.ReadAck(10 * time.Second)
				}
				if err != nil || got != id {
					// Closed (shed, a replica stopping): send it again elsewhere.
					conn.Close()
					conn = nil
					reconnects.Add(1)
					continue
				}
				acked.Add(perChunk)
				n++
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}

	conns := func(p *repProc) int {
		st := membersWait(t, p, "a status", func(*api.Status) bool { return true })
		return st.Listeners[0].Connections
	}
	membersWait(t, a, "twelve connections", func(st *api.Status) bool { return st.Listeners[0].Connections == forwarders })

	b := repStartReplica(t, "bb", srv.ClientURL(), out, cluster)
	c := repStartReplica(t, "bc", srv.ClientURL(), out, cluster)
	lb.Set(a.forward, b.forward, c.forward)
	started := time.Now()
	deadline := started.Add(30 * time.Second)
	within1 := false
	for {
		na, nb, nc := conns(a), conns(b), conns(c)
		if !within1 && abs(na-4) <= 1 && abs(nb-4) <= 1 && abs(nc-4) <= 1 {
			within1 = true
			t.Logf("balanced within one, %d/%d/%d, after %v", na, nb, nc, time.Since(started).Round(100*time.Millisecond))
		}
		if na == 4 && nb == 4 && nc == 4 {
			t.Logf("balanced 4/4/4 after %v", time.Since(started).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			if !within1 {
				t.Fatalf("not balanced within 30 s: %d/%d/%d", na, nb, nc)
			}
			t.Logf("still %d/%d/%d after 30 s", na, nb, nc)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Each replica's share of the records over the next 3 s.
	ingested := func(p *repProc) float64 {
		return membersMetric(t, p, "sluice_ingest_records_total", `listener="forward"`)
	}
	before := []float64{ingested(a), ingested(b), ingested(c)}
	time.Sleep(3 * time.Second)
	after := []float64{ingested(a), ingested(b), ingested(c)}
	var sum float64
	for i := range after {
		sum += after[i] - before[i]
	}
	t.Logf("shares of the records over 3 s: %.0f%% / %.0f%% / %.0f%% (connections %d/%d/%d)",
		100*(after[0]-before[0])/sum, 100*(after[1]-before[1])/sum, 100*(after[2]-before[2])/sum, conns(a), conns(b), conns(c))
	for i, p := range []*repProc{a, b, c} {
		if share := (after[i] - before[i]) / sum; share < 0.8/3 || share > 1.2/3 {
			t.Errorf("replica %s took %.0f%% of the records, not within 20%% of a third", p.name, 100*share)
		}
	}

	// Scale-in: c stops; its forwarders move to a and b.
	lb.Set(a.forward, b.forward)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-c.done
	membersWait(t, a, "c's forwarders on a and b", func(st *api.Status) bool {
		return st.Listeners[0].Connections+conns(b) == forwarders
	})
	cancel()
	wg.Wait()
	t.Logf("%d records acknowledged, %d reconnects", acked.Load(), reconnects.Load())

	// Every acknowledged record once: the sink consumer drains, then the
	// files of all three replicas hold each acknowledged seq exactly once
	// (a chunk sent again after a close is deduplicated by its id).
	js := repJetStream(t, srv.ClientURL())
	waitSettled(t, js, repStream, repConsumer, 30*time.Second)
	seen := map[int]int{}
	for _, p := range []string{"rep-ba", "rep-bb", "rep-bc"} {
		seqs, _ := repReadLines(t, out, p)
		for _, s := range seqs {
			seen[s]++
		}
	}
	total, dups := 0, 0
	for _, n := range seen {
		total++
		dups += n - 1
	}
	if dups != 0 {
		t.Errorf("%d records written more than once", dups)
	}
	if int64(total) < acked.Load() {
		t.Errorf("%d distinct records in the sink, %d acknowledged: some lost", total, acked.Load())
	}
	if errors.Is(ctx.Err(), context.Canceled) && acked.Load() == 0 {
		t.Error("nothing was acknowledged")
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
