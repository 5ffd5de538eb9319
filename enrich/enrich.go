// Package enrich turns a record into the record users query for: it finds
// the pod a record belongs to (from the tag or from fields already in the
// record), adds the `kubernetes` map exactly as Fluent Bit's kubernetes
// filter does, parses plain container lines (docker JSON, CRI), merges a
// JSON (or annotated-parser) log into the record, and drops the logs of pods
// annotated `fluentbit.io/exclude: "true"`.
//
// Enrich is a pure function of the record and a read-only pod cache, run in
// each sink's pipeline after the queue: replicas enrich independently and a
// slow API server never blocks ingest. It works on msgpack bytes: the
// record's own fields are copied as they are, and what is added is appended.
package enrich

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/enrich/kube"
	"github.com/sluicelog/sluice/enrich/parser"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/msgp"
)

// Config configures enrichment.
type Config struct {
	// Enabled: unset turns enrichment on when a Kubernetes cluster is found
	// (in-cluster or a kubeconfig); false turns it off; true turns it on
	// (without a cluster only the parsing steps run).
	Enabled *bool `yaml:"enabled"`
	// Kubernetes configures the metadata cache; enrichment with pod
	// metadata is on when it is (in a cluster or with a kubeconfig).
	Kubernetes kube.Config `yaml:"kubernetes"`
	// TagPrefix and TagRegex find the pod in a tag, as Fluent Bit's
	// Kube_Tag_Prefix and Regex_Parser: the rest of the tag after the
	// prefix is matched by the regex with named groups pod_name,
	// namespace_name, container_name and docker_id.
	TagPrefix string `yaml:"tag_prefix"`
	TagRegex  string `yaml:"tag_regex"`
	// PodKey, NamespaceKey and ContainerKey name the record fields that
	// identify the pod when the tag does not (Fargate sidecars); a key
	// "kubernetes.pod_name" looks inside the record's kubernetes map.
	PodKey       string `yaml:"pod_key"`
	NamespaceKey string `yaml:"namespace_key"`
	ContainerKey string `yaml:"container_key"`
	// Labels and Annotations switch those maps in the kubernetes block.
	Labels      *bool `yaml:"labels"`
	Annotations *bool `yaml:"annotations"`
	// MergeLog parses the log field (JSON unless an annotation names
	// another parser) and puts its fields under MergeLogKey, or at the top
	// level when MergeLogKey is empty.
	MergeLog    *bool  `yaml:"merge_log"`
	MergeLogKey string `yaml:"merge_log_key"`
	// MergeLogTrim trims trailing white space (the newline) of the log
	// before parsing; KeepLog keeps the original log field after a merge.
	MergeLogTrim *bool `yaml:"merge_log_trim"`
	KeepLog      *bool `yaml:"keep_log"`
	// LogKey is the field holding the log line.
	LogKey string `yaml:"log_key"`
	// ContainerLines parses a log field that still holds a docker JSON or a
	// CRI line, when the forwarder did not.
	ContainerLines *bool `yaml:"container_lines"`
	// AnnotationParser and AnnotationExclude honour fluentbit.io/parser and
	// fluentbit.io/exclude pod annotations.
	AnnotationParser  *bool `yaml:"annotation_parser"`
	AnnotationExclude *bool `yaml:"annotation_exclude"`
	// Parsers are custom parsers, beside the built-in ones.
	Parsers []parser.Config `yaml:"parsers"`
	// (The cache bounds its own API calls on a miss.)
}

// DefaultTagRegex is Fluent Bit's kubernetes filter regex for the
// /var/log/containers file name.
const DefaultTagRegex = `^(?<pod_name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)_(?<namespace_name>[^_]+)_(?<container_name>.+)-(?<docker_id>[a-z0-9]{64})\.log$`

func on(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	c.Kubernetes.SetDefaults()
	if c.TagPrefix == "" {
		c.TagPrefix = "kube.var.log.containers."
	}
	if c.TagRegex == "" {
		c.TagRegex = DefaultTagRegex
	}
	if c.PodKey == "" {
		c.PodKey = "kubernetes.pod_name"
	}
	if c.NamespaceKey == "" {
		c.NamespaceKey = "kubernetes.namespace_name"
	}
	if c.ContainerKey == "" {
		c.ContainerKey = "kubernetes.container_name"
	}
	if c.LogKey == "" {
		c.LogKey = "log"
	}
}

