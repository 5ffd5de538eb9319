package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/cmd/sluice/app"
	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/internal/jscluster"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks/file"
)

// TestClusterLosesANode runs sluice against a 3-node JetStream cluster with
// a stream of 3 replicas and shuts down the node that leads the stream and
// the sink's consumer and holds sluice's NATS connection, while chunks are
// being sent: every chunk must still be acknowledged, and every acknowledged
// record must reach the file sink. An in-process server steps its raft
// leaders down as it shuts down (a clean handoff, as in a rolling restart);
// TestClusterNodeCrashes covers the crash.
func TestClusterLosesANode(t *testing.T) {
	skipShort(t, "starts a 3-node JetStream cluster")
	servers := clStartCluster(t, 3)
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	clNodeLoss(t, urls, true, func(name string) {
		for _, s := range servers {
			if s.Name() == name {
				s.Shutdown()
				s.WaitForShutdown()
				return
			}
		}
		t.Fatalf("no server is named %q", name)
	})
}

// TestClusterNodeCrashes is TestClusterLosesANode with the nodes in child
// processes and the leader killed with SIGKILL: no stepdown, the survivors
// elect new leaders only after their election timeout. The lost node holds
// sluice's NATS connection (sluice reconnects and republishes) or not (the
// sink's pull requests waited on the dead consumer leader).
func TestClusterNodeCrashes(t *testing.T) {
	skipShort(t, "starts a 3-node JetStream cluster")
	for _, tc := range []struct {
		name   string
		onConn bool
	}{
		{"leader_holds_sluice_connection", true},
		{"leader_elsewhere", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			procs, urls := clStartClusterProcs(t, 3)
			clNodeLoss(t, urls, tc.onConn, func(name string) {
				p, ok := procs[name]
				if !ok {
					t.Fatalf("no node process is named %q", name)
				}
				if err := p.Process.Kill(); err != nil {
					t.Fatalf("kill %s: %v", name, err)
				}
				_ = p.Wait()
			})
		})
	}
}

