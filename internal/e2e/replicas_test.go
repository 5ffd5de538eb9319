package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicelog/sluice/internal/forwardtest"
)

const (
	repStream   = "LOGS"
	repConsumer = "sink_file"
	// repTotal records are sent in the main stream of traffic; the kill
	// comes once repKillAfter of them are acknowledged.
	repTotal     = 3000
	repKillAfter = 500 // per replica
	// repHardCap bounds the records drawn should the kill never come.
	repHardCap = 20 * repTotal
	// repDupBase is the first seq of the chunk sent to both replicas.
	repDupBase  = 1_000_000
	repDupCount = 10
)

// TestReplicasShareConsumerAndSurviveKill9 starts two sluice processes on one
// external JetStream, sends records with acknowledgements from a real Forward
// client to both, kills one with SIGKILL in the middle of the stream and
// expects every acknowledged record in the shared file sink directory. Both
// replicas must have written records (they share the sink's consumer), a
// chunk resent to the other replica with the same chunk id is stored once,
// and the surviving replica shuts down cleanly on SIGTERM.
func TestReplicasShareConsumerAndSurviveKill9(t *testing.T) {
	skipShort(t, "starts sluice processes")
	start := time.Now()
	srv := repStartNATS(t)
	out := t.TempDir()
	repA := repStartReplica(t, "a", srv.ClientURL(), out)
	repB := repStartReplica(t, "b", srv.ClientURL(), out)
	t.Logf("nats-server and two replicas up after %v (a: forward %s api %s; b: forward %s api %s)",
		time.Since(start).Round(time.Millisecond), repA.forward, repA.api, repB.forward, repB.api)

	js := repJetStream(t, srv.ClientURL())

	// Dedup across replicas: the same chunk (same id, same bytes) to A, then
	// to B, as a forwarder resends to another replica behind a Service after
	// a lost ack. Both acknowledge; JetStream stores it once. Done before the
	// main traffic so that the stream sequence tells.
	dupChunk := repDupChunk()
	last0 := repStreamLastSeq(t, js)
	for _, r := range []*repProc{repA, repB} {
		c, err := forwardtest.Dial(r.forward)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendAck(dupChunk, "dup-1", 10*time.Second); err != nil {
			t.Fatalf("chunk dup-1 to replica %s: %v", r.name, err)
		}
		c.Close()
	}
	if last := repStreamLastSeq(t, js); last != last0+1 {
		t.Fatalf("chunk dup-1 sent to both replicas: stream last sequence went %d -> %d, want one message stored", last0, last)
	}
	// Let it be written and acknowledged, so that the kill below cannot
	// cause a redelivery of it (which would be a legitimate duplicate).
	waitSettled(t, js, repStream, repConsumer, 30*time.Second)

	// Main traffic: one sender per replica with a real Forward client, with
	// acks. The sender of A moves on to B when a Post to A fails (the record
	// was not acknowledged, so it is resent).
	var (
		next    atomic.Int64
		killed  atomic.Bool
		mu      sync.Mutex
		acked   = map[int]string{} // seq -> who acknowledged it: a, b, or a->b (resent)
		ackedBy = map[string]int{}
	)
	mark := func(seq int, by string) {
		mu.Lock()
		acked[seq] = by
		ackedBy[by]++
		mu.Unlock()
	}
	counts := func() (a, b int) {
		mu.Lock()
		defer mu.Unlock()
		return ackedBy["a"], ackedBy["b"] + ackedBy["a->b"]
	}
	nextSeq := func() (int, bool) {
		s := int(next.Add(1) - 1)
		if (s >= repTotal && killed.Load()) || s >= repHardCap {
			return 0, false
		}
		return s, true
	}
	type sendResult struct {
		name      string
		err       error
		failedSeq int // first seq whose Post to A failed; -1 if none
		failErr   error
	}
	results := make(chan sendResult, 2)
	post := func(f *fluent.Fluent, seq int) error {
		return f.PostWithTime("rep.load", time.Now(), repRecord(seq))
	}
	go func() { // to B
		res := sendResult{name: "b", failedSeq: -1}
		defer func() { results <- res }()
		f, err := repFluent(repB.forward, 3)
		if err != nil {
			res.err = err
			return
		}
		defer f.Close()
		for {
			seq, ok := nextSeq()
			if !ok {
				return
			}
			if err := post(f, seq); err != nil {
				res.err = fmt.Errorf("post %d to b: %w", seq, err)
				return
			}
			mark(seq, "b")
		}
	}()
	go func() { // to A, then to B once A is gone
		res := sendResult{name: "a", failedSeq: -1}
		defer func() { results <- res }()
		fa, err := repFluent(repA.forward, 1)
		if err != nil {
			res.err = err
			return
		}
		defer fa.Close()
		var fb *fluent.Fluent
		defer func() {
			if fb != nil {
				fb.Close()
			}
		}()
		for {
			seq, ok := nextSeq()
			if !ok {
				return
			}
			if res.failedSeq < 0 {
				err := post(fa, seq)
				if err == nil {
					mark(seq, "a")
					continue
				}
				if !killed.Load() && !repA.exited() {
					res.err = fmt.Errorf("post %d to a while it runs: %w", seq, err)
					return
				}
				res.failedSeq, res.failErr = seq, err
			}
			if fb == nil {
				if fb, err = repFluent(repB.forward, 3); err != nil {
					res.err = err
					return
				}
			}
			if err := post(fb, seq); err != nil {
				res.err = fmt.Errorf("resend %d to b: %w", seq, err)
				return
			}
			mark(seq, "a->b")
		}
	}()

	// Kill A once both replicas took a share of the records and both have
	// written some to the sink: the consumer is shared.
	sendStart := time.Now()
	killDeadline := time.Now().Add(30 * time.Second)
	for {
		a, b := counts()
		if a >= repKillAfter && b >= repKillAfter && repFileBytes(out, "rep-a") > 0 && repFileBytes(out, "rep-b") > 0 {
			break
		}
		if time.Now().After(killDeadline) {
			killed.Store(true) // let the senders stop
			t.Fatalf("no point to kill within 30s: acked by a %d, by b %d; file bytes rep-a %d, rep-b %d",
				a, b, repFileBytes(out, "rep-a"), repFileBytes(out, "rep-b"))
		}
		time.Sleep(2 * time.Millisecond)
	}
	before, _ := repConsumerInfo(js)
	killed.Store(true) // first: from now on a failed Post to A is expected
	if err := repA.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 replica a: %v", err)
	}
	killAt := time.Now()
	select {
	case <-repA.done:
	case <-time.After(10 * time.Second):
		t.Fatal("replica a did not die within 10s of SIGKILL")
	}
	aAcked, bAcked := counts()
	aLines, aTorn := repReadLines(t, out, "rep-a")
	aWritten := repLoadLines(aLines)
	ackPending := -1
	if before != nil {
		ackPending = before.NumAckPending
	}
	t.Logf("kill -9 of replica a %v into the traffic: %d records acknowledged by a and %d by b so far; a's sink had written %d records (%d files end torn); consumer ack pending just before the kill: %d",
		killAt.Sub(sendStart).Round(time.Millisecond), aAcked, bAcked, aWritten, aTorn, ackPending)

	// Wait for both senders.
	for range 2 {
		select {
		case res := <-results:
			if res.err != nil {
				t.Errorf("sender %s: %v", res.name, res.err)
			}
			if res.name == "a" {
				if res.failedSeq < 0 {
					t.Errorf("sender a never saw replica a fail")
				} else {
					t.Logf("first Post to a that failed (resent to b): seq %d: %v", res.failedSeq, res.failErr)
				}
			}
		case <-time.After(60 * time.Second):
			t.Fatal("senders did not finish within 60s")
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	sendDone := time.Now()

	waitSettled(t, js, repStream, repConsumer, 60*time.Second)
	drained := time.Now()
	ci, err := repConsumerInfo(js)
	if err != nil {
		t.Fatal(err)
	}

	// Every acknowledged record is in the sink; duplicates are counted.
	linesA, _ := repReadLines(t, out, "rep-a")
	linesB, bTorn := repReadLines(t, out, "rep-b")
	if bTorn > 0 {
		t.Errorf("replica b, never killed, left %d files ending in a torn line", bTorn)
	}
	where := map[int]string{} // seq -> writers, one letter per line
	for _, l := range linesA {
		where[l] += "a"
	}
	for _, l := range linesB {
		where[l] += "b"
	}
	var missing, unexpected []int
	dupAB, dupBB, dupAA := 0, 0, 0
	for seq := range acked {
		w := where[seq]
		switch nA := strings.Count(w, "a"); {
		case w == "":
			missing = append(missing, seq)
		case len(w) == 1:
		case nA > 0 && nA < len(w):
			dupAB += len(w) - 1
		case nA == 0:
			dupBB += len(w) - 1
		default:
			dupAA += len(w) - 1
		}
	}
	dups := dupAB + dupBB + dupAA
	for seq := range where {
		if _, ok := acked[seq]; !ok && (seq < repDupBase || seq >= repDupBase+repDupCount) {
			unexpected = append(unexpected, seq)
		}
	}
	sort.Ints(missing)
	sort.Ints(unexpected)
	if len(missing) > 0 {
		t.Errorf("acknowledged records missing from the sink: %d of %d, e.g. %v", len(missing), len(acked), repHead(missing))
	}
	if len(unexpected) > 0 {
		// A record whose Post failed is resent and then acknowledged; a seq
		// that was never sent cannot be in the sink.
		t.Errorf("records in the sink that were never acknowledged: %d, e.g. %v", len(unexpected), repHead(unexpected))
	}
	for i := repDupBase; i < repDupBase+repDupCount; i++ {
		if n := len(where[i]); n != 1 {
			t.Errorf("record %d of chunk dup-1 (sent to both replicas) is in the sink %d times, want once", i, n)
		}
	}
	if repLoadLines(linesA) == 0 || repLoadLines(linesB) == 0 {
		t.Errorf("work not spread over the replicas: a wrote %d lines, b %d", repLoadLines(linesA), repLoadLines(linesB))
	}
	t.Logf("%d duplicates of %d records after kill -9 (copies by a and b: %d, both by b: %d, both by a: %d); acknowledged by a %d, by b %d, resent to b after a failed %d",
		dups, len(acked), dupAB, dupBB, dupAA, ackedBy["a"], ackedBy["b"], ackedBy["a->b"])
	t.Logf("lines written: a %d (before it died), b %d; JetStream consumer: %d deliveries of %d messages (%d redeliveries)",
		repLoadLines(linesA), repLoadLines(linesB), ci.Delivered.Consumer, ci.Delivered.Stream, ci.Delivered.Consumer-ci.Delivered.Stream)
	t.Logf("timings: sending %v, drained %v after the last ack (ack_wait 2s), %v in all",
		sendDone.Sub(sendStart).Round(time.Millisecond), drained.Sub(sendDone).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// The survivor stops in order on SIGTERM and exits 0.
	stopStart := time.Now()
	if err := repB.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to replica b: %v", err)
	}
	select {
	case <-repB.done:
		if code := repB.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("replica b exited with %d after SIGTERM, want 0 (%v)", code, repB.waitErr)
		} else {
			t.Logf("replica b stopped on SIGTERM in %v", time.Since(stopStart).Round(time.Millisecond))
		}
	case <-time.After(30 * time.Second):
		t.Errorf("replica b did not exit within 30s of SIGTERM")
	}
}

