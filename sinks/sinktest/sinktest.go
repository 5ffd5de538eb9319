// Package sinktest is the conformance suite every sink passes: it runs the
// sink behind the real Runner, fed from a real (embedded) JetStream, and
// injects faults around it: batch limits, whole-batch failures, partial
// failures, throttling, permanent errors with dead letters and their replay,
// a retry limit, and at-least-once delivery across a restart.
//
// A sink's test supplies a Harness: a fresh destination per scenario, a way
// to open the sink on it (again, for the restart) and a way to read back the
// "n" field of every record the destination holds.
//
// A destination with age rules (CloudWatch Logs' 14 days, a retention window)
// is either an in-process fake with a pinned clock or a real server fed
// records stamped near time.Now; see package forwardtest for the rule.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks"
)

// Destination is one place a sink writes to.
type Destination interface {
	// NewSink opens a sink on the destination; a second call is a restart.
	NewSink(t *testing.T) sinks.Sink
	// Delivered returns the "n" field of every record at the destination,
	// duplicates included.
	Delivered(t *testing.T) []int
}

// Harness returns a fresh destination for one scenario.
type Harness func(t *testing.T) Destination

// Run runs every scenario against the harness.
func Run(t *testing.T, h Harness) {
	t.Run("BatchLimits", func(t *testing.T) { batchLimits(t, h(t)) })
	t.Run("FailThenSucceed", func(t *testing.T) { failThenSucceed(t, h(t)) })
	t.Run("PartialFailure", func(t *testing.T) { partialFailure(t, h(t)) })
	t.Run("Throttling", func(t *testing.T) { throttling(t, h(t)) })
	t.Run("PermanentThenReplay", func(t *testing.T) { permanentThenReplay(t, h(t)) })
	t.Run("RetryLimit", func(t *testing.T) { retryLimit(t, h(t)) })
	t.Run("AtLeastOnceAcrossRestart", func(t *testing.T) { acrossRestart(t, h(t)) })
	t.Run("LongWriteIsNotRedelivered", func(t *testing.T) { longWrite(t, h(t)) })
	t.Run("RedeliveryInFlightJoins", func(t *testing.T) { redeliveryJoins(t, h(t)) })
}

