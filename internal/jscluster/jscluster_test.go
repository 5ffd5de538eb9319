package jscluster

import (
	"path/filepath"
	"slices"
	"testing"
)

// Each node routes to every other node's cluster port and to none of its
// own, on ports of its own, with a store of its own.
func TestNodes(t *testing.T) {
	dir := t.TempDir()
	for _, clientPorts := range []bool{false, true} {
		nodes, err := Nodes(3, dir, 1<<30, clientPorts)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int]bool{}
		for i, n := range nodes {
			if n.StoreDir != filepath.Join(dir, n.Name) || n.MaxStore != 1<<30 {
				t.Errorf("node %d: %+v", i, n)
			}
			if (n.ClientPort == -1) == clientPorts {
				t.Errorf("node %d: client port %d with clientPorts %v", i, n.ClientPort, clientPorts)
			}
			for _, p := range []int{n.ClientPort, n.ClusterPort} {
				if p != -1 && seen[p] {
					t.Errorf("node %d: port %d used twice", i, p)
				}
				seen[p] = true
			}
			var others []int
			for j, m := range nodes {
				if j != i {
					others = append(others, m.ClusterPort)
				}
			}
			if !slices.Equal(n.Routes, others) {
				t.Errorf("node %d routes to %v, want %v", i, n.Routes, others)
			}
			if o := n.Options(); o.Cluster.Port != n.ClusterPort || len(o.Routes) != 2 || o.JetStreamMaxStore != n.MaxStore {
				t.Errorf("node %d options: cluster port %d, %d routes, max store %d", i, o.Cluster.Port, len(o.Routes), o.JetStreamMaxStore)
			}
		}
	}
}
