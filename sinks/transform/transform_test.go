package transform

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmihailenco/msgpack/v5"
	"gopkg.in/yaml.v3"

	"github.com/sluicelog/sluice/internal/msgp"
)

const tag = "kube.var.log.containers.web-1_shop_nginx-abc.log"

// enriched is a typical container record after enrichment.
func enriched() map[string]any {
	return map[string]any{
		"log":    "GET /item/42 HTTP/1.1 200 512 user=ann@example.com",
		"stream": "stdout",
		"level":  "info",
		"kubernetes": map[string]any{
			"pod_name": "web-1", "namespace_name": "shop", "pod_id": "uid-1", "host": "node-a",
			"container_name": "nginx", "container_image": "nginx:1.27",
			"labels":      map[string]any{"app": "web", "tier": "front"},
			"annotations": map[string]any{"prometheus.io/scrape": "true", "team": "shop"},
		},
	}
}

func pack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// norm turns a value into its JSON form, so that numbers compare alike.
func norm(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func compile(t testing.TB, src string, m *Metrics) *Pipeline {
	t.Helper()
	var steps []Step
	if err := yaml.Unmarshal([]byte(src), &steps); err != nil {
		t.Fatal(err)
	}
	p, err := Compile(steps, "global", m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t testing.TB, p *Pipeline, rec map[string]any) (map[string]any, bool) {
	t.Helper()
	out, keep := p.Apply([]byte("prefix"), tag, pack(t, rec))
	if string(out[:6]) != "prefix" {
		t.Fatal("Apply did not append to dst")
	}
	if !keep {
		return nil, false
	}
	var m map[string]any
	if err := msgpack.Unmarshal(out[6:], &m); err != nil {
		t.Fatalf("output is not a msgpack map: %v", err)
	}
	return m, true
}

func TestSteps(t *testing.T) {
	host, _ := os.Hostname()
	for _, c := range []struct {
		name, steps string
		edit        func(m map[string]any)
	}{
		{"set literals and nested paths", `
- set: {cluster: prod-eu-1, a.b.c: 1, on: true, none: null, list: [1, x], log: replaced}`,
			func(m map[string]any) {
				m["cluster"], m["a"], m["on"], m["none"], m["list"], m["log"] = "prod-eu-1", map[string]any{"b": map[string]any{"c": 1}}, true, nil, []any{1, "x"}, "replaced"
			}},
		{"add only where missing", `
- add: {level: debug, kubernetes.cluster: c1}`,
			func(m map[string]any) { m["kubernetes"].(map[string]any)["cluster"] = "c1" }},
		{"templates: fields, tag, tag parts, hostname", `
- set: {ns: "${kubernetes.namespace_name}/${kubernetes.pod_name}", src: "${tag[0]}-${tag}", host: "${hostname}"}`,
			func(m map[string]any) {
				m["ns"], m["src"], m["host"] = "shop/web-1", "kube-"+tag, host
			}},
		{"computed values", `
- set: {severity: {expr: 'level == "error" ? 3 : 6'}, size: {expr: 'len(log)'}}`,
			func(m map[string]any) {
				m["severity"], m["size"] = 6, len(m["log"].(string))
			}},
		{"rename, also into a new map and from a nested one", `
- rename: {log: message, kubernetes.pod_name: pod.name}`,
			func(m map[string]any) {
				k := m["kubernetes"].(map[string]any)
				m["message"], m["pod"] = m["log"], map[string]any{"name": k["pod_name"]}
				delete(m, "log")
				delete(k, "pod_name")
			}},
		{"rename every key of a map", `
- rename: {kubernetes.labels.*: labels.*, kubernetes.annotations.*: "*"}`,
			func(m map[string]any) {
				k := m["kubernetes"].(map[string]any)
				m["labels"] = k["labels"]
				for a, v := range k["annotations"].(map[string]any) {
					m[a] = v
				}
				k["labels"], k["annotations"] = map[string]any{}, map[string]any{}
			}},
		{"copy", `
- copy: {kubernetes.namespace_name: namespace, kubernetes.labels: labels}`,
			func(m map[string]any) {
				k := m["kubernetes"].(map[string]any)
				m["namespace"], m["labels"] = k["namespace_name"], k["labels"]
			}},
		{"remove, and every key of a map", `
- remove: [stream, kubernetes.annotations.*, kubernetes.pod_id, missing, missing.deeper]`,
			func(m map[string]any) {
				k := m["kubernetes"].(map[string]any)
				delete(m, "stream")
				delete(k, "pod_id")
				k["annotations"] = map[string]any{}
			}},
		{"keep an allowlist", `
- keep: [log, kubernetes.pod_name, kubernetes.labels]`,
			func(m map[string]any) {
				k := m["kubernetes"].(map[string]any)
				for key := range m {
					if key != "log" && key != "kubernetes" {
						delete(m, key)
					}
				}
				m["kubernetes"] = map[string]any{"pod_name": k["pod_name"], "labels": k["labels"]}
			}},
		{"lift with a prefix", `
- lift: {field: kubernetes, prefix: k8s_}`,
			func(m map[string]any) {
				for key, v := range m["kubernetes"].(map[string]any) {
					m["k8s_"+key] = v
				}
				delete(m, "kubernetes")
			}},
		{"lift then nest back: the record comes out as it went in", `
- lift: {field: kubernetes, prefix: kubernetes_}
- nest: {fields: ["kubernetes_*"], under: kubernetes, remove_prefix: kubernetes_}`,
			func(map[string]any) {}},
		{"nest into an existing map", `
- nest: {fields: [stream, lev*], under: kubernetes}`,
			func(m map[string]any) {
				k := m["kubernetes"].(map[string]any)
				k["stream"], k["level"] = m["stream"], m["level"]
				delete(m, "stream")
				delete(m, "level")
			}},
		{"a condition limits a step", `
- set: {hit: yes}
  condition: 'kubernetes.namespace_name == "shop"'
- set: {miss: yes}
  condition: 'level == "error"'`,
			func(m map[string]any) { m["hit"] = "yes" }},
		{"redact a field", `
- redact: {fields: [log], patterns: [email]}`,
			func(m map[string]any) { m["log"] = "GET /item/42 HTTP/1.1 200 512 user=[REDACTED]" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := compile(t, c.steps, nil)
			got, keep := run(t, p, enriched())
			if !keep {
				t.Fatal("record dropped")
			}
			want := enriched()
			c.edit(want)
			if g, w := norm(t, got), norm(t, want); !reflect.DeepEqual(g, w) {
				gj, _ := json.Marshal(g)
				wj, _ := json.Marshal(w)
				t.Errorf("got  %s\nwant %s", gj, wj)
			}
		})
	}
}

// New fields come after the existing ones, in the order written.
func TestOrder(t *testing.T) {
	p := compile(t, `[{set: {z: 1, a: 2, m: 3}}]`, nil)
	out, _ := p.Apply(nil, tag, pack(t, map[string]any{"first": 0}))
	dec := msgpack.NewDecoder(strings.NewReader(string(out)))
	n, err := dec.DecodeMapLen()
	if err != nil || n != 4 {
		t.Fatalf("map of %d, %v", n, err)
	}
	var keys []string
	for i := 0; i < n; i++ {
		k, _ := dec.DecodeString()
		keys = append(keys, k)
		_ = dec.Skip()
	}
	if strings.Join(keys, ",") != "first,z,a,m" {
		t.Errorf("keys in order %v", keys)
	}
}

func TestDropCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := compile(t, `
- drop: true
  condition: 'level == "debug"'`, m)
	rec := enriched()
	if _, keep := run(t, p, rec); !keep {
		t.Fatal("an info record was dropped")
	}
	rec["level"] = "debug"
	if _, keep := run(t, p, rec); keep {
		t.Fatal("a debug record was kept")
	}
	if got := testutil.ToFloat64(m.dropped.WithLabelValues("global", "0:drop")); got != 1 {
		t.Errorf("dropped counter %v", got)
	}
}

// A step that fails on a record leaves it as it was and is counted; the
// steps after it still run.
func TestRuntimeFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := compile(t, `
- set: {ns: "${kubernetes.missing}"}
- set: {n: {expr: 'log + 1 > 0'}}
- set: {stream.inner: x}
- set: {after: ok}`, m)
	got, _ := run(t, p, enriched())
	want := enriched()
	want["after"] = "ok"
	if !reflect.DeepEqual(norm(t, got), norm(t, want)) {
		t.Errorf("got %v", got)
	}
	for _, step := range []string{"0:set", "1:set", "2:set"} {
		if n := testutil.ToFloat64(m.errors.WithLabelValues("global", step)); n != 1 {
			t.Errorf("errors of step %s: %v, want 1", step, n)
		}
	}
}

