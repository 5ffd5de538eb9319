package queue

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

// By default each message's entries are stored compressed with S2, and
// come back as they went in; entries that would not shrink are stored as
// they are, and compression: none stores everything as it is. (Batch
// messages: TestBatchGathersChunks.)
func TestStreamCompression(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 3000)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	logs := payload(200, 200) // repetitive, like log lines
	random := forwardtest.Entry(time.Unix(1700000000, 0), map[string]any{"blob": noise})

	for _, tc := range []struct {
		compression     string
		entries         []byte
		wantEncoding    string
		wantSmallerBody bool
	}{
		{CompressionS2, logs, EncodingS2, true},
		{CompressionS2, random, chunk.Encoding, false},
		{CompressionNone, logs, chunk.Encoding, false},
	} {
		q, _ := openQueue(t, func(c *Config) {
			c.Stream.Compression = tc.compression
			off := false
			c.Batch.Enabled = &off
		})
		if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
			t.Fatal(err)
		}
		count := 0
		for off := 0; off < len(tc.entries); count++ {
			_, next, err := chunk.ReadEntry(tc.entries, off)
			if err != nil {
				t.Fatal(err)
			}
			off = next
		}
		if err := publishWait(t, q, &chunk.Chunk{Tag: "app", ID: "c1", Count: count, Entries: tc.entries}); err != nil {
			t.Fatal(err)
		}
		msgs := fetchAll(t, q, "s")
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages, want 1", tc.compression, len(msgs))
		}
		m := msgs[0]
		if got := m.Headers().Get(HeaderEncoding); got != tc.wantEncoding {
			t.Errorf("%s: encoding %q, want %q", tc.compression, got, tc.wantEncoding)
		}
		if smaller := len(m.Data()) < len(tc.entries)/2; smaller != tc.wantSmallerBody {
			t.Errorf("%s: body of %d bytes for %d bytes of entries", tc.compression, len(m.Data()), len(tc.entries))
		}
		c, pooled, err := ChunkFromMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		if pooled != (tc.wantEncoding == EncodingS2) || !bytes.Equal(c.Entries, tc.entries) || c.Count != count || c.Tag != "app" || c.ID != "c1" {
			t.Errorf("%s: chunk back %q/%q count %d pooled %v, entries equal %v", tc.compression, c.Tag, c.ID, c.Count, pooled, bytes.Equal(c.Entries, tc.entries))
		}
		entry, stored := testutil.ToFloat64(q.metrics.entryBytes), testutil.ToFloat64(q.metrics.storedBytes)
		if int(entry) != len(tc.entries) || int(stored) != len(m.Data()) {
			t.Errorf("%s: counted %v entry bytes and %v stored, want %d and %d", tc.compression, entry, stored, len(tc.entries), len(m.Data()))
		}
	}
}

// A compressed message that is damaged, or that would expand beyond any
// message sluice stores, is refused with an error (the runner then sends it
// to the dead-letter stream), never inflated blindly.
func TestDamagedCompressedMessage(t *testing.T) {
	q, _ := openQueue(t, nil)
	if _, err := q.Consumer(context.Background(), "s", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	good := s2.Encode(nil, payload(50, 100))
	torn := good[:len(good)/2]
	// A valid block of 80 MiB of zeros: small on the wire, too big to inflate.
	bomb := s2.Encode(nil, make([]byte, 80<<20))
	for name, body := range map[string][]byte{"torn": torn, "bomb": bomb, "not s2": []byte(strings.Repeat("\xff", 64))} {
		msg := &nats.Msg{Subject: q.cfg.Stream.SubjectPrefix + ".app", Data: body, Header: nats.Header{
			HeaderTag: []string{"app"}, HeaderCount: []string{"50"}, HeaderEncoding: []string{EncodingS2}}}
		if _, err := q.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		msgs := fetchAll(t, q, "s")
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages", name, len(msgs))
		}
		if c, _, err := ChunkFromMsg(msgs[0]); err == nil {
			t.Errorf("%s: decoded %d bytes of entries, want an error", name, len(c.Entries))
		}
	}
}
