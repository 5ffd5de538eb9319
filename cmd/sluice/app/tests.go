package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/enrich/kube"
	"github.com/sluicelog/sluice/ingest/multiline"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/jsonl"
	"github.com/sluicelog/sluice/internal/msgp"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/transform"
)

// testEpoch is the event time of test records that give none.
var testEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// RunTests runs the configuration's tests (cfg.Tests) through the code the
// server runs, without JetStream or any destination: multiline joining as a
// Forward connection does it, enrichment with the test's pods, the global
// transforms, and each sink's match, condition and transforms. It writes a
// line per test, and for a failing one what differs, and returns how many
// failed. cfg must be valid.
func RunTests(ctx context.Context, cfg *config.Config, w io.Writer) (failed int, err error) {
	for _, tc := range cfg.Tests {
		problems, err := runTest(ctx, cfg, tc)
		if err != nil {
			return failed, fmt.Errorf("test %q: %w", tc.Name, err)
		}
		if len(problems) == 0 {
			fmt.Fprintf(w, "ok   %s\n", tc.Name)
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL %s\n", tc.Name)
		for _, p := range problems {
			fmt.Fprintf(w, "     %s\n", strings.ReplaceAll(p, "\n", "\n     "))
		}
	}
	return failed, nil
}

// testPods serves a test's pods to enrichment.
type testPods map[string]*kube.Pod

func (p testPods) Pod(_ context.Context, ns, name string) (*kube.Pod, bool) {
	pod, ok := p[ns+"/"+name]
	return pod, ok
}

func runTest(ctx context.Context, cfg *config.Config, tc config.Test) ([]string, error) {
	pods := testPods{}
	for _, p := range tc.Pods {
		pod := &kube.Pod{Name: p.Name, Namespace: p.Namespace, UID: p.UID, Node: p.Node, Labels: p.Labels, Annotations: p.Annotations}
		for _, c := range p.Containers {
			pod.Containers = append(pod.Containers, kube.Container{Name: c.Name, Image: c.Image})
		}
		pods[p.Namespace+"/"+p.Name] = pod
	}
	// An App that only builds the pipeline: its own registry, no cluster.
	a := &App{cfg: cfg, reg: prometheus.NewRegistry(), pods: pods}
	a.set = component.Settings{Registerer: a.reg, Now: func() time.Time { return testEpoch }}.Defaults()
	enrichment, err := a.startEnrichment(ctx)
	if err != nil {
		return nil, err
	}
	tm := transform.NewMetrics(a.reg)
	global, err := transform.Compile(cfg.Transforms, "global", tm)
	if err != nil {
		return nil, fmt.Errorf("transforms%w", err)
	}
	pipeline := pipelineTransform(enrichment, global)

	chunks, err := testChunks(cfg, tc.Input)
	if err != nil {
		return nil, err
	}
	var recs []sinks.Record
	for _, c := range chunks {
		for off, i := 0, 0; off < len(c.Entries); i++ {
			e, next, err := chunk.ReadEntry(c.Entries, off)
			if err != nil {
				return nil, err
			}
			recs = append(recs, sinks.Record{Tag: c.Tag, Entry: e, Index: i})
			off = next
		}
	}
	var problems []string
	names := make([]string, 0, len(tc.Expect))
	for name := range tc.Expect {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		i := slices.IndexFunc(cfg.Sinks, func(s config.SinkConfig) bool { return s.Name == name })
		stages, err := sinkStages(cfg.Sinks[i], pipeline, global, tm)
		if err != nil {
			return nil, err
		}
		got := stages.Process(ctx, slices.Clone(recs))
		problems = append(problems, compareSink(name, got, tc.Expect[name])...)
	}
	return problems, nil
}

// testChunks turns the input into chunks, consecutive records of one tag
// together, and joins multiline groups as a Forward connection would, the
// open groups flushed at the end (as when the connection closes).
func testChunks(cfg *config.Config, input []config.TestRecord) ([]*chunk.Chunk, error) {
	var chunks []*chunk.Chunk
	for _, in := range input {
		at := in.Time
		if at.IsZero() {
			at = testEpoch
		}
		rec, err := msgpack.Marshal(in.Record)
		if err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		if len(chunks) == 0 || chunks[len(chunks)-1].Tag != in.Tag {
			chunks = append(chunks, &chunk.Chunk{Tag: in.Tag})
		}
		c := chunks[len(chunks)-1]
		c.Entries = msgp.AppendArrayHeader(c.Entries, 2)
		c.Entries = msgp.AppendEventTime(c.Entries, uint32(at.Unix()), uint32(at.Nanosecond()))
		c.Entries = append(c.Entries, rec...)
		c.Count++
	}
	ml := cfg.Forward.Multiline
	if !ml.Enabled() {
		return chunks, nil
	}
	j, err := multiline.New(&ml, multiline.NewMetrics(nil))
	if err != nil {
		return nil, err
	}
	var out []*chunk.Chunk
	for i, c := range chunks {
		entries, n, err := j.Add(nil, c.Tag, fmt.Sprint("test-", i), c.Entries, uint64(i), testEpoch)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out = append(out, &chunk.Chunk{Tag: c.Tag, Entries: entries, Count: n})
		}
	}
	for _, f := range j.Expired(testEpoch, true) {
		out = append(out, &chunk.Chunk{Tag: f.Tag, Entries: f.Entries, Count: f.Count})
	}
	return out, nil
}

// compareSink reports how what a sink received differs from what the test
// expects of it.
func compareSink(name string, got []sinks.Record, want []map[string]any) []string {
	var problems []string
	views := make([]map[string]any, len(got))
	for i, r := range got {
		b, _, err := jsonl.AppendValue(nil, r.Record, 0)
		if err == nil {
			err = json.Unmarshal(b, &views[i])
		}
		if err != nil {
			return []string{fmt.Sprintf("sink %s: record %d cannot be read: %v", name, i+1, err)}
		}
	}
	if len(got) != len(want) {
		problems = append(problems, fmt.Sprintf("sink %s: received %d records, want %d", name, len(got), len(want)))
	}
	for i := range min(len(got), len(want)) {
		for _, d := range subsetDiff("", normalize(want[i]), views[i]) {
			problems = append(problems, fmt.Sprintf("sink %s: record %d: %s", name, i+1, d))
		}
	}
	if len(problems) > 0 {
		for i, v := range views {
			b, _ := json.Marshal(v)
			problems = append(problems, fmt.Sprintf("sink %s received %d: %s", name, i+1, b))
		}
	}
	return problems
}

// normalize turns a value decoded from YAML into what JSON decoding gives,
// so that they compare: numbers as float64, maps with string keys.
func normalize(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// subsetDiff lists the fields of want that got lacks or holds otherwise.
func subsetDiff(path string, want, got map[string]any) []string {
	var out []string
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := k
		if path != "" {
			p = path + "." + k
		}
		g, ok := got[k]
		if !ok {
			out = append(out, fmt.Sprintf("%s: missing, want %s", p, jsonText(want[k])))
			continue
		}
		wm, wIsMap := want[k].(map[string]any)
		gm, gIsMap := g.(map[string]any)
		if wIsMap && gIsMap {
			out = append(out, subsetDiff(p, wm, gm)...)
			continue
		}
		if !reflect.DeepEqual(want[k], g) {
			out = append(out, fmt.Sprintf("%s: got %s, want %s", p, jsonText(g), jsonText(want[k])))
		}
	}
	return out
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