// Validate checks the configuration; error texts start with the field name.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Kubernetes.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("kubernetes.%w", err))
	}
	if re, err := regexp.Compile(c.TagRegex); err != nil {
		errs = append(errs, fmt.Errorf("tag_regex: %w", err))
	} else if re.SubexpIndex("pod_name") < 0 || re.SubexpIndex("namespace_name") < 0 {
		errs = append(errs, errors.New("tag_regex: needs the named groups pod_name and namespace_name"))
	}
	if _, err := parser.NewRegistry(c.Parsers); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Pods looks up pod metadata; *kube.Cache implements it, tests use a map.
type Pods interface {
	Pod(ctx context.Context, namespace, name string) (*kube.Pod, bool)
}

// Enricher enriches records. It is safe for concurrent use.
type Enricher struct {
	cfg      Config
	pods     Pods // nil: no pod metadata, parsing only
	parsers  *parser.Registry
	json     *parser.Parser
	docker   *parser.Parser
	cri      *parser.Parser
	tagRe    *regexp.Regexp
	groups   [4]int // pod_name, namespace_name, container_name, docker_id
	logKey   []byte
	mergeKey []byte

	tags  sync.Map // tag -> *identity
	ntags int64
	mu    sync.Mutex
	kmaps map[kmapKey][]byte // encoded kubernetes maps per pod and container

	m metrics
}

type metrics struct {
	withMeta    prometheus.Counter
	withoutMeta prometheus.Counter
	records     *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	unparsed    *prometheus.CounterVec
	noPodMeta   prometheus.Counter
}

// identity is what a tag says about a record's origin.
type identity struct {
	ok                                  bool
	pod, namespace, container, dockerID string
}

type kmapKey struct {
	pod       *kube.Pod
	container string
	dockerID  string
}

// scratch holds parsed fields while a record is rebuilt.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxCached bounds the per-tag and per-pod caches; past it they start over.
const maxCached = 1 << 16

// New returns an enricher; pods may be nil (no Kubernetes: only the parsing
// steps run).
func New(cfg Config, pods Pods, set component.Settings) (*Enricher, error) {
	set = set.Defaults()
	reg, err := parser.NewRegistry(cfg.Parsers)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(cfg.TagRegex)
	if err != nil {
		return nil, fmt.Errorf("tag_regex: %w", err)
	}
	e := &Enricher{cfg: cfg, pods: pods, parsers: reg, tagRe: re,
		logKey: []byte(cfg.LogKey), mergeKey: []byte(cfg.MergeLogKey), kmaps: make(map[kmapKey][]byte)}
	for i, name := range []string{"pod_name", "namespace_name", "container_name", "docker_id"} {
		e.groups[i] = re.SubexpIndex(name)
	}
	var ok bool
	for _, p := range []struct {
		dst  **parser.Parser
		name string
	}{{&e.json, "json"}, {&e.docker, "docker"}, {&e.cri, "cri"}} {
		if *p.dst, ok = reg.Get(p.name); !ok {
			return nil, fmt.Errorf("enrich: no %s parser", p.name)
		}
	}
	e.m = metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_enrich_records_total",
			Help: "Records enriched, by whether pod metadata was found (kubernetes) or not (none)."}, []string{"metadata"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_enrich_dropped_records_total",
			Help: "Records dropped by enrichment, by reason (exclude: the pod's fluentbit.io/exclude annotation)."}, []string{"reason"}),
		unparsed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_enrich_unparsed_records_total",
			Help: "Records whose log did not match their parser and passed through unparsed, by parser."}, []string{"parser"}),
	}
	set.Registerer.MustRegister(e.m.records, e.m.dropped, e.m.unparsed)
	e.m.withMeta, e.m.withoutMeta = e.m.records.WithLabelValues("kubernetes"), e.m.records.WithLabelValues("none")
	return e, nil
}

// Result is what Enrich did to a record.
type Result struct {
	// Drop is set when the record must not be delivered (excluded pod).
	Drop bool
	// Time is set when parsing found the event time.
	Time    time.Time
	HasTime bool
}