// repStartNATS starts an external-to-sluice nats-server with JetStream in the
// test process, on a loopback port.
func repStartNATS(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		t.Fatal("nats-server not ready within 30s")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// repJetStream connects to the nats-server at url for the test's own
// look at the streams.
func repJetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	_, js := clAdmin(t, []string{url})
	return js
}

// repProc is one sluice process.
type repProc struct {
	name    string
	cmd     *exec.Cmd
	logs    *repLogs
	done    chan struct{} // closed once the process was reaped
	waitErr error         // set before done is closed
	forward string        // bound Forward address
	api     string        // bound API address
}

func (p *repProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// repStartReplica writes the configuration of replica name, starts sluice on
// it and waits until it listens and /readyz answers 200. forward holds more
// lines of the forward block (indented by two spaces), or, unindented, more
// top-level keys.
func repStartReplica(t *testing.T, name, natsURL, out string, forward ...string) *repProc {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`log:
  level: info
  format: json
nats:
  url: %q
forward:
  listen: "127.0.0.1:0"
  udp_heartbeat: false
%shttp:
  listen: "127.0.0.1:0"
otlp:
  http: {listen: "127.0.0.1:0"}
  grpc: {listen: "127.0.0.1:0"}
enrich:
  enabled: false
api:
  listen: "127.0.0.1:0"
sinks:
  - name: file
    file:
      path: %q
      prefix: %q
    ack_wait: 2s
shutdown_timeout: 20s
`, natsURL, strings.Join(forward, ""), out, "rep-"+name)
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &repProc{name: name, logs: &repLogs{addrs: make(chan struct{}, 2)}, done: make(chan struct{})}
	p.cmd = exec.Command(sluiceBin, "-config", path)
	p.cmd.Dir = dir
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start replica %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("replica %s (pid %d) not reaped within 10s of SIGKILL", name, p.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("replica %s log (last 40 lines):\n%s", name, p.logs.tail(40))
		}
	})

	deadline := time.After(30 * time.Second)
	for p.forward == "" || p.api == "" {
		select {
		case <-p.logs.addrs:
			p.forward, p.api = p.logs.listeners()
		case <-p.done:
			t.Fatalf("replica %s exited during start-up (%v):\n%s", name, p.waitErr, p.logs.tail(40))
		case <-deadline:
			t.Fatalf("replica %s: no listener addresses logged within 30s:\n%s", name, p.logs.tail(40))
		}
	}
	client := &http.Client{Timeout: 2 * time.Second}
	ready := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + p.api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(ready) || p.exited() {
			t.Fatalf("replica %s: /readyz not 200 within 30s (last: %v):\n%s", name, repStatus(resp, err), p.logs.tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func repStatus(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// repLogs collects a process's output and picks the bound listener
// addresses out of its JSON log lines.
type repLogs struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	forward string
	api     string
	addrs   chan struct{} // a token per address found
}

func (l *repLogs) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, line)
		if len(l.lines) > 2000 {
			l.lines = l.lines[len(l.lines)-1000:]
		}
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Addr == "" {
			continue
		}
		switch rec.Msg {
		case "forward listener started":
			l.forward = rec.Addr
		case "api listener started":
			l.api = rec.Addr
		default:
			continue
		}
		select {
		case l.addrs <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

func (l *repLogs) listeners() (forward, api string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.forward, l.api
}

func (l *repLogs) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + string(l.partial)
}

// repFluent connects a fluent-logger client with acks to addr. maxRetry 1
// makes a Post to a dead server fail at once.
func repFluent(addr string, maxRetry int) (*fluent.Fluent, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	return fluent.New(fluent.Config{
		FluentHost:         host,
		FluentPort:         p,
		RequestAck:         true,
		SubSecondPrecision: true,
		Timeout:            5 * time.Second,
		WriteTimeout:       5 * time.Second,
		ReadTimeout:        20 * time.Second,
		MaxRetry:           maxRetry,
		RetryWait:          50,
		MaxRetryWait:       500,
	})
}

func repRecord(seq int) map[string]any {
	return map[string]any{"seq": seq, "log": fmt.Sprintf("record %d %s", seq, strings.Repeat("x", 400)), "stream": "stdout"}
}

func repDupChunk() []byte {
	var payload []byte
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for i := range repDupCount {
		payload = append(payload, forwardtest.Entry(t0.Add(time.Duration(i)), map[string]any{"seq": repDupBase + i, "log": "dup-1"})...)
	}
	return forwardtest.Packed("rep.dup", payload, forwardtest.Options{Chunk: "dup-1", Size: repDupCount})
}

func repStreamLastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, repStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func repConsumerInfo(js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, repStream, repConsumer)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// repFileBytes is the size of the files of one replica's prefix in dir.
func repFileBytes(dir, prefix string) int64 {
	files, _ := filepath.Glob(filepath.Join(dir, prefix+"-*.ndjson"))
	var n int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			n += st.Size()
		}
	}
	return n
}

// repReadLines returns the seq of every line in the files of one replica's
// prefix in dir, and how many files end in a torn line (no newline: a write
// cut short by SIGKILL), which are left out.
func repReadLines(t *testing.T, dir, prefix string) (seqs []int, torn int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, prefix+"-*.ndjson"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.LastIndexByte(b, '\n'); i < len(b)-1 {
			torn++
			t.Logf("%s ends in a torn line of %d bytes", filepath.Base(f), len(b)-1-i)
			b = b[:i+1]
		}
		for line := range bytes.Lines(b) {
			var m struct {
				Seq *int `json:"seq"`
			}
			if err := json.Unmarshal(line, &m); err != nil || m.Seq == nil {
				t.Fatalf("%s: bad line %q: %v", f, line, err)
			}
			seqs = append(seqs, *m.Seq)
		}
	}
	return seqs, torn
}

// repLoadLines counts the seqs of the main traffic, leaving out chunk dup-1.
func repLoadLines(seqs []int) int {
	n := 0
	for _, s := range seqs {
		if s < repDupBase {
			n++
		}
	}
	return n
}

func repHead(s []int) []int {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}
