package loadtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/internal/jscluster"
)

// ClusterFigures are what the cluster scenario measures beside the usual
// row: how balancing spread the forwarders.
type ClusterFigures struct {
	// Balanced is how long after two replicas joined the first one the
	// connections were 4/4/4 (zero: not within the wait).
	Balanced time.Duration
	// Shares are the replicas' shares of the records over the 5 s after.
	Shares [3]float64
	// Shed counts the connections the replicas closed to balance.
	Shed int
	// Moved is how long the stopped replica's forwarders took to land on
	// the other two.
	Moved time.Duration
}

// clusterForwarders is the scenario's forwarders: four per replica.
const clusterForwarders = 12

// benchCluster runs the cluster scenario: one external nats-server, sluice
// replicas as processes behind a round-robin TCP balancer, forwarders that
// resend unacknowledged chunks after a reconnect (Config.Resend). Twelve
// connect while one replica runs; two more start; then one gets SIGTERM.
// Balancing runs every second here (5 s by default), so that the scenario
// takes seconds, not minutes.
func benchCluster(ctx context.Context, sluice string, sc Scenario, o BenchOptions) (BenchRow, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-cluster-")
	if err != nil {
		return BenchRow{}, err
	}
	defer os.RemoveAll(dir)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(dir, "nats"), NoLog: true, NoSigs: true})
	if err != nil {
		return BenchRow{}, err
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return BenchRow{}, fmt.Errorf("nats-server did not start")
	}
	out := filepath.Join(dir, "out")
	lb, err := NewBalancer()
	if err != nil {
		return BenchRow{}, err
	}
	defer lb.Close()
	var reps []*clusterReplica
	defer func() {
		for _, r := range reps {
			r.srv.stop()
		}
	}()
	start := func(name string) (*clusterReplica, error) {
		r, err := startClusterReplica(ctx, sluice, filepath.Join(dir, name), ns.ClientURL(), out, name)
		if err == nil {
			reps = append(reps, r)
		}
		return r, err
	}
	a, err := start("a")
	if err != nil {
		return BenchRow{}, err
	}
	lb.Set(a.srv.forward)

	c := sc.Config
	c.Addr = lb.Addr()
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := Run(ctx, c, o.Progress)
		done <- result{rep, err}
	}()
	if err := waitFor(func() bool { return a.conns() == clusterForwarders }, 15*time.Second); err != nil {
		return BenchRow{}, fmt.Errorf("the forwarders did not connect: %w", err)
	}
	b, err := start("b")
	if err != nil {
		return BenchRow{}, err
	}
	cr, err := start("c")
	if err != nil {
		return BenchRow{}, err
	}
	lb.Set(a.srv.forward, b.srv.forward, cr.srv.forward)
	var fig ClusterFigures
	joined := time.Now()
	if waitFor(func() bool { return a.conns() == 4 && b.conns() == 4 && cr.conns() == 4 }, 30*time.Second) == nil {
		fig.Balanced = time.Since(joined)
	}
	before := []float64{a.ingested(), b.ingested(), cr.ingested()}
	time.Sleep(5 * time.Second)
	after := []float64{a.ingested(), b.ingested(), cr.ingested()}
	var sum float64
	for i := range after {
		sum += after[i] - before[i]
	}
	for i := range after {
		if sum > 0 {
			fig.Shares[i] = (after[i] - before[i]) / sum
		}
	}
	fig.Shed = int(cr.metric("sluice_ingest_connections_shed_total", `listener="forward"`, `reason="balance"`))
	// The stopped replica's failed publishes, up to its stop.
	var pub BenchRow
	if err := pub.readPublishErrors(ctx, cr.srv.metrics); err != nil {
		return BenchRow{}, err
	}
	lb.Set(a.srv.forward, b.srv.forward)
	stopped := time.Now()
	_ = cr.srv.cmd.Process.Signal(syscall.SIGTERM)
	if waitFor(func() bool { return a.conns()+b.conns() == clusterForwarders }, 30*time.Second) == nil {
		fig.Moved = time.Since(stopped)
	}
	res := <-done
	if res.err != nil {
		return BenchRow{}, res.err
	}
	for _, r := range []*clusterReplica{a, b} {
		fig.Shed += int(r.metric("sluice_ingest_connections_shed_total", `listener="forward"`, `reason="balance"`))
		if err := pub.readPublishErrors(ctx, r.srv.metrics); err != nil {
			return BenchRow{}, err
		}
	}
	v, err := Verify(ctx, res.rep, Target{FileDir: out}, 2*time.Minute)
	if err != nil {
		return BenchRow{}, err
	}
	row := BenchRow{Name: sc.Name, Aggregator: "sluice ×3", Records: res.rep.Records, AckedPerSec: res.rep.RecordsPerSec,
		Verified: true, Lost: v.Lost, Dups: v.Duplicates, Cluster: &fig,
		PublishErrors: pub.PublishErrors, PublishErrorsUnread: pub.PublishErrorsUnread}
	if res.rep.Records > 0 {
		row.RecordBytes = float64(res.rep.Bytes) / float64(res.rep.Records)
	}
	return row, nil
}

// clusterReplica is one sluice process of the cluster scenario.
type clusterReplica struct {
	srv    *server
	client *api.Client
}

func startClusterReplica(ctx context.Context, bin, dir, natsURL, out, name string) (*clusterReplica, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`nats: {url: %q}
forward: {listen: "127.0.0.1:%d", udp_heartbeat: false}
http: {listen: "127.0.0.1:%d"}
otlp: {http: {listen: "off"}, grpc: {listen: "off"}}
api: {listen: "127.0.0.1:%d"}
enrich: {enabled: false}
log: {level: warn}
cluster: {announce_interval: 200ms, ttl: 2s, balance: {interval: 1s}}
sinks: [{name: file, file: {path: %q, prefix: %q}}]
`, natsURL, ports[0], ports[1], ports[2], out, "bench-"+name)
	srv, err := runSluice(ctx, bin, dir, cfg, ports)
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", name, err)
	}
	client, err := api.NewClient(fmt.Sprintf("http://127.0.0.1:%d", ports[2]), "", "")
	if err != nil {
		srv.stop()
		return nil, err
	}
	return &clusterReplica{srv: srv, client: client}, nil
}

// conns is the replica's open Forward connections, -1 when it does not
// answer.
func (r *clusterReplica) conns() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := r.client.Status(ctx)
	if err != nil {
		return -1
	}
	for _, l := range st.Listeners {
		if l.Name == "forward" {
			return l.Connections
		}
	}
	return -1
}

func (r *clusterReplica) ingested() float64 {
	return r.metric("sluice_ingest_records_total", `listener="forward"`)
}

// metric sums the series of name with labels on the replica's /metrics; 0
// when it does not answer.
func (r *clusterReplica) metric(name string, labels ...string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := r.client.Series(ctx)
	if err != nil {
		return 0
	}
	return s.Sum(name, labels...)
}

// waitFor polls ok every 100 ms until it holds or limit passes.
func waitFor(ok func() bool, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// startJetStream3 starts three clustered JetStream servers in this process,
// stores under dir, and waits until they have a meta leader that knows
// every peer. It returns their client URLs and a stop for all three.
func startJetStream3(ctx context.Context, dir string) ([]string, func(), error) {
	nodes, err := jscluster.Nodes(3, dir, 4<<30, false)
	if err != nil {
		return nil, nil, err
	}
	servers, err := jscluster.Start(ctx, nodes)
	if err != nil {
		return nil, nil, err
	}
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return urls, func() { jscluster.Stop(servers) }, nil
}
