package forward_test

import (
	"errors"
	"testing"

	"github.com/sluicelog/sluice/ingest/forward"
	"github.com/sluicelog/sluice/internal/chunk"
)

// fuzzLimits are small so that the fuzzer cannot make the decoder allocate
// much (a gzip or zstd bomb stops at 1 MiB).
var fuzzLimits = forward.Limits{MaxChunkBytes: 4 << 20, MaxDecompressedBytes: 1 << 20, MaxTagBytes: 256}

var fuzzReasons = map[string]bool{
	forward.ReasonMalformed: true, forward.ReasonType: true, forward.ReasonTag: true,
	forward.ReasonOption: true, forward.ReasonEntry: true, forward.ReasonTime: true,
	forward.ReasonRecord: true, forward.ReasonTooDeep: true, forward.ReasonTooLarge: true,
	forward.ReasonDecompressMax: true, forward.ReasonCompression: true,
}

func FuzzDecode(f *testing.F) {
	// Valid values in every mode (message, message+option, forward with and
	// without option, packed bin/str, gzip with one and several members,
	// zstd, the metadata form, every time form).
	for _, c := range cdcValidCases(f) {
		f.Add(c.in)
	}
	f.Add([]byte{0xc0})                        // keepalive
	f.Add([]byte{0xc0, 0xc0, 0x92, 0xa1, 't'}) // keepalives then a partial value
	// A few bad ones.
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0xc1})
	f.Add([]byte{0x92, 0xa1, 't', 0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x93, 0xa1, 't', 0x01, 0x81, 0xa1, 'k', 0xc1})
	f.Add(cdcConcat([]byte{0x93, 0xa1, 't', 0x01}, cdcNested(300)))
	f.Add(cdcMarshal(f, []any{"t", []byte("not gzip"), map[string]any{"compressed": "gzip"}}))
	f.Add(cdcMarshal(f, []any{"t", []byte("not zstd"), map[string]any{"compressed": "zstd"}}))
	f.Add(cdcMarshal(f, []any{"t", []byte{}, map[string]any{"compressed": "lz4"}}))
	f.Add(cdcMarshal(f, []any{"t", []any{[]any{"x", map[string]any{}}}}))

	f.Fuzz(func(t *testing.T, in []byte) {
		orig := append([]byte(nil), in...)
		d := forward.NewDecoder(fuzzLimits)
		defer d.Close()
		ev, n, err := d.Decode(in)
		if string(orig) != string(in) {
			t.Fatalf("Decode modified its input")
		}
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
			if err == forward.ErrShort {
				return
			}
			var fe *forward.Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is neither ErrShort nor *forward.Error", err, err)
			}
			if !fuzzReasons[fe.Reason] {
				t.Fatalf("unknown reason %q: %v", fe.Reason, err)
			}
			return
		}
		if ev.Keepalive {
			if n != 1 || in[0] != 0xc0 {
				t.Fatalf("keepalive with n = %d", n)
			}
			return
		}
		if n <= 0 || n > len(in) {
			t.Fatalf("n = %d for an input of %d bytes", n, len(in))
		}
		if ev.Mode < forward.ModeMessage || ev.Mode > forward.ModeCompressedPackedForward {
			t.Fatalf("mode %d", ev.Mode)
		}
		if len(ev.Tag) == 0 {
			t.Fatalf("empty tag accepted")
		}
		if (ev.Compression != "") != (ev.Mode == forward.ModeCompressedPackedForward) {
			t.Fatalf("Compression %q in mode %v", ev.Compression, ev.Mode)
		}
		if ev.Mode == forward.ModeMessage && ev.Count != 1 {
			t.Fatalf("message with Count %d", ev.Count)
		}
		count, off := 0, 0
		for off < len(ev.Entries) {
			e, next, err := chunk.ReadEntry(ev.Entries, off)
			if err != nil {
				t.Fatalf("entry %d at %d of an accepted value: %v", count, off, err)
			}
			if next <= off || len(e.Record) == 0 {
				t.Fatalf("entry %d: no progress or empty record", count)
			}
			off = next
			count++
		}
		if count != ev.Count {
			t.Fatalf("walked %d entries, Count is %d", count, ev.Count)
		}
		if off != len(ev.Entries) {
			t.Fatalf("entries walk ended at %d of %d", off, len(ev.Entries))
		}

		// The value's extent does not depend on what follows it, and it is
		// incomplete without its last byte.
		mode, count := ev.Mode, ev.Count
		ev2, n2, err := d.Decode(in[:n])
		if err != nil || n2 != n || ev2.Mode != mode || ev2.Count != count {
			t.Fatalf("value alone: %v, %d, %d, %v; with what follows: %v, %d, %d", ev2.Mode, ev2.Count, n2, err, mode, count, n)
		}
		if _, _, err := d.Decode(in[:n-1]); err != forward.ErrShort {
			t.Fatalf("value without its last byte: %v, want ErrShort", err)
		}
	})
}