// Enrich appends the enriched form of record (a msgpack map) to dst. The
// record came with tag. When the record cannot be enriched (not a map) it is
// appended unchanged.
func (e *Enricher) Enrich(ctx context.Context, dst []byte, tag string, record []byte) ([]byte, Result, error) {
	var res Result
	var fieldArr [32]field
	fields, err := scan(record, fieldArr[:0])
	if err != nil {
		return append(dst, record...), res, err
	}
	start := len(dst)
	sp := scratch.Get().(*[]byte)
	defer func() { scratch.Put(sp) }()

	// Which pod?
	id := e.identityFromTag(tag)
	if !id.ok {
		id = e.identityFromRecord(record, fields)
	}
	var pod *kube.Pod
	if id.ok && e.pods != nil {
		pod, _ = e.pods.Pod(ctx, id.namespace, id.pod)
	}

	// The log line: a container line the forwarder did not parse?
	logVal, hasLog := fields.str(record, e.logKey)
	stream := fields.strOr(record, "stream", "")
	fromContainerLine := false
	if hasLog && on(e.cfg.ContainerLines, true) {
		if line, str, t, ok := e.containerLine(logVal); ok {
			logVal, stream, fromContainerLine = line, str, true
			res.Time, res.HasTime = t, !t.IsZero()
		}
	}

	// Exclusion and the parser, from the pod's annotations.
	var chosen *parser.Parser
	if pod != nil {
		if on(e.cfg.AnnotationExclude, true) && annotationBool(pod.Annotations, "fluentbit.io/exclude", stream, id.container) {
			e.m.dropped.WithLabelValues("exclude").Inc()
			res.Drop = true
			return dst, res, nil
		}
		if on(e.cfg.AnnotationParser, true) {
			if name, ok := annotation(pod.Annotations, "fluentbit.io/parser", stream, id.container); ok {
				chosen, _ = e.parsers.Get(name)
			}
		}
	}
	merge := on(e.cfg.MergeLog, false) || chosen != nil
	if chosen == nil {
		chosen = e.json
	}

	// Build the record: its own fields (log replaced or dropped, stream
	// and time set by a container line), the merged fields, kubernetes.
	var parsed []byte
	parsedN := 0
	if hasLog && merge {
		line := logVal
		if on(e.cfg.MergeLogTrim, true) {
			line = bytes.TrimRight(line, " \t\r\n")
		}
		var t time.Time
		var hasTime bool
		parsed, parsedN, t, hasTime, err = chosen.Parse((*sp)[:0], line)
		*sp = parsed[:0]
		if err != nil {
			parsed, parsedN = nil, 0
			if chosen != e.json || looksLikeJSON(line) {
				e.m.unparsed.WithLabelValues(chosen.Name()).Inc()
			}
		} else if hasTime && !res.HasTime {
			res.Time, res.HasTime = t, true
		}
	}
	keepLog := on(e.cfg.KeepLog, true) || parsedN == 0
	n := 0
	dst = msgp.AppendMapHeader(dst, 0xffff) // patched below: always 3 bytes (map16)
	hdr := len(dst) - 3
	var k8sExisting []byte
	for _, f := range fields {
		key := record[f.key:f.val]
		switch {
		case bytes.Equal(key[keyHdr(key):], e.logKey):
			if !keepLog {
				continue
			}
			dst = append(dst, key...)
			dst = msgp.AppendStrBytes(dst, logVal)
		case fromContainerLine && bytes.Equal(key[keyHdr(key):], []byte("stream")):
			continue // set from the container line below
		case bytes.Equal(key[keyHdr(key):], []byte("kubernetes")) && pod != nil:
			k8sExisting = record[f.val:f.end]
			continue
		default:
			dst = append(dst, record[f.key:f.end]...)
		}
		n++
	}
	if fromContainerLine && len(stream) > 0 {
		dst = msgp.AppendStr(dst, "stream")
		dst = msgp.AppendStrBytes(dst, stream)
		n++
	}
	if parsedN > 0 {
		if len(e.mergeKey) > 0 {
			dst = msgp.AppendStrBytes(dst, e.mergeKey)
			dst = msgp.AppendMapHeader(dst, parsedN)
			dst = append(dst, parsed...)
			n++
		} else {
			dst = append(dst, parsed...)
			n += parsedN
		}
	}
	if pod != nil {
		dst = msgp.AppendStr(dst, "kubernetes")
		dst = e.appendKubernetes(dst, pod, id, k8sExisting)
		n++
		e.m.withMeta.Inc()
	} else {
		e.m.withoutMeta.Inc()
	}
	if n > 0xffff {
		return append(dst[:start], record...), Result{}, errors.New("enrich: record has too many fields")
	}
	dst[hdr], dst[hdr+1], dst[hdr+2] = 0xde, byte(n>>8), byte(n)
	return dst, res, nil
}

