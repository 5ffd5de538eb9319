package app

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/filetest"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/internal/msgp"
	"github.com/sluicelog/sluice/sinks"
)

// containerPayload is n entries of ~250-byte container-log records.
func containerPayload(n int) []byte {
	var p []byte
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		p = append(p, forwardtest.Entry(t0.Add(time.Duration(i)*time.Millisecond), map[string]any{
			"log":    fmt.Sprintf("10.0.%d.%d - - [22/Nov/2026:07:00:00 +0000] \"GET /api/v1/items/%06d HTTP/1.1\" 200 %d \"-\" \"curl/8.5\"", i%250, i%200, i, 500+i%1000),
			"stream": "stdout",
			"time":   "2026-11-22T07:00:00.123456789Z",
			"kubernetes": map[string]any{
				"pod_name": "web-7d9c6b5f4-x2x9q", "namespace_name": "shop",
			},
		})...)
	}
	return p
}

// packedPrefix is a PackedForward value without its option map, so that each
// send only appends a fresh chunk id.
func packedPrefix(tag string, payload []byte) []byte {
	b := msgp.AppendArrayHeader(nil, 3)
	b = msgp.AppendStr(b, tag)
	return msgp.AppendBin(b, payload)
}

// BenchmarkIngestForwardAck measures Forward ingest over loopback into the
// embedded JetStream with acks: PackedForward chunks of 1000 records of about
// 250 bytes, each connection sending a chunk and waiting for its ack as Fluent
// Bit does. One op is one chunk. "held" keeps the file sink paused (ingest
// alone); "e2e" runs the sink and stops the clock once every record is
// written.
func BenchmarkIngestForwardAck(b *testing.B) {
	const perChunk = 1000
	payload := containerPayload(perChunk)
	prefix := packedPrefix("kube.var.log.containers.web-7d9c6b5f4-x2x9q_shop_web-0123456789abcdef.log", payload)
	b.Logf("record size %d bytes, chunk %d bytes", len(payload)/perChunk, len(prefix))
	for _, mode := range []string{"held", "e2e"} {
		for _, conns := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/conns=%d", mode, conns), func(b *testing.B) {
				out := b.TempDir()
				cfg := testConfig(b, b.TempDir(), out)
				var opts []Option
				bs := &blockingSink{release: make(chan struct{}), calls: make(chan struct{}, 1)}
				if mode == "held" {
					opts = append(opts, WithSinkWrapper(func(_ string, s sinks.Sink) sinks.Sink { bs.Sink = s; return bs }))
				}
				a := startApp(b, cfg, opts...)
				defer func() {
					close(bs.release)
					shutdown(b, a)
				}()
				b.SetBytes(int64(len(payload)))
				sendWithAcks(b, a.ForwardAddr().String(), prefix, conns)
				if mode == "e2e" {
					waitDrained(b, a, "file")
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*perChunk)/b.Elapsed().Seconds(), "records/s")
				if mode == "e2e" && b.N < 20 {
					if got := len(filetest.Lines(b, out)); got != b.N*perChunk {
						b.Fatalf("%d lines written, want %d", got, b.N*perChunk)
					}
				}
			})
		}
	}
}

// sendWithAcks sends b.N chunks over conns connections, each connection
// waiting for the ack of a chunk before it sends the next, as Fluent Bit's
// forward output does.
func sendWithAcks(b *testing.B, addr string, prefix []byte, conns int) {
	clients := make([]*forwardtest.Conn, conns)
	for i := range clients {
		c, err := forwardtest.Dial(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for ci, c := range clients {
		n := b.N / conns
		if ci < b.N%conns {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, 0, len(prefix)+64)
			for i := 0; i < n; i++ {
				id := fmt.Sprintf("c%d-%d-%d", ci, i, time.Now().UnixNano())
				msg = append(append(msg[:0], prefix...), 0x81)
				msg = msgp.AppendStr(msgp.AppendStr(msg, "chunk"), id)
				if err := c.SendAck(msg, id, time.Minute); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// BenchmarkForwardTarget sends the same load as BenchmarkIngestForwardAck to
// any Forward server (another sluice, Fluent Bit, Fluentd) at the address in
// SLUICE_BENCH_TARGET, to compare them on one machine with one client:
//
//	SLUICE_BENCH_TARGET=127.0.0.1:24225 go test -run '^$' -bench ForwardTarget ./cmd/sluice/app
func BenchmarkForwardTarget(b *testing.B) {
	addr := os.Getenv("SLUICE_BENCH_TARGET")
	if addr == "" {
		b.Skip("SLUICE_BENCH_TARGET is not set")
	}
	const perChunk = 1000
	payload := containerPayload(perChunk)
	prefix := packedPrefix("kube.var.log.containers.web-7d9c6b5f4-x2x9q_shop_web-0123456789abcdef.log", payload)
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			sendWithAcks(b, addr, prefix, conns)
			b.StopTimer()
			b.ReportMetric(float64(b.N*perChunk)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