func TestRedact(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := compile(t, `
- redact:
    patterns: [credit_card, email, bearer_token, aws_access_key_id]
    rules: [{name: session, regex: 'session=([0-9a-f]{8})'}]`, m)
	rec := map[string]any{
		"log":     "paid with 4111 1111 1111 1111, not 4111 1111 1111 1112; mail bob@example.org",
		"headers": map[string]any{"authorization": "Bearer eyJhbGciOi.J9.x-y_z"},
		"keys":    []any{"AKIAABCDEFGHIJKLMNOP", 7, "session=deadbeef ok"},
		"clean":   "nothing here 12345",
	}
	got, _ := run(t, p, rec)
	want := map[string]any{
		"log":     "paid with [REDACTED], not 4111 1111 1111 1112; mail [REDACTED]",
		"headers": map[string]any{"authorization": "Bearer [REDACTED]"},
		"keys":    []any{"[REDACTED]", 7, "session=[REDACTED] ok"},
		"clean":   "nothing here 12345",
	}
	if g, w := norm(t, got), norm(t, want); !reflect.DeepEqual(g, w) {
		t.Errorf("got  %v\nwant %v", g, w)
	}
	for rule, n := range map[string]float64{"credit_card": 1, "email": 1, "bearer_token": 1, "aws_access_key_id": 1, "session": 1} {
		if c := testutil.ToFloat64(m.redactions.WithLabelValues("global", rule)); c != n {
			t.Errorf("rule %s counted %v, want %v", rule, c, n)
		}
	}

	// A keyed hash: the same secret gives the same text, another key another.
	h1 := compile(t, `[{redact: {fields: [a, b], patterns: [email], with: hash, hash_key: k1}}]`, nil)
	h2 := compile(t, `[{redact: {fields: [a], patterns: [email], with: hash, hash_key: k2}}]`, nil)
	r := map[string]any{"a": "to x@y.io", "b": "x@y.io", "c": "x@y.io"}
	g1, _ := run(t, h1, r)
	g2, _ := run(t, h2, r)
	if !strings.HasPrefix(g1["a"].(string), "to [hmac:") || g1["a"].(string)[3:] != g1["b"] || g1["c"] != "x@y.io" || g1["a"] == g2["a"] {
		t.Errorf("hashes: %v and %v", g1, g2)
	}

	// Scrub finds what any redact step would, in every string.
	scrubbed := Scrub(nil, pack(t, map[string]any{"x": map[string]any{"y": "mail x@y.io"}}), nil, h1)
	var sm map[string]any
	_ = msgpack.Unmarshal(scrubbed, &sm)
	if s := sm["x"].(map[string]any)["y"].(string); strings.Contains(s, "x@y.io") {
		t.Errorf("scrubbed: %q", s)
	}
}