// containerLine parses a docker JSON or CRI line in the log field.
func (e *Enricher) containerLine(line []byte) (msg, stream []byte, t time.Time, ok bool) {
	var p *parser.Parser
	switch {
	case bytes.HasPrefix(line, []byte(`{"log":`)):
		p = e.docker
	case len(line) > 30 && line[4] == '-' && line[10] == 'T' && (bytes.Contains(line[:48], []byte(" stdout ")) || bytes.Contains(line[:48], []byte(" stderr "))):
		p = e.cri
	default:
		return nil, nil, t, false
	}
	out, pairs, tm, hasTime, err := p.Parse(nil, line)
	if err != nil {
		e.m.unparsed.WithLabelValues(p.Name()).Inc()
		return nil, nil, t, false
	}
	// Read back the message and the stream from the parsed pairs.
	off := 0
	for i := 0; i < pairs; i++ {
		k, next, err := msgp.ReadBytes(out, off)
		if err != nil {
			return nil, nil, t, false
		}
		switch string(k) {
		case "log", "message":
			if v, n2, err := msgp.ReadBytes(out, next); err == nil {
				msg, off = v, n2
				continue
			}
		case "stream":
			if v, n2, err := msgp.ReadBytes(out, next); err == nil {
				stream, off = v, n2
				continue
			}
		}
		if off, err = msgp.Skip(out, next); err != nil {
			return nil, nil, t, false
		}
	}
	if msg == nil {
		return nil, nil, t, false
	}
	if !hasTime {
		tm = time.Time{}
	}
	return msg, stream, tm, true
}

func looksLikeJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// identityFromTag reads the pod from a Kubernetes tail tag, cached per tag.
func (e *Enricher) identityFromTag(tag string) identity {
	if v, ok := e.tags.Load(tag); ok {
		return *v.(*identity)
	}
	id := &identity{}
	if rest, ok := strings.CutPrefix(tag, e.cfg.TagPrefix); ok {
		if m := e.tagRe.FindStringSubmatch(rest); m != nil {
			id.ok = true
			id.pod, id.namespace = m[e.groups[0]], m[e.groups[1]]
			if e.groups[2] >= 0 {
				id.container = m[e.groups[2]]
			}
			if e.groups[3] >= 0 {
				id.dockerID = m[e.groups[3]]
			}
		}
	}
	e.mu.Lock()
	if e.ntags >= maxCached {
		e.tags.Clear()
		e.ntags = 0
	}
	e.ntags++
	e.mu.Unlock()
	e.tags.Store(tag, id)
	return *id
}

// identityFromRecord reads the pod from fields of the record.
func (e *Enricher) identityFromRecord(record []byte, fields fieldList) identity {
	pod, ok1 := fields.path(record, e.cfg.PodKey)
	ns, ok2 := fields.path(record, e.cfg.NamespaceKey)
	if !ok1 || !ok2 {
		return identity{}
	}
	c, _ := fields.path(record, e.cfg.ContainerKey)
	return identity{ok: true, pod: string(pod), namespace: string(ns), container: string(c)}
}

// annotation returns the most specific of Fluent Bit's annotation
// variants: <base>_<stream>-<container>, <base>-<container>,
// <base>_<stream>, <base>.
func annotation(a map[string]string, base string, stream []byte, container string) (string, bool) {
	if len(a) == 0 {
		return "", false
	}
	// Keys are put together in a buffer on the stack: a map index with
	// string(k) does not copy k, so a record costs no allocation.
	var buf [128]byte
	k := append(buf[:0], base...)
	if len(stream) > 0 && container != "" {
		k = append(append(append(append(k, '_'), stream...), '-'), container...)
		if v, ok := a[string(k)]; ok {
			return v, true
		}
	}
	if container != "" {
		k = append(append(k[:len(base)], '-'), container...)
		if v, ok := a[string(k)]; ok {
			return v, true
		}
	}
	if len(stream) > 0 {
		k = append(append(k[:len(base)], '_'), stream...)
		if v, ok := a[string(k)]; ok {
			return v, true
		}
	}
	v, ok := a[base]
	return v, ok
}