// env is a queue with one sink consumer and the records published to it.
type env struct {
	t    *testing.T
	q    *queue.Queue
	reg  *prometheus.Registry
	sent []int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cfg := queue.Config{}
	cfg.Embedded.StoreDir = t.TempDir()
	cfg.SetDefaults()
	q, err := queue.Open(context.Background(), cfg, component.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	e := &env{t: t, q: q}
	if _, err := q.Consumer(context.Background(), "conf", queue.ConsumerConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	return e
}

// publish stores chunks of per records, numbered on from the last.
func (e *env) publish(tag string, chunks, per int) {
	e.t.Helper()
	for c := 0; c < chunks; c++ {
		var p []byte
		for i := 0; i < per; i++ {
			n := len(e.sent)
			e.sent = append(e.sent, n)
			p = append(p, forwardtest.Entry(time.Unix(1795332892, int64(n)), map[string]any{"n": n, "pad": strings.Repeat("x", 50+n%50)})...)
		}
		pend, err := e.q.Publish(&chunk.Chunk{Tag: tag, Count: per, Entries: p})
		if err != nil {
			e.t.Fatal(err)
		}
		if err := pend.Wait(context.Background()); err != nil {
			e.t.Fatal(err)
		}
	}
}

// runner starts a runner for the sink with fast retries.
func (e *env) runner(s sinks.Sink, edit func(*sinks.RunnerConfig)) *sinks.Runner {
	e.t.Helper()
	cons, err := e.q.Consumer(context.Background(), "conf", queue.ConsumerConfig{AckWait: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := sinks.RunnerConfig{MaxRecords: 50, Linger: time.Millisecond, BackoffMin: time.Millisecond,
		BackoffMax: 20 * time.Millisecond, AckWait: time.Second, Concurrency: 2}
	if edit != nil {
		edit(&cfg)
	}
	e.reg = prometheus.NewRegistry()
	pull, err := e.q.NewPuller(cons)
	if err != nil {
		e.t.Fatal(err)
	}
	r := sinks.NewRunner("conf", s, pull, e.q, cfg, component.Settings{Registerer: e.reg})
	if err := r.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx)
	})
	return r
}

// settle waits until the consumer has acknowledged everything stored
// (queue.Settled).
func (e *env) settle() { e.settleWithin(30 * time.Second) }

func (e *env) settleWithin(d time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := queue.WaitSettled(ctx, e.q.JetStream(), e.q.StreamName(), queue.ConsumerName("conf")); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) count(name, label, value string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// deadLetters returns the n of each dead letter of the sink.
func (e *env) deadLetters() []int {
	e.t.Helper()
	dls, err := e.q.DeadLetters(context.Background(), "conf", 0, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []int
	for _, d := range dls {
		en, _, err := chunk.ReadEntry(d.Entry, 0)
		if err != nil {
			e.t.Fatalf("dead letter %d holds no entry: %v", d.StoredSeq, err)
		}
		out = append(out, recordN(e.t, en.Record))
		if d.Sink != "conf" || d.Err == "" || d.Attempts < 1 || d.Seq == 0 {
			e.t.Fatalf("dead letter without its sink, error, attempts or origin: %+v", d)
		}
	}
	slices.Sort(out)
	return out
}

func recordN(t testing.TB, rec []byte) int {
	var m struct {
		N int `msgpack:"n"`
	}
	if err := msgpack.Unmarshal(rec, &m); err != nil {
		t.Fatal(err)
	}
	return m.N
}

// waitDelivered polls until the destination holds every wanted n.
func waitDelivered(t *testing.T, d Destination, want []int) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := d.Delivered(t)
		if containsAll(got, want) || time.Now().After(deadline) {
			slices.Sort(got)
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func containsAll(got, want []int) bool {
	have := map[int]bool{}
	for _, n := range got {
		have[n] = true
	}
	for _, n := range want {
		if !have[n] {
			return false
		}
	}
	return true
}

func exactly(t *testing.T, got, want []int) {
	t.Helper()
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %d records, want exactly %d once each (first differences: %v)", len(got), len(want), diff(got, want))
	}
}

func diff(got, want []int) string {
	g, w := map[int]int{}, map[int]int{}
	for _, n := range got {
		g[n]++
	}
	for _, n := range want {
		w[n]++
	}
	var out []string
	for n, c := range g {
		if w[n] != c && len(out) < 5 {
			out = append(out, fmt.Sprintf("n=%d got %d want %d", n, c, w[n]))
		}
	}
	for n, c := range w {
		if g[n] == 0 && len(out) < 10 {
			out = append(out, fmt.Sprintf("n=%d got 0 want %d", n, c))
		}
	}
	return strings.Join(out, ", ")
}

func except(all []int, drop func(int) bool) []int {
	var out []int
	for _, n := range all {
		if !drop(n) {
			out = append(out, n)
		}
	}
	return out
}

// faulty wraps a sink and injects faults before it.
type faulty struct {
	inner sinks.Sink
	t     *testing.T

	mu            sync.Mutex
	failFirst     int              // whole-batch retryable failures
	throttleFirst int              // whole-batch throttles
	throttleDelay time.Duration    // asked for by a throttle
	permanent     func(n int) bool // records failed permanently
	flakyOnce     func(n int) bool // records failed once, retryably
	always        func(n int) bool // records failed retryably every time
	hold          chan struct{}    // when set, writes wait for it
	slowFirst     time.Duration    // the first write takes this long
	flaked        map[int]bool     // flakyOnce records already failed
	batches       [][]int          // n of each batch written through
	ids           map[int][]string // record ids seen for each n
	limits        sinks.Limits     // reported as the sink's Limits
	sizes         []int            // bytes of each batch given
	writes        int              // calls to Write
}

func (f *faulty) Limits() sinks.Limits { return f.limits }

func (f *faulty) Write(ctx context.Context, recs []sinks.Record) error {
	f.mu.Lock()
	f.writes++
	size := 0
	ns := make([]int, len(recs))
	for i := range recs {
		ns[i] = recordN(f.t, recs[i].Record)
		size += recs[i].Size()
		if f.ids == nil {
			f.ids = map[int][]string{}
		}
		f.ids[ns[i]] = append(f.ids[ns[i]], recs[i].ID())
	}
	f.sizes = append(f.sizes, size)
	if f.hold != nil {
		f.mu.Unlock()
		select {
		case <-f.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
		f.mu.Lock()
	}
	if d := f.slowFirst; d > 0 {
		f.slowFirst = 0
		f.mu.Unlock()
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		f.mu.Lock()
	}
	if f.failFirst > 0 {
		f.failFirst--
		f.mu.Unlock()
		return errors.New("injected: destination unavailable")
	}
	if f.throttleFirst > 0 {
		f.throttleFirst--
		f.mu.Unlock()
		return sinks.Throttled(errors.New("injected: slow down"), f.throttleDelay)
	}
	failed := map[int]error{}
	var pass []sinks.Record
	var passIdx []int
	for i, n := range ns {
		switch {
		case f.permanent != nil && f.permanent(n):
			failed[i] = sinks.Permanent(fmt.Errorf("injected: record %d rejected", n))
		case f.always != nil && f.always(n):
			failed[i] = fmt.Errorf("injected: record %d keeps failing", n)
		case f.flakyOnce != nil && f.flakyOnce(n) && !f.flaked[n]:
			if f.flaked == nil {
				f.flaked = map[int]bool{}
			}
			f.flaked[n] = true
			failed[i] = fmt.Errorf("injected: record %d failed once", n)
		default:
			pass = append(pass, recs[i])
			passIdx = append(passIdx, i)
		}
	}
	f.mu.Unlock()
	if len(pass) > 0 {
		err := f.inner.Write(ctx, pass)
		var pe *sinks.PartialError
		switch {
		case errors.As(err, &pe):
			for i, e := range pe.Failed {
				failed[passIdx[i]] = e
			}
		case err != nil:
			return err
		}
		f.mu.Lock()
		var written []int
		for j, i := range passIdx {
			if _, bad := failed[i]; !bad {
				written = append(written, ns[passIdx[j]])
			}
		}
		f.batches = append(f.batches, written)
		f.mu.Unlock()
	}
	if len(failed) > 0 {
		return &sinks.PartialError{Failed: failed}
	}
	return nil
}

func (f *faulty) Close(ctx context.Context) error { return f.inner.Close(ctx) }

func batchLimits(t *testing.T, d Destination) {
	e := newEnv(t)
	f := &faulty{inner: d.NewSink(t), t: t, limits: sinks.Limits{MaxRecords: 7, MaxBytes: 700}}
	e.runner(f, nil)
	e.publish("t", 5, 40)
	waitDelivered(t, d, e.sent)
	e.settle()
	exactly(t, d.Delivered(t), e.sent)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, b := range f.batches {
		if len(b) > 7 || f.sizes[i] > 700 {
			t.Fatalf("batch %d: %d records, %d bytes; the sink's limits are 7 and 700", i, len(b), f.sizes[i])
		}
	}
}

func failThenSucceed(t *testing.T, d Destination) {
	e := newEnv(t)
	f := &faulty{inner: d.NewSink(t), t: t, failFirst: 3}
	e.runner(f, func(c *sinks.RunnerConfig) { c.Concurrency = 1; c.MaxRecords = 1000 })
	e.publish("t", 1, 30)
	waitDelivered(t, d, e.sent)
	e.settle()
	exactly(t, d.Delivered(t), e.sent)
	if got := e.count("sluice_sink_write_errors_total", "kind", "retry"); got != 3 {
		t.Errorf("retry errors %v, want 3", got)
	}
	if got := e.count("sluice_sink_records_retried_total", "", ""); got != 90 {
		t.Errorf("records retried %v, want 3 x 30", got)
	}
	if got := e.count("sluice_sink_records_total", "outcome", "delivered"); got != 30 {
		t.Errorf("delivered %v, want 30", got)
	}
	if got := e.count("sluice_sink_records_total", "outcome", "dead"); got != 0 {
		t.Errorf("dead %v, want 0", got)
	}
	// Each acknowledged message's time from storage to ack is observed; it
	// includes the three failed attempts' backoff. The runner counts an
	// ack once the server has it, so a settled stream may come first.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, sum := e.histogram("sluice_sink_delivery_seconds")
		acked := e.count("sluice_sink_messages_acked_total", "", "")
		if acked > 0 && float64(n) == acked && sum > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("delivery latency: %d observations summing to %vs for %v acked messages", n, sum, acked)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// histogram returns a histogram's sample count and sum.
func (e *env) histogram(name string) (uint64, float64) {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	return 0, 0
}

func partialFailure(t *testing.T, d Destination) {
	e := newEnv(t)
	flaky := func(n int) bool { return n%10 == 3 }
	perm := func(n int) bool { return n%10 == 7 }
	f := &faulty{inner: d.NewSink(t), t: t, flakyOnce: flaky, permanent: perm}
	e.runner(f, nil)
	e.publish("t", 4, 50)
	want := except(e.sent, perm)
	waitDelivered(t, d, want)
	e.settle()
	exactly(t, d.Delivered(t), want)
	var dead []int
	for _, n := range e.sent {
		if perm(n) {
			dead = append(dead, n)
		}
	}
	if got := e.deadLetters(); !slices.Equal(got, dead) {
		t.Fatalf("dead letters %v, want %v", got, dead)
	}
	nFlaky := len(e.sent) - len(except(e.sent, flaky))
	if got := e.count("sluice_sink_records_retried_total", "", ""); got != float64(nFlaky) {
		t.Errorf("records retried %v, want %d (only the flaky ones)", got, nFlaky)
	}
	if got := e.count("sluice_sink_records_total", "outcome", "dead"); got != float64(len(dead)) {
		t.Errorf("dead %v, want %d", got, len(dead))
	}
	if got := e.count("sluice_sink_records_total", "outcome", "delivered"); got != float64(len(want)) {
		t.Errorf("delivered %v, want %d", got, len(want))
	}
}

func throttling(t *testing.T, d Destination) {
	e := newEnv(t)
	f := &faulty{inner: d.NewSink(t), t: t, throttleFirst: 2, throttleDelay: 30 * time.Millisecond}
	e.runner(f, func(c *sinks.RunnerConfig) { c.Concurrency = 1; c.MaxRecords = 1000 })
	e.publish("t", 1, 20)
	waitDelivered(t, d, e.sent)
	e.settle()
	exactly(t, d.Delivered(t), e.sent)
	if got := e.count("sluice_sink_write_errors_total", "kind", "throttle"); got != 2 {
		t.Errorf("throttles %v, want 2", got)
	}
	if got := e.count("sluice_sink_records_total", "outcome", "dead"); got != 0 {
		t.Errorf("throttled records died: %v", got)
	}
}

func permanentThenReplay(t *testing.T, d Destination) {
	e := newEnv(t)
	bad := func(n int) bool { return n < 15 }
	f := &faulty{inner: d.NewSink(t), t: t, permanent: bad}
	r := e.runner(f, nil)
	e.publish("t", 3, 10)
	want := except(e.sent, bad)
	waitDelivered(t, d, want)
	e.settle()
	exactly(t, d.Delivered(t), want)
	if got := e.deadLetters(); len(got) != 15 {
		t.Fatalf("%d dead letters, want 15", len(got))
	}
	// The destination is fixed: replay the dead letters.
	f.mu.Lock()
	f.permanent = nil
	f.mu.Unlock()
	n, err := r.ReplayDeadLetters(context.Background(), e.q, 1000)
	if err != nil || n != 15 {
		t.Fatalf("replayed %d, %v; want 15", n, err)
	}
	exactly(t, d.Delivered(t), e.sent)
	if got := e.deadLetters(); len(got) != 0 {
		t.Fatalf("%d dead letters left after replay", len(got))
	}
	// A replayed record keeps its id.
	f.mu.Lock()
	defer f.mu.Unlock()
	for n := 0; n < 15; n++ {
		if ids := f.ids[n]; len(ids) < 2 || ids[0] != ids[len(ids)-1] {
			t.Fatalf("record %d had ids %v", n, ids)
		}
	}
}

func retryLimit(t *testing.T, d Destination) {
	e := newEnv(t)
	stuck := func(n int) bool { return n == 5 }
	f := &faulty{inner: d.NewSink(t), t: t, always: stuck}
	e.runner(f, func(c *sinks.RunnerConfig) { c.MaxAttempts = 3 })
	e.publish("t", 1, 10)
	want := except(e.sent, stuck)
	waitDelivered(t, d, want)
	e.settle()
	exactly(t, d.Delivered(t), want)
	dls, err := e.q.DeadLetters(context.Background(), "conf", 0, 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %v, %v", dls, err)
	}
	if dls[0].Attempts != 3 || !strings.Contains(dls[0].Err, "gave up after 3 attempts") {
		t.Fatalf("dead letter %+v, want 3 attempts", dls[0])
	}
}

func acrossRestart(t *testing.T, d Destination) {
	e := newEnv(t)
	held := &faulty{inner: d.NewSink(t), t: t, hold: make(chan struct{})}
	r := e.runner(held, nil)
	e.publish("t", 3, 20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		held.mu.Lock()
		n := len(held.ids)
		held.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sink was never given records")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Stop as a crash would: nothing written, nothing acknowledged.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = r.Shutdown(ctx)
	if got := d.Delivered(t); len(got) != 0 {
		t.Fatalf("%d records written by a sink that was held", len(got))
	}
	f := &faulty{inner: d.NewSink(t), t: t}
	e.runner(f, nil)
	waitDelivered(t, d, e.sent)
	e.settle()
	exactly(t, d.Delivered(t), e.sent)
	// Redelivered records keep their ids.
	held.mu.Lock()
	defer held.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	for n, ids := range held.ids {
		if got := f.ids[n]; len(got) == 0 || got[0] != ids[0] {
			t.Fatalf("record %d: id %v before the restart, %v after", n, ids, got)
		}
	}
}

// longWrite takes 2.5 ack waits for one write: in-progress acks keep the
// message from being redelivered meanwhile.
func longWrite(t *testing.T, d Destination) {
	e := oneLongWrite(t, d, time.Second)
	if got := e.count("sluice_sink_in_progress_acks_total", "", ""); got < 1 {
		t.Errorf("no in-progress ack during a write of 2.5 ack waits")
	}
	if n := e.consumerInfo().NumRedelivered; n != 0 {
		t.Errorf("%d messages redelivered", n)
	}
}

// redeliveryJoins starves the message of in-progress acks (the runner
// believes the ack wait is a minute, JetStream's is a second) during a write
// of 2.5s: JetStream delivers it again while it is in flight, and the
// redeliveries join it instead of being written.
func redeliveryJoins(t *testing.T, d Destination) {
	e := oneLongWrite(t, d, time.Minute)
	if got := e.count("sluice_sink_redeliveries_total", "outcome", "joined"); got < 1 {
		t.Errorf("%v redeliveries joined, want at least 1 (JetStream redelivers after a second)", got)
	}
	if got := e.count("sluice_sink_redeliveries_total", "outcome", "written"); got != 0 {
		t.Errorf("%v redeliveries written", got)
	}
}

// oneLongWrite sends one message of 10 records whose first write takes 2.5s
// to a runner that believes the ack wait is ackWait (JetStream's is a
// second), and checks that the records were written once, in one write.
func oneLongWrite(t *testing.T, d Destination, ackWait time.Duration) *env {
	e := newEnv(t)
	f := &faulty{inner: d.NewSink(t), t: t, slowFirst: 2500 * time.Millisecond}
	e.runner(f, func(c *sinks.RunnerConfig) { c.Concurrency = 1; c.MaxRecords = 1000; c.AckWait = ackWait })
	e.publish("t", 1, 10)
	waitDelivered(t, d, e.sent)
	e.settle()
	exactly(t, d.Delivered(t), e.sent)
	f.mu.Lock()
	writes := f.writes
	f.mu.Unlock()
	if writes != 1 {
		t.Errorf("%d writes, want 1: the message was written again during the long write", writes)
	}
	return e
}

// consumerInfo returns the sink consumer's state.
func (e *env) consumerInfo() *jetstream.ConsumerInfo {
	e.t.Helper()
	c, err := e.q.JetStream().Consumer(context.Background(), e.q.StreamName(), queue.ConsumerName("conf"))
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// Env is a queue with one sink consumer, for a sink's own tests through the
// real runner: publish records, run the sink, wait until everything is
// settled, then read the runner's counters and the dead letters.
type Env struct{ e *env }

// NewEnv opens an embedded queue with the consumer "conf".
func NewEnv(t *testing.T) *Env { return &Env{newEnv(t)} }

// Publish stores the records, one chunk with the tag.
func (E *Env) Publish(tag string, records ...map[string]any) {
	E.e.t.Helper()
	var p []byte
	for i, r := range records {
		p = append(p, forwardtest.Entry(time.Unix(1795332892, int64(i)), r)...)
	}
	pend, err := E.e.q.Publish(&chunk.Chunk{Tag: tag, Count: len(records), Entries: p})
	if err != nil {
		E.e.t.Fatal(err)
	}
	if err := pend.Wait(context.Background()); err != nil {
		E.e.t.Fatal(err)
	}
}

// Run starts a runner for the sink with fast retries (edit may change its
// configuration); it is shut down when the test ends.
func (E *Env) Run(s sinks.Sink, edit func(*sinks.RunnerConfig)) *sinks.Runner {
	return E.e.runner(s, edit)
}

// Settle waits until every published record is acknowledged.
func (E *Env) Settle() { E.e.settle() }

// SettleWithin is Settle with a deadline other than 30s.
func (E *Env) SettleWithin(d time.Duration) {
	E.e.t.Helper()
	E.e.settleWithin(d)
}

// Consumer returns the sink consumer's state.
func (E *Env) Consumer() *jetstream.ConsumerInfo {
	E.e.t.Helper()
	return E.e.consumerInfo()
}

// Counter sums the runner's counter name over the series with label=value
// (all series when label is "").
func (E *Env) Counter(name, label, value string) float64 { return E.e.count(name, label, value) }

// DeadLetters returns the sink's dead letters.
func (E *Env) DeadLetters() []queue.DeadLetter {
	E.e.t.Helper()
	dls, err := E.e.q.DeadLetters(context.Background(), "conf", 0, 100000)
	if err != nil {
		E.e.t.Fatal(err)
	}
	return dls
}
