package loadtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/sluicelog/sluice/internal/msgp"
)

// seqWidth is the width of lg_seq, a zero-padded decimal string.
const seqWidth = 10

// chunkIDWidth is the width of the Forward chunk option.
const chunkIDWidth = 24

// request is an encoded chunk or request body whose sequence numbers and
// chunk id are rewritten in place before each send.
type request struct {
	tag     string
	records int
	body    []byte // the value or body as sent (gzip: the entries to compress)
	seqAt   []int  // offsets of the lg_seq digits in body
	chunkAt int    // offset of the chunk id in body, -1 without
}

// setSeq writes the sequence numbers from base on.
func (r *request) setSeq(base uint64) {
	for i, at := range r.seqAt {
		putDigits(r.body[at:at+seqWidth], base+uint64(i))
	}
}

func putDigits(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}

// setChunk writes a chunk id made of the run id and a counter.
func (r *request) setChunk(run string, n uint64) string {
	if r.chunkAt < 0 {
		return ""
	}
	id := r.body[r.chunkAt : r.chunkAt+chunkIDWidth]
	copy(id, run)
	putDigits(id[len(run):], n)
	return string(id)
}

// encoder builds the requests of one worker.
type encoder struct {
	cfg  *Config
	pods []pod
	rand *rand.Rand
	at   time.Time
}

// newEncoder is the encoder of worker id: its random lines are the same in
// every run.
func newEncoder(cfg *Config, id int) *encoder {
	return &encoder{cfg: cfg, pods: cfg.Workload.pods(), rand: rand.New(rand.NewPCG(uint64(id), 7)), at: time.Now()}
}

// record returns the msgpack record (map) and the offset of its seq digits.
func (e *encoder) record(dst []byte, log string) ([]byte, int) {
	dst = msgp.AppendMapHeader(dst, 4)
	dst = msgp.AppendStr(dst, "log")
	dst = msgp.AppendStr(dst, log)
	dst = msgp.AppendStr(dst, "stream")
	dst = msgp.AppendStr(dst, "stdout")
	dst = msgp.AppendStr(dst, "lg_run")
	dst = msgp.AppendStr(dst, e.cfg.RunID)
	dst = msgp.AppendStr(dst, "lg_seq")
	dst = msgp.AppendStr(dst, "0000000000")
	return dst, len(dst) - seqWidth
}

// entries returns n Forward entries [EventTime, record] and their seq
// offsets.
func (e *encoder) entries(n, salt int) ([]byte, []int) {
	var b []byte
	seqs := make([]int, 0, n)
	for i := 0; i < n; i++ {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendEventTime(b, uint32(e.at.Unix()), uint32(e.at.Nanosecond()+i))
		var at int
		b, at = e.record(b, e.cfg.Workload.line(e.rand, salt*n+i))
		seqs = append(seqs, at)
	}
	return b, seqs
}

// appendOptions appends a value's option map: {"chunk": chunk} with a chunk
// id, else {"size": records}, as Fluent Bit and Fluentd send when they do
// not ask for acks (a chunk id asks for an ack, which a sender that does
// not read them must not: its close would reset the connection over unread
// acks, and the server would lose what it had not read yet); and
// "compressed": "gzip" for a gzipped value.
func appendOptions(b []byte, chunk string, records int, gzipped bool) []byte {
	n := 1
	if gzipped {
		n = 2
	}
	b = msgp.AppendMapHeader(b, n)
	if chunk == "" {
		b = msgp.AppendStr(b, "size")
		b = msgp.AppendUint(b, uint64(records))
	} else {
		b = msgp.AppendStr(b, "chunk")
		b = msgp.AppendStr(b, chunk)
	}
	if gzipped {
		b = msgp.AppendStr(b, "compressed")
		b = msgp.AppendStr(b, "gzip")
	}
	return b
}

// options appends a value's option map and returns the offset of its chunk
// id, to be written by setChunk, or -1 without acks.
func (e *encoder) options(b []byte, records int) ([]byte, int) {
	if !e.cfg.Ack {
		return appendOptions(b, "", records, false), -1
	}
	b = appendOptions(b, string(make([]byte, chunkIDWidth)), records, false)
	return b, len(b) - chunkIDWidth
}

