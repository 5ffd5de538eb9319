package elasticsearch

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/msgp"
)

func rewrite(t *testing.T, cfg Config, in map[string]any) map[string]any {
	t.Helper()
	cfg.SetDefaults()
	rec, err := msgpack.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	w := newRewriter(cfg)
	if w == nil {
		return in
	}
	out, changed, err := w.Append([]byte("keep"), rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(out[:4]) != "keep" {
		t.Fatal("Append overwrote dst")
	}
	if !changed {
		if len(out) != 4 {
			t.Fatalf("Append copied %d bytes of a record it did not change", len(out)-4)
		}
		out = append(out, rec...)
	} else if bytes.Equal(out[4:], rec) {
		t.Fatal("Append said it changed a record it copied as it was")
	}
	var got map[string]any
	if err := msgpack.Unmarshal(out[4:], &got); err != nil {
		t.Fatalf("rewritten record is not msgpack: %v", err)
	}
	return got
}

func k8s(labels, annotations map[string]any) map[string]any {
	return map[string]any{"pod_name": "web-1", "labels": labels, "annotations": annotations}
}

func TestRewriteReplaceDots(t *testing.T) {
	in := map[string]any{
		"log.level": "info",
		"kubernetes": k8s(
			map[string]any{"app": "web", "app.kubernetes.io/name": "web", "pod-template-hash": "abc"},
			map[string]any{"prometheus.io/scrape": "true"}),
		"nested": map[string]any{"a.b": []any{map[string]any{"c.d": 1}, "e.f"}},
	}
	cases := []struct {
		scope string
		want  map[string]any
	}{
		{DotsKubernetes, map[string]any{
			"log.level": "info",
			"kubernetes": k8s(
				map[string]any{"app": "web", "app_kubernetes_io/name": "web", "pod-template-hash": "abc"},
				map[string]any{"prometheus_io/scrape": "true"}),
			"nested": map[string]any{"a.b": []any{map[string]any{"c.d": int8(1)}, "e.f"}},
		}},
		{DotsAll, map[string]any{
			"log_level": "info",
			"kubernetes": k8s(
				map[string]any{"app": "web", "app_kubernetes_io/name": "web", "pod-template-hash": "abc"},
				map[string]any{"prometheus_io/scrape": "true"}),
			"nested": map[string]any{"a_b": []any{map[string]any{"c_d": int8(1)}, "e.f"}},
		}},
	}
	for _, c := range cases {
		got := rewrite(t, Config{ReplaceDots: c.scope}, in)
		if !reflect.DeepEqual(normalize(got), normalize(c.want)) {
			t.Errorf("%s:\n got %#v\nwant %#v", c.scope, got, c.want)
		}
	}
	if newRewriter(func() Config { c := Config{ReplaceDots: DotsNone}; c.SetDefaults(); return c }()) != nil {
		t.Error("replace_dots none without remove_keys should not rewrite")
	}
}

func TestRewriteReplacementOfOtherLength(t *testing.T) {
	got := rewrite(t, Config{ReplaceDots: DotsAll, ReplaceDotsWith: "__"}, map[string]any{"a.b.c": 1, "": "empty", "x": "y.z"})
	want := map[string]any{"a__b__c": int8(1), "": "empty", "x": "y.z"}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("got %#v", got)
	}
}

func TestRewriteRemoveKeys(t *testing.T) {
	in := map[string]any{
		"log": "x", "stream": "stdout",
		"kubernetes": map[string]any{"pod_id": "123", "pod_name": "web-1", "labels": map[string]any{"a.b": "c"}},
	}
	got := rewrite(t, Config{RemoveKeys: []string{"stream", "kubernetes.pod_id", "missing", "log.deeper"}}, in)
	want := map[string]any{"log": "x", "kubernetes": map[string]any{"pod_name": "web-1", "labels": map[string]any{"a_b": "c"}}}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
}

// A record with nothing to rewrite is used as it is, and one whose only
// change comes after other keys and nested maps keeps them byte for byte.
func TestRewriteCopiesOnlyChanges(t *testing.T) {
	cfg := Config{RemoveKeys: []string{"kubernetes.pod_id"}}
	cfg.SetDefaults()
	w := newRewriter(cfg)
	plain, err := msgpack.Marshal(map[string]any{"log": "x", "stream": "stdout", "nested": map[string]any{"a.b": 1}})
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := w.Append(nil, plain)
	if err != nil || changed || len(out) != 0 {
		t.Fatalf("a record without kubernetes: changed %v, %d bytes, %v", changed, len(out), err)
	}
	labelsNoDots, err := msgpack.Marshal(map[string]any{"kubernetes": k8s(map[string]any{"app": "web"}, map[string]any{"team": "a"})})
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, err := w.Append(nil, labelsNoDots); err != nil || changed {
		t.Fatalf("labels without dots: changed %v, %v", changed, err)
	}

	// A map header is the number of its pairs; the rest are strings.
	build := func(items ...any) []byte {
		var b []byte
		for _, it := range items {
			switch v := it.(type) {
			case int:
				b = msgp.AppendMapHeader(b, v)
			case string:
				b = msgp.AppendStr(b, v)
			}
		}
		return b
	}
	rec := build(2, "log", "x", "kubernetes", 3, "pod_name", "web-1", "pod_id", "123", "labels", 1, "app.kubernetes.io/name", "web")
	want := build(2, "log", "x", "kubernetes", 2, "pod_name", "web-1", "labels", 1, "app_kubernetes_io/name", "web")

	out, changed, err = w.Append([]byte("keep"), rec)
	if err != nil || !changed {
		t.Fatalf("changed %v, %v", changed, err)
	}
	if !bytes.Equal(out, append([]byte("keep"), want...)) {
		t.Errorf("got  %x\nwant %x", out, want)
	}
}

// Keys that are not strings are copied as they are, and a map that keeps
// more than 15 keys after removal gets the right header size.
func TestRewriteOddMaps(t *testing.T) {
	var rec []byte
	rec = msgp.AppendMapHeader(rec, 18)
	rec = msgp.AppendInt(rec, 7)
	rec = msgp.AppendStr(rec, "seven")
	rec = msgp.AppendStr(rec, "drop")
	rec = msgp.AppendStr(rec, "me")
	for i := 0; i < 16; i++ {
		rec = msgp.AppendStr(rec, string(rune('a'+i))+".k")
		rec = msgp.AppendInt(rec, int64(i))
	}
	cfg := Config{ReplaceDots: DotsAll, RemoveKeys: []string{"drop"}}
	cfg.SetDefaults()
	out, _, err := newRewriter(cfg).Append(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	var got map[any]any
	if err := msgpack.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 17 || got[int8(7)] != "seven" || got["a_k"] != int8(0) || got["p_k"] != int8(15) || got["drop"] != nil {
		t.Errorf("got %v", got)
	}
	if _, _, err := newRewriter(cfg).Append(nil, rec[:len(rec)-3]); err == nil {
		t.Error("a truncated record rewrote without an error")
	}
}

// normalize makes numbers comparable after a msgpack round trip.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64:
		return reflect.ValueOf(x).Convert(reflect.TypeOf(int64(0))).Int()
	}
	return v
}
