package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

// Replicas sharing a JetStream know each other (issue 18, point 1): each
// lists every replica in /v1/status with its connections, and counts them
// in sluice_cluster_replicas. A replica killed without a word drops out
// once its announcement is older than the TTL; one that shuts down leaves
// at once.
func TestReplicasKnowEachOther(t *testing.T) {
	skipShort(t, "starts sluice processes")
	srv := repStartNATS(t)
	out := t.TempDir()
	const cluster = "cluster: {announce_interval: 200ms, ttl: 2s}\n"
	a := repStartReplica(t, "ma", srv.ClientURL(), out, cluster)
	b := repStartReplica(t, "mb", srv.ClientURL(), out, cluster)
	c := repStartReplica(t, "mc", srv.ClientURL(), out, cluster)

	// Two forwarders on b, one chunk each so that they are surely open.
	for i := range 2 {
		conn, err := forwardtest.Dial(b.forward)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		id := fmt.Sprint("m", i)
		if _, err := conn.Write(forwardtest.Packed("app", forwardtest.Entry(time.Now(), map[string]any{"log": "x"}), forwardtest.Options{Chunk: id})); err != nil {
			t.Fatal(err)
		}
		if got, err := conn.ReadAck(10 * time.Second); err != nil || got != id {
			t.Fatalf("ack %q, %v", got, err)
		}
	}

	ids := map[*repProc]string{}
	for _, p := range []*repProc{a, b, c} {
		st := membersWait(t, p, "three replicas", func(st *api.Status) bool { return len(st.Replicas) == 3 })
		ids[p] = st.Replica
	}
	st := membersWait(t, a, "b's two connections", func(st *api.Status) bool {
		r, ok := membersFind(st, ids[b])
		return ok && r.ForwardConnections == 2
	})
	if r, _ := membersFind(st, ids[c]); r.ForwardConnections != 0 || r.Draining {
		t.Errorf("c announced %+v, want no connections, not draining", r)
	}
	if got := membersMetric(t, a, "sluice_cluster_replicas"); got != 3 {
		t.Errorf("sluice_cluster_replicas %v on a, want 3", got)
	}

	// c dies without a word: it drops out after the TTL.
	killed := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	membersWait(t, a, "c gone after its TTL", func(st *api.Status) bool {
		_, ok := membersFind(st, ids[c])
		return !ok && len(st.Replicas) == 2
	})
	t.Logf("a killed replica dropped out after %v (ttl 2s)", time.Since(killed).Round(10*time.Millisecond))

	// b shuts down: it leaves at once, well within the TTL.
	stopped := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-b.done
	membersWait(t, a, "b gone after it shut down", func(st *api.Status) bool {
		return len(st.Replicas) == 1 && st.Replicas[0].ID == ids[a]
	})
	t.Logf("a replica that shut down dropped out %v after SIGTERM", time.Since(stopped).Round(10*time.Millisecond))
	if got := membersMetric(t, a, "sluice_cluster_replicas"); got != 1 {
		t.Errorf("sluice_cluster_replicas %v on a, want 1", got)
	}
}

// membersWait polls p's /v1/status (up to 15 s) until ok holds.
func membersWait(t *testing.T, p *repProc, what string, ok func(*api.Status) bool) *api.Status {
	t.Helper()
	var st api.Status
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + p.api + "/v1/status")
		if err == nil {
			st = api.Status{}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && ok(&st) {
				return &st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s: no %s within 15 s; last status %+v (%v)", p.name, what, st.Replicas, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func membersFind(st *api.Status, id string) (api.ReplicaStatus, bool) {
	for _, r := range st.Replicas {
		if r.ID == id {
			return r, true
		}
	}
	return api.ReplicaStatus{}, false
}

// membersMetric sums the series of name with labels on p's /metrics.
func membersMetric(t *testing.T, p *repProc, name string, labels ...string) float64 {
	t.Helper()
	c, err := api.NewClient("http://"+p.api, "", "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Series(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Sum(name, labels...)
}
