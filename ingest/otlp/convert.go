package otlp

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/sluicelog/sluice/internal/bufpool"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
)

// Reasons a log record is rejected alone (partial success); metric label
// values.
const (
	ReasonTooLarge = "record_too_large"
	ReasonTooDeep  = "too_deep"
	ReasonTime     = "bad_time"
)

// tagPart is literal text, or a resource attribute when attr is set.
type tagPart struct {
	lit  string
	attr string
}

// parseTag reads a tag template: text with ${attribute} references.
func parseTag(s string) ([]tagPart, error) {
	var parts []tagPart
	for s != "" {
		i := strings.Index(s, "${")
		if i < 0 {
			parts = append(parts, tagPart{lit: s})
			break
		}
		if i > 0 {
			parts = append(parts, tagPart{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("%q: ${ without }", s)
		}
		name := s[i+2 : i+j]
		if name == "" {
			return nil, errors.New("empty ${} reference")
		}
		parts = append(parts, tagPart{attr: name})
		s = s[i+j+1:]
	}
	if len(parts) == 0 {
		return nil, errors.New("must not be empty")
	}
	return parts, nil
}

// chunkID is the id of every OTLP chunk (see batch.chunkFor).
const chunkID = "otlp"

// missingAttr stands in the tag for an attribute the resource lacks.
const missingAttr = "_"

// resourceKubernetes maps resource attributes (OpenTelemetry's semantic
// conventions) to the keys of Fluent Bit's kubernetes block, which
// enrichment reads to find the pod.
var resourceKubernetes = [...]struct{ attr, key string }{
	{"k8s.pod.name", "pod_name"},
	{"k8s.namespace.name", "namespace_name"},
	{"k8s.pod.uid", "pod_id"},
	{"k8s.container.name", "container_name"},
	{"k8s.node.name", "host"},
}

// converter turns OTLP logs into chunks of sluice records.
type converter struct {
	tag       []tagPart
	maxRecord int
	now       func() time.Time
}

// batch is one request's records: a chunk per tag, and what was rejected.
type batch struct {
	chunks   []*chunk.Chunk
	bufs     [][]byte // the chunks' pooled entries, for release
	records  int
	rejected map[string]int // by reason
	firstErr string
	shared   []byte // scratch for the parts every record of a resource shares
}

// release gives the chunks' buffers back; only once no publisher holds them.
func (b *batch) release() {
	for _, buf := range b.bufs {
		bufpool.Put(buf)
	}
	b.bufs, b.chunks = nil, nil
	bufpool.Put(b.shared)
	b.shared = nil
}

func (b *batch) reject(reason string, err string) {
	if b.rejected == nil {
		b.rejected = map[string]int{}
	}
	b.rejected[reason]++
	if b.firstErr == "" {
		b.firstErr = err
	}
}

// rejectedCount is the records rejected in all.
func (b *batch) rejectedCount() int {
	n := 0
	for _, c := range b.rejected {
		n += c
	}
	return n
}

// chunkFor returns the chunk of tag, starting one when needed with room
// for size bytes.
func (b *batch) chunkFor(tag string, size int) int {
	for i, c := range b.chunks {
		if c.Tag == tag {
			return i
		}
	}
	// The id makes the queue take the message id from the tag and the
	// entries: a request sent again (after a timeout, or a 503 when only
	// some of its chunks were stored) is stored once within the stream's
	// duplicate_window. Records carry their own times to the nanosecond,
	// so distinct records do not collide.
	b.chunks = append(b.chunks, &chunk.Chunk{Tag: tag, ID: chunkID})
	b.bufs = append(b.bufs, bufpool.Get(size))
	return len(b.chunks) - 1
}

// tagFor expands the tag template with a resource's attributes.
func (cv *converter) tagFor(attrs pcommon.Map) string {
	if len(cv.tag) == 1 && cv.tag[0].attr == "" {
		return cv.tag[0].lit
	}
	var sb strings.Builder
	for _, p := range cv.tag {
		if p.attr == "" {
			sb.WriteString(p.lit)
			continue
		}
		v, ok := attrs.Get(p.attr)
		s := ""
		if ok {
			s = v.AsString()
		}
		if s == "" {
			s = missingAttr
		}
		sb.WriteString(s)
	}
	return sb.String()
}

// convert appends every log record of ld to b; sizeHint is the request's
// size, which the first chunk's buffer starts with.
func (cv *converter) convert(ld plog.Logs, b *batch, sizeHint int) {
	now := cv.now()
	if b.shared == nil {
		b.shared = bufpool.Get(4 << 10)[:0]
	}
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		attrs := rl.Resource().Attributes()
		// Records in msgpack repeat their keys and the resource's parts, so
		// they take more room than in protobuf.
		ci := b.chunkFor(cv.tagFor(attrs), max(sizeHint+sizeHint/2, 4<<10))
		sizeHint = 0
		// The resource's parts, encoded once: resource, kubernetes.
		shared := b.shared[:0]
		resFields := 0
		k := kubernetesKeys(attrs)
		if attrs.Len() > k {
			// The attributes the kubernetes block holds are not repeated.
			shared = msgp.AppendStr(shared, "resource")
			shared = msgp.AppendMapHeader(shared, attrs.Len()-k)
			ok := true
			for name, v := range attrs.All() {
				if ok && !inKubernetes(name, v) {
					shared = msgp.AppendStr(shared, name)
					shared, ok = appendValue(shared, v, 1)
				}
			}
			if !ok {
				b.shared = shared
				for range countRecords(rl) {
					b.reject(ReasonTooDeep, "resource attributes nest too deeply")
				}
				continue
			}
			resFields++
		}
		if k > 0 {
			shared = msgp.AppendStr(shared, "kubernetes")
			shared = msgp.AppendMapHeader(shared, k)
			for _, m := range resourceKubernetes {
				if v, ok := attrs.Get(m.attr); ok && inKubernetes(m.attr, v) {
					shared = msgp.AppendStr(shared, m.key)
					shared = msgp.AppendStr(shared, v.Str())
				}
			}
			resFields++
		}
		resEnd := len(shared)
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			sl := sls.At(j)
			shared = shared[:resEnd]
			fields := resFields
			if sc := sl.Scope(); sc.Name() != "" || sc.Version() != "" {
				shared = msgp.AppendStr(shared, "scope")
				n := 0
				if sc.Name() != "" {
					n++
				}
				if sc.Version() != "" {
					n++
				}
				shared = msgp.AppendMapHeader(shared, n)
				if sc.Name() != "" {
					shared = msgp.AppendStr(shared, "name")
					shared = msgp.AppendStr(shared, sc.Name())
				}
				if sc.Version() != "" {
					shared = msgp.AppendStr(shared, "version")
					shared = msgp.AppendStr(shared, sc.Version())
				}
				fields++
			}
			lrs := sl.LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				before := b.records
				b.bufs[ci] = cv.appendRecord(b, b.bufs[ci], lrs.At(k), shared, fields, now)
				b.chunks[ci].Count += b.records - before
			}
		}
		b.shared = shared
	}
	for i, c := range b.chunks {
		c.Entries = b.bufs[i]
	}
}

