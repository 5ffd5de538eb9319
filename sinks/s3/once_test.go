package s3

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/sinktest"
)

// flakyS3 stands in front of the fake S3. It holds the first uploads back
// (a server slow at first), and while down it drops every upload's
// connection unanswered (a server that is gone). Uploads are PUTs and POSTs
// of an object key (requests on the bucket alone pass).
type flakyS3 struct {
	next     http.Handler
	slow     atomic.Int32 // uploads still to hold back
	slowBy   time.Duration
	down     atomic.Bool
	dropped  atomic.Int32
	attempts atomic.Int32
}

func (f *flakyS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if upload := strings.Contains(strings.Trim(r.URL.Path, "/"), "/"); upload && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
		f.attempts.Add(1)
		if f.down.Load() {
			f.dropped.Add(1)
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		if f.slow.Add(-1) >= 0 {
			time.Sleep(f.slowBy)
		}
	}
	f.next.ServeHTTP(w, r)
}

// onceRun sends 100,000 records in chunks of 1,000 through the real runner
// and JetStream (ack wait 1s) into an S3 sink with large objects that are
// uploaded 0.7s after they open, 16 writes gathering in each, and returns how often
// each record is in the bucket.
func onceRun(t *testing.T, flaky *flakyS3, during func()) (*sinktest.Env, map[int]int) {
	t.Helper()
	f := newFakeS3With(t, func(h http.Handler) http.Handler { flaky.next = h; return flaky })
	s := f.sink(t, Config{UploadTimeout: 700 * time.Millisecond, TotalFileSize: 48 << 20, PartSize: 5 << 20})
	s.retryMin, s.retryMax = 100*time.Millisecond, 400*time.Millisecond
	env := sinktest.NewEnv(t)
	const chunks, per = 100, 1000
	pad := strings.Repeat("p", 120)
	for c := 0; c < chunks; c++ {
		recs := make([]map[string]any, per)
		for i := range recs {
			recs[i] = map[string]any{"n": c*per + i, "log": pad}
		}
		env.Publish("kube.app", recs...)
	}
	env.Run(s, func(c *sinks.RunnerConfig) {
		c.Concurrency, c.MaxRecords, c.AckWait, c.Linger = 16, per, time.Second, 5*time.Millisecond
	})
	if during != nil {
		during()
	}
	env.SettleWithin(3 * time.Minute)
	seen := map[int]int{}
	for _, lines := range f.objects(t) {
		for _, l := range lines {
			seen[int(l["n"].(float64))]++
		}
	}
	var lost, dups []string
	for n := 0; n < chunks*per; n++ {
		switch c := seen[n]; {
		case c == 0 && len(lost) < 5:
			lost = append(lost, fmt.Sprint(n))
		case c > 1 && len(dups) < 5:
			dups = append(dups, fmt.Sprintf("%d (%d times)", n, c))
		}
	}
	total := 0
	for _, c := range seen {
		total += c
	}
	info := env.Consumer()
	t.Logf("%d lines for %d records; %d messages redelivered; redeliveries joined %v, skipped %v, written %v; %d upload attempts",
		total, chunks*per, info.NumRedelivered, env.Counter("sluice_sink_redeliveries_total", "outcome", "joined"),
		env.Counter("sluice_sink_redeliveries_total", "outcome", "skipped"), env.Counter("sluice_sink_redeliveries_total", "outcome", "written"),
		flaky.attempts.Load())
	if len(lost) > 0 || len(dups) > 0 || total != chunks*per || len(seen) != chunks*per {
		t.Fatalf("%d lines for %d records: lost e.g. %v, duplicated e.g. %v", total, chunks*per, lost, dups)
	}
	if got := env.Counter("sluice_sink_records_total", "outcome", "delivered"); got != chunks*per {
		t.Errorf("delivered counter %v, want %d", got, chunks*per)
	}
	if got := env.Counter("sluice_sink_redeliveries_total", "outcome", "written"); got != 0 {
		t.Errorf("%v redelivered messages written again", got)
	}
	return env, seen
}

// Many writes wait on one large object while the first uploads are slow:
// what waits (fetched messages, batches, writes) is kept alive, and every
// record is stored once. Before the fix, messages that waited in the pull
// buffer past the ack wait came back and were written a second time.
func TestEachRecordOnceWhileUploadsAreSlow(t *testing.T) {
	flaky := &flakyS3{slowBy: 1600 * time.Millisecond}
	flaky.slow.Store(3)
	onceRun(t, flaky, nil)
	if flaky.slow.Load() >= 0 {
		t.Fatalf("only %d uploads were held back", 3-flaky.slow.Load())
	}
}

// The S3 server is gone for a while, then back: each failed upload is
// retried as the same object under the same key, and every record is stored
// once.
func TestEachRecordOnceWhenS3IsDownForAWhile(t *testing.T) {
	flaky := &flakyS3{}
	flaky.down.Store(true)
	env, _ := onceRun(t, flaky, func() {
		deadline := time.Now().Add(30 * time.Second)
		for flaky.dropped.Load() < 6 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(1500 * time.Millisecond) // past the ack wait, with uploads failing
		flaky.down.Store(false)
	})
	if n := flaky.dropped.Load(); n < 6 {
		t.Fatalf("only %d uploads failed while S3 was down", n)
	}
	_ = env
}
