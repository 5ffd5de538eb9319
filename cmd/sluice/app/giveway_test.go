package app

import (
	"testing"
	"time"

	"github.com/sluicelog/sluice/cmd/sluice/config"
)

// The default file sink's runner gives way to the queue's Storing; an
// Elasticsearch sink's does not unless it is turned on.
func TestFileSinkGivesWayByDefault(t *testing.T) {
	c, err := config.Parse([]byte("sinks: [{file: {}}, {elasticsearch: {urls: [\"http://127.0.0.1:9200\"]}}, {name: es2, elasticsearch: {urls: [\"http://127.0.0.1:9200\"]}, give_way: {enabled: true, max_delay: 1s}}]\n"),
		func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	storing := func() bool { return true }
	if g := giveWay(c.Sinks[0].GiveWay, storing); g.Busy == nil || g.Ratio != 0.5 || g.MaxDelay != 2*time.Second {
		t.Errorf("file sink: %+v", g)
	}
	if g := giveWay(c.Sinks[1].GiveWay, storing); g.Busy != nil {
		t.Errorf("elasticsearch sink gives way by default: %+v", g)
	}
	if g := giveWay(c.Sinks[2].GiveWay, storing); g.Busy == nil || g.MaxDelay != time.Second {
		t.Errorf("elasticsearch sink with give_way on: %+v", g)
	}
}