// clNodeLoss starts sluice on the cluster at urls (stream replicas 3), moves
// the stream and consumer leaders to the node sluice is connected to (onConn)
// or to another one, sends chunks with acks, calls stop with that node's
// name after the first few, keeps sending, and checks that every
// acknowledged record reaches the file sink.
func clNodeLoss(t *testing.T, urls []string, onConn bool, stop func(name string)) {
	testStart := time.Now()
	out := t.TempDir()
	cfg := &config.Config{}
	cfg.NATS.URL = strings.Join(urls, ",")
	cfg.NATS.Stream.Replicas = 3
	// Both streams reserve their MaxBytes on every replica: stay within each
	// server's JetStreamMaxStore.
	cfg.NATS.Stream.MaxBytes = 256 << 20
	cfg.NATS.DeadLetter.MaxBytes = 64 << 20
	cfg.Forward.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.OTLP.HTTP.Listen, cfg.OTLP.GRPC.Listen = "127.0.0.1:0", "127.0.0.1:0"
	off := false
	cfg.Enrich.Enabled = &off
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Sinks = []config.SinkConfig{{Name: "file", File: &file.Config{Path: out}, AckWait: 2 * time.Second}}
	cfg.ShutdownTimeout = 20 * time.Second
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	adminNC, adminJS := clAdmin(t, urls)
	logs := &clLogBuffer{}
	a := clStartApp(t, cfg, logs)
	appDown := false
	defer func() {
		if !appDown {
			a.Kill()
		}
		if t.Failed() {
			t.Logf("sluice warnings and errors (last 60):\n%s", logs.tail(60))
		}
	}()
	js := a.Queue().JetStream()
	stream, consumer := a.Queue().StreamName(), queue.ConsumerName("file")
	t.Logf("cluster up and sluice started after %v", time.Since(testStart).Round(time.Millisecond))

	// The node to lose leads the stream (publishes stall until a new leader
	// is elected) and the sink's consumer (pulls are lost with it).
	connected := js.Conn().ConnectedServerName()
	victim, role := connected, "sluice's NATS connection"
	if !onConn {
		for _, u := range urls {
			if name := clServerName(t, u); name != connected {
				victim, role = name, "not sluice's NATS connection ("+connected+")"
				break
			}
		}
	}
	clMoveLeaders(t, adminNC, adminJS, stream, consumer, victim)

	c, err := forwardtest.Dial(a.ForwardAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const (
		chunks    = 40
		per       = 100
		killAfter = 15
	)
	var (
		stoppedAt  time.Time
		maxAckWait time.Duration
		maxAckAt   int
		sent       int // records acknowledged: seq 0..sent-1
	)
	sendStart := time.Now()
	for i := 0; i < chunks; i++ {
		if i == killAfter {
			t.Logf("stopping %s: stream leader, consumer leader, %s", victim, role)
			stop(victim)
			stoppedAt = time.Now()
		}
		id := fmt.Sprintf("cl-chunk-%03d", i)
		start := time.Now()
		if err := c.SendAck(clPackedChunk("kube.app", i*per, per, id), id, 60*time.Second); err != nil {
			t.Fatalf("chunk %d (%s) was not acknowledged (%d records acknowledged before it): %v", i, id, sent, err)
		}
		if d := time.Since(start); d > maxAckWait {
			maxAckWait, maxAckAt = d, i
		}
		sent += per
	}
	t.Logf("%d chunks (%d records) acknowledged in %v; slowest ack %v (chunk %d, the first after the stop is %d); the last ack came %v after the stop",
		chunks, sent, time.Since(sendStart).Round(time.Millisecond), maxAckWait.Round(time.Millisecond), maxAckAt, killAfter,
		time.Since(stoppedAt).Round(time.Millisecond))
	t.Logf("sluice logged %d warnings or errors; the last ones:\n%s", logs.lines(), logs.tail(6))

	drainStart := time.Now()
	waitSettled(t, js, stream, consumer, 90*time.Second)
	t.Logf("sink consumer drained %v after the last ack (%v after the stop)",
		time.Since(drainStart).Round(time.Millisecond), time.Since(stoppedAt).Round(time.Millisecond))

	redeliveries := clRedeliveries(t, a.Registry())

	// Shut down gracefully so the file sink has flushed and closed its file.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = a.Shutdown(ctx)
	cancel()
	appDown = true
	if err != nil {
		t.Errorf("shutdown: %v", err)
	}

	got := filetest.Seqs(t, filetest.Lines(t, out))
	var missing []int
	dups, extra := 0, 0
	for i := 0; i < sent; i++ {
		switch n := got[i]; {
		case n == 0:
			missing = append(missing, i)
		case n > 1:
			dups++
			extra += n - 1
		}
	}
	for s := range got {
		if s < 0 || s >= sent {
			t.Errorf("record with unexpected seq %d in the sink", s)
		}
	}
	t.Logf("redeliveries: %s", redeliveries)
	if dups > 0 {
		// One replica writes each record once: a message whose ack was lost
		// in the leader change comes back and is acknowledged again, not
		// written (docs/PRODUCTION.md).
		t.Errorf("%d records delivered more than once (%d extra lines) by one sluice replica", dups, extra)
	} else {
		t.Logf("no duplicates")
	}
	if len(missing) > 0 {
		t.Fatalf("acknowledged records lost: %d of %d, e.g. %v", len(missing), sent, filetest.Head(missing))
	}
	t.Logf("all %d acknowledged records in the sink; took %v", sent, time.Since(testStart).Round(time.Millisecond))
}

// clRedeliveries reads sluice_sink_redeliveries_total by outcome.
func clRedeliveries(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "sluice_sink_redeliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					out = append(out, fmt.Sprintf("%s %v", l.GetValue(), m.GetCounter().GetValue()))
				}
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// clMoveLeaders makes target lead the stream and the sink's consumer, using
// the stepdown API with a preferred placement, and waits until it does.
func clMoveLeaders(t *testing.T, nc *nats.Conn, js jetstream.JetStream, stream, consumer, target string) {
	t.Helper()
	req := []byte(`{"placement":{"preferred":"` + target + `"}}`)
	leaderOf := func(ctx context.Context, isStream bool) (string, error) {
		var ci *jetstream.ClusterInfo
		if isStream {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				return "", err
			}
			ci = s.CachedInfo().Cluster
		} else {
			c, err := js.Consumer(ctx, stream, consumer)
			if err != nil {
				return "", err
			}
			ci = c.CachedInfo().Cluster
		}
		if ci == nil {
			return "", errors.New("no cluster info")
		}
		return ci.Leader, nil
	}
	for _, isStream := range []bool{true, false} {
		subject := "$JS.API.STREAM.LEADER.STEPDOWN." + stream
		if !isStream {
			subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + stream + "." + consumer
		}
		deadline := time.Now().Add(20 * time.Second)
		var last string
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			leader, err := leaderOf(ctx, isStream)
			if err == nil && leader == target {
				cancel()
				break
			}
			if err != nil {
				last = err.Error()
			} else {
				last = "leader " + leader
				if m, err := nc.RequestWithContext(ctx, subject, req); err != nil {
					last = err.Error()
				} else if !bytes.Contains(m.Data, []byte(`"success":true`)) {
					last = string(m.Data)
				}
			}
			cancel()
			if time.Now().After(deadline) {
				t.Fatalf("could not move the leader of %s to %s: %s", subject, target, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// clServerName returns the name of the server at url.
func clServerName(t *testing.T, url string) string {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	return nc.ConnectedServerName()
}

// clAdmin connects a test client to the cluster and waits until JetStream
// answers (a meta leader exists).
func clAdmin(t *testing.T, urls []string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return nc, js
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster does not answer within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clNodes describes n nodes on free loopback ports routed to each other.
func clNodes(t *testing.T, n int, clientPorts bool) []jscluster.Node {
	t.Helper()
	nodes, err := jscluster.Nodes(n, t.TempDir(), 1<<30, clientPorts)
	if err != nil {
		t.Fatal(err)
	}
	return nodes
}

// clStartCluster starts n clustered JetStream servers in this process and
// waits until they have a meta leader that knows every peer. They are shut
// down when the test ends.
func clStartCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	servers, err := jscluster.Start(ctx, clNodes(t, n, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jscluster.Stop(servers) })
	return servers
}

// clNodeEnv carries a helper process's node description.
const clNodeEnv = "SLUICE_E2E_CLUSTER_NODE"

// clStartClusterProcs starts n clustered JetStream servers, each in a child
// process running TestClHelperNATSNode, and waits until each takes client
// connections. It returns the processes by server name and the client URLs.
// Remaining processes are killed when the test ends.
func clStartClusterProcs(t *testing.T, n int) (map[string]*exec.Cmd, []string) {
	t.Helper()
	procs := map[string]*exec.Cmd{}
	var urls []string
	for _, node := range clNodes(t, n, true) {
		desc, err := json.Marshal(node)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestClHelperNATSNode$", "-test.timeout=5m")
		// SLUICE_E2E_BIN: a TestMain in this package may build the sluice
		// binary unless given one; the node process needs none, so it is
		// handed any existing file rather than build again.
		cmd.Env = append(os.Environ(), clNodeEnv+"="+string(desc), "SLUICE_E2E_BIN="+os.Args[0])
		var stderr clLogBuffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			if t.Failed() {
				t.Logf("node %s output:\n%s", node.Name, stderr.tail(20))
			}
		})
		procs[node.Name] = cmd
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", node.ClientPort))
	}
	for _, u := range urls {
		addr := strings.TrimPrefix(u, "nats://")
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node at %s does not take connections within 30s: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return procs, urls
}

// TestClHelperNATSNode is not a test: run by clStartClusterProcs in a child
// process, it runs one cluster node until the process is killed (or its
// parent is gone).
func TestClHelperNATSNode(t *testing.T) {
	desc := os.Getenv(clNodeEnv)
	if desc == "" {
		t.Skip("helper process for TestClusterNodeCrashes")
	}
	var node jscluster.Node
	if err := json.Unmarshal([]byte(desc), &node); err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(node.Options())
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("not ready within 30s")
	}
	parent := os.Getppid()
	for os.Getppid() == parent {
		time.Sleep(200 * time.Millisecond)
	}
	s.Shutdown()
}

// clStartApp starts sluice, retrying for a while: right after the cluster
// formed, creating a replicated stream can still fail.
func clStartApp(t *testing.T, cfg *config.Config, logs *clLogBuffer) *app.App {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for {
		a := app.New(cfg, component.Settings{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := a.Start(ctx)
		cancel()
		if err == nil {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice did not start against the cluster: %v", err)
		}
		if err.Error() != last {
			t.Logf("starting sluice: %v; retrying", err)
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitSettled waits until the sink's consumer has acknowledged everything
// stored (queue.WaitSettled, which retries while the consumer has no
// leader).
func waitSettled(t *testing.T, js jetstream.JetStream, stream, consumer string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := queue.WaitSettled(ctx, js, stream, consumer); err != nil {
		t.Fatalf("within %v: %v", timeout, err)
	}
}

// clPackedChunk is a PackedForward chunk of n records with seq first..first+n-1.
func clPackedChunk(tag string, first, n int, id string) []byte {
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	var payload []byte
	for i := first; i < first+n; i++ {
		payload = append(payload, forwardtest.Entry(t0.Add(time.Duration(i)*time.Millisecond),
			map[string]any{"seq": i, "log": fmt.Sprintf("cluster line %d %s", i, strings.Repeat("x", 100))})...)
	}
	return forwardtest.Packed(tag, payload, forwardtest.Options{Chunk: id, Size: n})
}

// clLogBuffer collects sluice's log lines; it outlives the test safely.
type clLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *clLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *clLogBuffer) lines() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Count(b.buf.Bytes(), []byte{'\n'})
}

// tail returns the last n lines.
func (b *clLogBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(strings.TrimRight(b.buf.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestClusterPullGetsEveryMessage pulls a replicated consumer the way a sink
// does, many messages at a time with a byte bound. A replicated consumer
// sends each message once its delivery is replicated but says the pull is
// over at once; every message must still arrive with its pull or the next,
// none only when AckWait brings it back.
func TestClusterPullGetsEveryMessage(t *testing.T) {
	skipShort(t, "starts a 3-node JetStream cluster")
	servers := clStartCluster(t, 3)
	cfg := queue.Config{URL: servers[0].ClientURL()}
	cfg.Stream.Replicas = 3
	// Both streams reserve their MaxBytes on every replica: stay within each
	// server's JetStreamMaxStore.
	cfg.Stream.MaxBytes = 256 << 20
	cfg.DeadLetter.MaxBytes = 64 << 20
	cfg.Stream.Compression = queue.CompressionNone
	cfg.SetDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, cfg, component.Settings{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// A minute of AckWait: nothing lost can come back within the test.
	cons, err := q.Consumer(ctx, "s", queue.ConsumerConfig{AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	p, err := q.NewPuller(cons)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	const total = 600
	entries := forwardtest.Entry(time.Now(), map[string]any{"log": strings.Repeat("x", 20000)})
	for i := 0; i < total; i++ {
		// Right after the stream is created its leader may still be being
		// elected: retry, as ingest does (the chunk id deduplicates).
		for {
			pend, err := q.Publish(&chunk.Chunk{Tag: "app", ID: fmt.Sprint("c", i), Count: 1, Entries: entries})
			if err == nil {
				err = pend.Wait(ctx)
			}
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("chunk %d not stored: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	seen := make(map[uint64]bool, total)
	redelivered := 0
	for len(seen) < total && ctx.Err() == nil {
		_, err := p.Pull(ctx, 64, 32<<20, func(m jetstream.Msg) {
			md, err := m.Metadata()
			if err != nil {
				t.Error(err)
				return
			}
			if md.NumDelivered > 1 {
				redelivered++
			}
			seen[md.Sequence.Stream] = true
			_ = m.Ack()
		})
		if err != nil && ctx.Err() == nil {
			t.Logf("pull: %v", err)
		}
	}
	if len(seen) != total || redelivered != 0 {
		t.Fatalf("%d of %d messages pulled within the minute of AckWait, %d redelivered", len(seen), total, redelivered)
	}
	if err := queue.WaitSettled(ctx, q.JetStream(), q.StreamName(), queue.ConsumerName("s")); err != nil {
		t.Fatal(err)
	}
}