func countRecords(rl plog.ResourceLogs) int {
	n := 0
	for j := 0; j < rl.ScopeLogs().Len(); j++ {
		n += rl.ScopeLogs().At(j).LogRecords().Len()
	}
	return n
}

// kubernetesKeys counts the resource attributes the kubernetes block holds.
func kubernetesKeys(attrs pcommon.Map) int {
	n := 0
	for _, m := range resourceKubernetes {
		if v, ok := attrs.Get(m.attr); ok && inKubernetes(m.attr, v) {
			n++
		}
	}
	return n
}

// inKubernetes reports whether the kubernetes block holds this attribute.
func inKubernetes(name string, v pcommon.Value) bool {
	if !strings.HasPrefix(name, "k8s.") || v.Type() != pcommon.ValueTypeStr || v.Str() == "" {
		return false
	}
	for _, m := range resourceKubernetes {
		if m.attr == name {
			return true
		}
	}
	return false
}

// maxEventSec is the last second an EventTime (uint32 seconds) holds.
const maxEventSec = math.MaxUint32

// appendRecord appends one entry, [time, record], to dst; a record that
// cannot be stored is rejected and leaves dst as it was.
func (cv *converter) appendRecord(b *batch, dst []byte, lr plog.LogRecord, shared []byte, sharedFields int, now time.Time) []byte {
	ts := lr.Timestamp()
	if ts == 0 {
		ts = lr.ObservedTimestamp()
	}
	sec, nsec := uint64(ts)/1e9, uint64(ts)%1e9
	if ts == 0 {
		sec, nsec = uint64(now.Unix()), uint64(now.Nanosecond())
	}
	if sec > maxEventSec {
		b.reject(ReasonTime, fmt.Sprintf("time %d ns is beyond 2106", uint64(ts)))
		return dst
	}
	start := len(dst)
	dst = msgp.AppendArrayHeader(dst, 2)
	dst = msgp.AppendEventTime(dst, uint32(sec), uint32(nsec))

	body := lr.Body()
	hasBody := body.Type() != pcommon.ValueTypeEmpty
	attrs := lr.Attributes()
	n := sharedFields
	for _, has := range [...]bool{hasBody, lr.SeverityText() != "", lr.SeverityNumber() != 0, attrs.Len() > 0,
		!lr.TraceID().IsEmpty(), !lr.SpanID().IsEmpty(), lr.EventName() != ""} {
		if has {
			n++
		}
	}
	dst = msgp.AppendMapHeader(dst, n)
	ok := true
	if hasBody {
		dst = msgp.AppendStr(dst, "log")
		dst, ok = appendValue(dst, body, 1)
	}
	if lr.SeverityText() != "" {
		dst = msgp.AppendStr(dst, "severity_text")
		dst = msgp.AppendStr(dst, lr.SeverityText())
	}
	if lr.SeverityNumber() != 0 {
		dst = msgp.AppendStr(dst, "severity_number")
		dst = msgp.AppendInt(dst, int64(lr.SeverityNumber()))
	}
	if ok && attrs.Len() > 0 {
		dst = msgp.AppendStr(dst, "attributes")
		dst, ok = appendMap(dst, attrs, 1)
	}
	if id := lr.TraceID(); !id.IsEmpty() {
		dst = msgp.AppendStr(dst, "trace_id")
		dst = appendHex(dst, id[:])
	}
	if id := lr.SpanID(); !id.IsEmpty() {
		dst = msgp.AppendStr(dst, "span_id")
		dst = appendHex(dst, id[:])
	}
	if lr.EventName() != "" {
		dst = msgp.AppendStr(dst, "event_name")
		dst = msgp.AppendStr(dst, lr.EventName())
	}
	dst = append(dst, shared...)
	switch {
	case !ok:
		b.reject(ReasonTooDeep, fmt.Sprintf("a value nests beyond %d levels", maxDepth))
		return dst[:start]
	case len(dst)-start > cv.maxRecord:
		b.reject(ReasonTooLarge, fmt.Sprintf("a record of %d bytes is above the limit of %d", len(dst)-start, cv.maxRecord))
		return dst[:start]
	}
	b.records++
	return dst
}