func TestLuhn(t *testing.T) {
	for s, want := range map[string]bool{
		"4111111111111111": true, "4111-1111-1111-1111": true, "5500 0000 0000 0004": true,
		"4111111111111112": false, "1234": false, "378282246310005": true,
	} {
		if luhn([]byte(s)) != want {
			t.Errorf("luhn(%s) != %v", s, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for src, want := range map[string]string{
		`[{condition: 'a'}]`:                                 "[0].no operation",
		`[{set: {a: 1}, remove: [b]}]`:                       "[0].several operations (set, remove)",
		`[{set: {a: 1}}, {set: {sev: {expr: 'level ==='}}}]`: "[1].set.sev: expr:",
		`[{set: {a: 1}, condition: 'x ==='}]`:                "[0].condition:",
		`[{drop: true}]`:                                     "[0].drop: needs a condition",
		`[{rename: {a.*: b}}]`:                               "[0].rename.a.*: both sides",
		`[{rename: {a: a.b}}]`:                               "[0].rename.a: cannot move a field into itself",
		`[{remove: [a..b]}]`:                                 "[0].remove.a..b: path",
		`[{remove: ["a.*.b"]}]`:                              "* only as the last part",
		`[{redact: {patterns: [ssn]}}]`:                      "[0].redact.patterns: \"ssn\"",
		`[{redact: {rules: [{name: x, regex: '(('}]}}]`:      "[0].redact.rules[0].regex",
		`[{redact: {patterns: [email], with: hash}}]`:        "[0].redact.hash_key",
		`[{set: {"a": "${tag[x]}"}}]`:                        "[0].set.a:",
		`[{nest: {fields: [a], under: b.c}}]`:                "[0].nest.under",
	} {
		var steps []Step
		if err := yaml.Unmarshal([]byte(src), &steps); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		_, err := Compile(steps, "global", nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
}

// fiveSteps is the pipeline of the benchmark and of the allocation test.
const fiveSteps = `
- set: {cluster: prod-eu-1}
- rename: {stream: source}
- remove: [kubernetes.annotations]
- lift: {field: kubernetes, prefix: k8s_}
- redact: {fields: [log], patterns: [credit_card, aws_access_key_id]}
`

// The five-step pipeline allocates nothing in steady state.
func TestFiveStepsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race (go test ./sinks/transform/)")
	}
	p := compile(t, fiveSteps, nil)
	rec := pack(t, enriched())
	dst := make([]byte, 0, 4096)
	p.Apply(dst, tag, rec)
	if n := testing.AllocsPerRun(200, func() { dst, _ = p.Apply(dst[:0], tag, rec) }); n != 0 {
		t.Errorf("%v allocations per record", n)
	}
}

// go test -run '^$' -bench . -benchmem ./sinks/transform/
func BenchmarkFiveSteps(b *testing.B) {
	p := compile(b, fiveSteps, nil)
	rec := pack(b, enriched())
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for i := 0; i < b.N; i++ {
		dst, _ = p.Apply(dst[:0], tag, rec)
	}
}

func BenchmarkRedactEveryString(b *testing.B) {
	p := compile(b, `[{redact: {patterns: [credit_card, email, bearer_token, aws_access_key_id]}}]`, nil)
	rec := pack(b, enriched())
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dst, _ = p.Apply(dst[:0], tag, rec)
	}
}

func BenchmarkExprStep(b *testing.B) {
	p := compile(b, `[{set: {severity: {expr: 'level == "error" ? 3 : 6'}}}]`, nil)
	rec := pack(b, enriched())
	b.Logf("record of %d bytes", len(rec))
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dst, _ = p.Apply(dst[:0], tag, rec)
	}
}

// Any bytes through a pipeline that uses every step: no panic, and one
// msgpack value in gives one msgpack value out.
func FuzzApply(f *testing.F) {
	p := compile(f, `
- set: {a.b: 1, t: "${tag[0]}"}
- add: {c: x}
- rename: {log: message, kubernetes.labels.*: labels.*}
- copy: {message: m2}
- remove: [stream, kubernetes.annotations.*]
- lift: {field: kubernetes, prefix: k_}
- nest: {fields: ["k_*"], under: k, remove_prefix: k_}
- keep: [a, c, t, message, m2, labels, k, level]
- redact: {patterns: [credit_card, email], rules: [{name: x, regex: 'x(\d+)'}]}
- redact: {fields: [message], patterns: [aws_access_key_id], with: hash, hash_key: k}
`, nil)
	f.Add(pack(f, enriched()))
	f.Add(pack(f, map[string]any{"log": []any{"a@b.cc", map[string]any{"x": "x12"}}, "kubernetes": "flat"}))
	f.Add([]byte{0x81, 0xa1, 'a', 0xc1})
	f.Add([]byte{0x90})
	f.Fuzz(func(t *testing.T, rec []byte) {
		out, keep := p.Apply(nil, tag, rec)
		if !keep {
			t.Fatal("no drop step, yet dropped")
		}
		if end, err := msgp.Skip(rec, 0); err != nil || end != len(rec) {
			return // not one value: ingest never lets such a record through
		}
		if end, err := msgp.Skip(out, 0); err != nil || end != len(out) {
			t.Fatalf("output is not one msgpack value (%v, %d of %d bytes)", err, end, len(out))
		}
	})
}