func annotationBool(a map[string]string, base string, stream []byte, container string) bool {
	v, ok := annotation(a, base, stream, container)
	return ok && strings.EqualFold(strings.TrimSpace(v), "true")
}

// appendKubernetes appends the kubernetes map of Fluent Bit's kubernetes
// filter. Keys the record's own kubernetes map already has are kept, the
// others are added.
func (e *Enricher) appendKubernetes(dst []byte, pod *kube.Pod, id identity, existing []byte) []byte {
	base := e.kubernetesMap(pod, id)
	if existing == nil {
		return append(dst, base...)
	}
	// Complete the record's map: its keys first, then ours it lacks.
	have, err := scan(existing, nil)
	if err != nil {
		return append(dst, base...)
	}
	ours, _ := scan(base, nil)
	n := len(have)
	for _, f := range ours {
		if !have.has(existing, base[f.key:f.val]) {
			n++
		}
	}
	dst = msgp.AppendMapHeader(dst, n)
	for _, f := range have {
		dst = append(dst, existing[f.key:f.end]...)
	}
	for _, f := range ours {
		if !have.has(existing, base[f.key:f.val]) {
			dst = append(dst, base[f.key:f.end]...)
		}
	}
	return dst
}

// kubernetesMap encodes the kubernetes map of a pod's container once, cached
// until the pod changes (the cache hands out a new *Pod then).
func (e *Enricher) kubernetesMap(pod *kube.Pod, id identity) []byte {
	key := kmapKey{pod: pod, container: id.container, dockerID: id.dockerID}
	e.mu.Lock()
	b, ok := e.kmaps[key]
	e.mu.Unlock()
	if ok {
		return b
	}
	type kv struct{ k, v string }
	var c kube.Container
	for _, cc := range pod.Containers {
		if cc.Name == id.container {
			c = cc
		}
	}
	dockerID := id.dockerID
	if dockerID == "" && c.ContainerID != "" {
		if i := strings.Index(c.ContainerID, "://"); i >= 0 {
			dockerID = c.ContainerID[i+3:]
		} else {
			dockerID = c.ContainerID
		}
	}
	fields := []kv{{"pod_name", pod.Name}, {"namespace_name", pod.Namespace}, {"pod_id", pod.UID}}
	n := len(fields)
	withLabels := on(e.cfg.Labels, true) && len(pod.Labels) > 0
	withAnnotations := on(e.cfg.Annotations, true) && len(pod.Annotations) > 0
	tail := []kv{{"host", pod.Node}, {"container_name", id.container}, {"docker_id", dockerID},
		{"container_hash", c.Hash()}, {"container_image", c.Image}}
	for _, t := range tail {
		if t.v != "" {
			n++
		}
	}
	if withLabels {
		n++
	}
	if withAnnotations {
		n++
	}
	withNSLabels := len(pod.NamespaceLabels) > 0
	if withNSLabels {
		n++
	}
	b = msgp.AppendMapHeader(nil, n)
	for _, f := range fields {
		b = msgp.AppendStr(msgp.AppendStr(b, f.k), f.v)
	}
	if withLabels {
		b = appendStringMap(msgp.AppendStr(b, "labels"), pod.Labels)
	}
	if withAnnotations {
		b = appendStringMap(msgp.AppendStr(b, "annotations"), pod.Annotations)
	}
	if withNSLabels {
		b = appendStringMap(msgp.AppendStr(b, "namespace_labels"), pod.NamespaceLabels)
	}
	for _, t := range tail {
		if t.v != "" {
			b = msgp.AppendStr(msgp.AppendStr(b, t.k), t.v)
		}
	}
	e.mu.Lock()
	if len(e.kmaps) >= maxCached {
		e.kmaps = make(map[kmapKey][]byte)
	}
	e.kmaps[key] = b
	e.mu.Unlock()
	return b
}

// appendStringMap appends m with its keys sorted, as Fluent Bit emits them.
func appendStringMap(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	b = msgp.AppendMapHeader(b, len(keys))
	for _, k := range keys {
		b = msgp.AppendStr(msgp.AppendStr(b, k), m[k])
	}
	return b
}