// maxDepth bounds nesting, below the queue's msgp.MaxDepth with room for
// the record and its entry.
const maxDepth = msgp.MaxDepth - 8

func appendValue(dst []byte, v pcommon.Value, depth int) ([]byte, bool) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return msgp.AppendStr(dst, v.Str()), true
	case pcommon.ValueTypeInt:
		return msgp.AppendInt(dst, v.Int()), true
	case pcommon.ValueTypeDouble:
		return msgp.AppendFloat(dst, v.Double()), true
	case pcommon.ValueTypeBool:
		return msgp.AppendBool(dst, v.Bool()), true
	case pcommon.ValueTypeBytes:
		return msgp.AppendBin(dst, v.Bytes().AsRaw()), true
	case pcommon.ValueTypeMap:
		return appendMap(dst, v.Map(), depth+1)
	case pcommon.ValueTypeSlice:
		if depth >= maxDepth {
			return dst, false
		}
		s := v.Slice()
		dst = msgp.AppendArrayHeader(dst, s.Len())
		for i := 0; i < s.Len(); i++ {
			var ok bool
			if dst, ok = appendValue(dst, s.At(i), depth+1); !ok {
				return dst, false
			}
		}
		return dst, true
	}
	return msgp.AppendNil(dst), true
}

func appendMap(dst []byte, m pcommon.Map, depth int) ([]byte, bool) {
	if depth >= maxDepth {
		return dst, false
	}
	dst = msgp.AppendMapHeader(dst, m.Len())
	ok := true
	for k, v := range m.All() {
		dst = msgp.AppendStr(dst, k)
		if dst, ok = appendValue(dst, v, depth); !ok {
			return dst, false
		}
	}
	return dst, true
}

const hexDigits = "0123456789abcdef"

// appendHex appends id as a lower-case hex string, as OTLP/JSON writes it.
func appendHex(dst []byte, id []byte) []byte {
	dst = msgp.AppendStrHeader(dst, 2*len(id))
	for _, c := range id {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}
