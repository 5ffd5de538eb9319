// Package jscluster runs clustered JetStream servers on loopback: the
// 3-node clusters of the end-to-end tests and of `make bench`.
package jscluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Node describes one server of a cluster; it travels as JSON to a node run
// in a process of its own.
type Node struct {
	Name        string
	StoreDir    string
	ClientPort  int // -1: chosen by the kernel
	ClusterPort int
	Routes      []int // the other nodes' cluster ports
	MaxStore    int64 // the JetStream file store's limit
}

// Nodes describes n nodes on free loopback ports, routed to each other,
// with their stores under dir. clientPorts gives each a fixed client port
// too (for a node that restarts, or runs in another process).
func Nodes(n int, dir string, maxStore int64, clientPorts bool) ([]Node, error) {
	nodes := make([]Node, n)
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		nodes[i] = Node{Name: name, StoreDir: filepath.Join(dir, name), ClientPort: -1, MaxStore: maxStore}
		var err error
		if nodes[i].ClusterPort, err = FreePort(); err != nil {
			return nil, err
		}
		if clientPorts {
			if nodes[i].ClientPort, err = FreePort(); err != nil {
				return nil, err
			}
		}
	}
	for i := range nodes {
		for j := range nodes {
			if j != i {
				nodes[i].Routes = append(nodes[i].Routes, nodes[j].ClusterPort)
			}
		}
	}
	return nodes, nil
}

// Options are the node's server options.
func (n Node) Options() *server.Options {
	routes := make([]string, len(n.Routes))
	for i, p := range n.Routes {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return &server.Options{
		ServerName: n.Name,
		Host:       "127.0.0.1",
		Port:       n.ClientPort,
		JetStream:  true,
		StoreDir:   n.StoreDir,
		// Fixed limits: the defaults follow the machine's memory and disk.
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  n.MaxStore,
		Cluster:            server.ClusterOpts{Name: "sluice", Host: "127.0.0.1", Port: n.ClusterPort},
		Routes:             server.RoutesFromStr(strings.Join(routes, ",")),
		NoLog:              true,
		NoSigs:             true,
	}
}

// Start runs the nodes in this process and waits until they take
// connections and have a meta leader that knows every peer, or ctx ends.
// On error the servers it started are stopped.
func Start(ctx context.Context, nodes []Node) ([]*server.Server, error) {
	servers := make([]*server.Server, 0, len(nodes))
	fail := func(err error) ([]*server.Server, error) {
		Stop(servers)
		return nil, err
	}
	for _, node := range nodes {
		s, err := server.NewServer(node.Options())
		if err != nil {
			return fail(fmt.Errorf("jscluster: server %s: %w", node.Name, err))
		}
		servers = append(servers, s)
		go s.Start()
	}
	for _, s := range servers {
		if !s.ReadyForConnections(20 * time.Second) {
			return fail(fmt.Errorf("jscluster: server %s not ready within 20s", s.Name()))
		}
	}
	for {
		leader, current := false, true
		for _, s := range servers {
			leader = leader || (s.JetStreamIsClustered() && s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(servers))
			current = current && s.JetStreamIsCurrent()
		}
		if leader && current {
			return servers, nil
		}
		select {
		case <-ctx.Done():
			return fail(errors.New("jscluster: no meta leader with every peer: " + ctx.Err().Error()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the servers down and waits for them; a second Stop does
// nothing.
func Stop(servers []*server.Server) {
	for _, s := range servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// FreePort returns a free loopback port below Linux's ephemeral range
// (32768-60999): a port taken from it with ":0" can be handed to some
// outgoing connection (other tests run at the same time) before the node
// binds it, and the node then fails to listen.
func FreePort() (int, error) {
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("jscluster: no free port between 20000 and 32000")
}