// build encodes a request of n records for the salt-th template.
func (e *encoder) build(n, salt int) *request {
	p := e.pods[salt%len(e.pods)]
	r := &request{tag: p.tag, records: n, chunkAt: -1}
	switch e.cfg.Protocol + "/" + e.cfg.Mode {
	case "forward/packed", "forward/gzip":
		// gzip: the entries are compressed for each send (see gzipPacked).
		entries, seqs := e.entries(n, salt)
		if e.cfg.Mode == "gzip" {
			r.body, r.seqAt = entries, seqs
			return r
		}
		b := msgp.AppendArrayHeader(nil, 3)
		b = msgp.AppendStr(b, p.tag)
		b = msgp.AppendBin(b, entries)
		shift := len(b) - len(entries)
		for i := range seqs {
			seqs[i] += shift
		}
		b, r.chunkAt = e.options(b, n)
		r.body, r.seqAt = b, seqs
	case "forward/forward":
		b := msgp.AppendArrayHeader(nil, 3)
		b = msgp.AppendStr(b, p.tag)
		b = msgp.AppendArrayHeader(b, n)
		entries, seqs := e.entries(n, salt)
		for i := range seqs {
			seqs[i] += len(b)
		}
		b = append(b, entries...)
		b, r.chunkAt = e.options(b, n)
		r.body, r.seqAt = b, seqs
	case "forward/message":
		b := msgp.AppendArrayHeader(nil, 4)
		b = msgp.AppendStr(b, p.tag)
		b = msgp.AppendEventTime(b, uint32(e.at.Unix()), uint32(e.at.Nanosecond()))
		var at int
		b, at = e.record(b, e.cfg.Workload.line(e.rand, salt))
		b, r.chunkAt = e.options(b, 1)
		r.body, r.seqAt, r.records = b, []int{at}, 1
	case "http/msgpack":
		r.body, r.seqAt = e.entries(n, salt)
	case "http/json", "http/ndjson":
		var b bytes.Buffer
		if e.cfg.Mode == "json" {
			b.WriteByte('[')
		}
		date := strconv.FormatFloat(float64(e.at.UnixNano())/1e9, 'f', 6, 64)
		for i := 0; i < n; i++ {
			if i > 0 && e.cfg.Mode == "json" {
				b.WriteByte(',')
			}
			logText, _ := json.Marshal(e.cfg.Workload.line(e.rand, salt*n+i))
			fmt.Fprintf(&b, `{"date":%s,"log":%s,"stream":"stdout","lg_run":%q,"lg_seq":"`, date, logText, e.cfg.RunID)
			r.seqAt = append(r.seqAt, b.Len())
			b.WriteString(`0000000000"}`)
			if e.cfg.Mode == "ndjson" {
				b.WriteByte('\n')
			}
		}
		if e.cfg.Mode == "json" {
			b.WriteByte(']')
		}
		r.body = b.Bytes()
	case "otlp/" + OTLPProtobuf, "otlp/" + OTLPJSON, "otlp/" + OTLPGRPC:
		r.body, r.seqAt = e.otlpRequest(p, n, salt)
	default:
		panic("loadtest: unknown protocol/mode " + e.cfg.Protocol + "/" + e.cfg.Mode)
	}
	return r
}

// payload is what a worker sends for r as its n-th value, and the chunk id
// that asks for its ack ("" without acks): gzip's values are compressed
// here, through zbuf and zw, the others are r's body.
func (r *request) payload(cfg *Config, n uint64, zbuf *bytes.Buffer, zw *gzip.Writer) ([]byte, string) {
	if cfg.Protocol != "forward" || cfg.Mode != "gzip" {
		return r.body, r.setChunk(cfg.RunID, n)
	}
	chunk := ""
	if cfg.Ack {
		chunk = cfg.RunID + fmt.Sprintf("%016d", n)
	}
	return gzipPacked(zbuf, zw, r, chunk), chunk
}

// gzipPacked compresses the entries of r into a CompressedPackedForward
// value with the chunk id, or without one ("") its size (appendOptions).
func gzipPacked(dst *bytes.Buffer, zw *gzip.Writer, r *request, chunk string) []byte {
	dst.Reset()
	zw.Reset(dst)
	_, _ = zw.Write(r.body)
	_ = zw.Close()
	b := msgp.AppendArrayHeader(nil, 3)
	b = msgp.AppendStr(b, r.tag)
	b = msgp.AppendBin(b, dst.Bytes())
	return appendOptions(b, chunk, r.records, true)
}
