package queue

import (
	"context"
	"testing"

	"github.com/sluicelog/sluice/internal/chunk"
)

// BenchmarkPublishSmallChunk is a fleet forwarder's chunk (20 records of
// about 250 bytes) stored and waited for, one at a time: the cost per
// message, which a fleet of small chunks pays on every chunk.
//
//	go test -run '^$' -bench PublishSmallChunk -benchmem ./queue/
func BenchmarkPublishSmallChunk(b *testing.B) {
	q, _ := openQueue(b, nil)
	entries := payload(20, 200)
	c := &chunk.Chunk{Tag: "kube.var.log.containers.web-1_shop_app-0123.log", ID: "", Count: 20, Entries: entries}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := q.Publish(c)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
