package queue

import (
	"strings"
	"testing"
	"time"
)

func TestReplicasConfig(t *testing.T) {
	var c ReplicasConfig
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		edit func(*ReplicasConfig)
		want string
	}{
		{func(c *ReplicasConfig) { c.ID = "pod.1" }, "id:"},
		{func(c *ReplicasConfig) { c.AnnounceInterval = time.Millisecond }, "announce_interval:"},
		{func(c *ReplicasConfig) { c.TTL = c.AnnounceInterval }, "ttl:"},
	} {
		c := ReplicasConfig{}
		c.SetDefaults()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error about %s", c, err, tc.want)
		}
	}
}

// A host name becomes a key of the bucket: one subject token.
func TestKeyFor(t *testing.T) {
	for host, want := range map[string]string{
		"sluice-7d9f8b6c5-x2x9z": "sluice-7d9f8b6c5-x2x9z",
		"node.example.com":       "node_example_com",
		"a b*>":                  "a_b__",
		"":                       "replica",
	} {
		if got := KeyFor(host); got != want || !validKey(got) {
			t.Errorf("KeyFor(%q) = %q, want %q", host, got, want)
		}
	}
}
