package multiline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

var t0 = time.Unix(1795332892, 0)

const javaTrace = `2026-01-01 12:00:00 ERROR Request failed
java.lang.IllegalStateException: Order 42 is locked
	at com.shop.Orders.lock(Orders.java:88)
	at com.shop.Api.handle(Api.java:41)
Caused by: java.sql.SQLException: Lock wait timeout exceeded
	at com.mysql.jdbc.SQLError.createSQLException(SQLError.java:1078)
	... 12 more
2026-01-01 12:00:01 INFO next request`

const pythonTrace = `Traceback (most recent call last):
  File "/app/main.py", line 10, in <module>
    main()
  File "/app/main.py", line 6, in main
    raise ValueError("bad input")
ValueError: bad input
INFO done`

const goPanic = `panic: runtime error: index out of range [3] with length 3

goroutine 1 [running]:
main.lookup(...)
	/app/main.go:12
main.main()
	/app/main.go:20 +0x1d

goroutine 6 [chan receive]:
main.worker(0xc000012345)
	/app/worker.go:8 +0x45
created by main.start in goroutine 1
	/app/worker.go:3 +0x2a
exit status 2`

// line is one record a forwarder sends: a docker-style line.
type line struct {
	tag, stream, text string
	extra             map[string]any
}

func entry(l line, i int) []byte {
	rec := map[string]any{"log": l.text, "stream": l.stream, "i": i}
	for k, v := range l.extra {
		rec[k] = v
	}
	return forwardtest.Entry(t0.Add(time.Duration(i)*time.Millisecond), rec)
}

// out is a record stored: its tag and fields.
type out struct {
	tag string
	rec map[string]any
}

// feeder sends lines through a joiner in chunks, one tag per chunk.
type feeder struct {
	t   *testing.T
	j   *Joiner
	ref uint64
	got []out
	now time.Time
}

func newFeeder(t *testing.T, cfg Config) *feeder {
	t.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	j, err := New(&cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &feeder{t: t, j: j, now: t0}
}

func (f *feeder) decode(tag string, entries []byte, n int) {
	f.t.Helper()
	count := 0
	for off := 0; off < len(entries); count++ {
		e, next, err := chunk.ReadEntry(entries, off)
		if err != nil {
			f.t.Fatalf("output entry %d: %v", count, err)
		}
		var m map[string]any
		if err := msgpack.Unmarshal(e.Record, &m); err != nil {
			f.t.Fatal(err)
		}
		f.got = append(f.got, out{tag, m})
		off = next
	}
	if count != n {
		f.t.Fatalf("Add said %d entries, found %d", n, count)
	}
}

// chunk sends lines (all of one tag) as one chunk and returns its ref.
func (f *feeder) chunk(lines []line, first int) uint64 {
	f.t.Helper()
	var p []byte
	for i, l := range lines {
		p = append(p, entry(l, first+i)...)
	}
	ref := f.ref
	f.ref++
	o, n, err := f.j.Add(nil, lines[0].tag, fmt.Sprintf("c%d", ref), p, ref, f.now)
	if err != nil {
		f.t.Fatal(err)
	}
	f.decode(lines[0].tag, o, n)
	return ref
}

func (f *feeder) end() {
	for _, fl := range f.j.Expired(f.now, true) {
		f.decode(fl.Tag, fl.Entries, fl.Count)
	}
}

// logs returns the stored log texts of one tag and stream, in order.
func (f *feeder) logs(tag, stream string) []string {
	var s []string
	for _, o := range f.got {
		if o.tag == tag && o.rec["stream"] == stream {
			s = append(s, o.rec["log"].(string))
		}
	}
	return s
}

func lines(tag, stream, text string) []line {
	var out []line
	for _, t := range strings.Split(text, "\n") {
		out = append(out, line{tag: tag, stream: stream, text: t + "\n"})
	}
	return out
}

func joined(ls []string) string { return strings.Join(ls, "\n") + "\n" }

func eq(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d:\n%q\nwant\n%q", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("record %d:\n%q\nwant\n%q", i, got[i], want[i])
		}
	}
}

// Each trace split across chunk boundaries at every position, with the
// other stream's lines and another container's chunks in between.
func TestTracesAcrossChunks(t *testing.T) {
	for _, c := range []struct {
		parser, trace string
		groups        [][2]int // line ranges [from, to) joined; the rest single
	}{
		{"java", javaTrace, [][2]int{{1, 7}}},
		{"python", pythonTrace, [][2]int{{0, 6}}},
		{"go", goPanic, [][2]int{{0, 13}}},
	} {
		t.Run(c.parser, func(t *testing.T) {
			src := strings.Split(c.trace, "\n")
			var want []string
			for i := 0; i < len(src); {
				inGroup := false
				for _, g := range c.groups {
					if g[0] == i {
						want = append(want, joined(src[g[0]:g[1]]))
						i, inGroup = g[1], true
					}
				}
				if !inGroup {
					want = append(want, src[i]+"\n")
					i++
				}
			}
			const app, other = "kube.var.log.containers.app_ns_c.log", "kube.var.log.containers.web_ns_w.log"
			for cut := 1; cut < len(src); cut++ {
				f := newFeeder(t, Config{Parser: c.parser})
				trace := lines(app, "stderr", c.trace)
				// stdout lines of the same container between the stderr lines
				var first []line
				for i, l := range trace[:cut] {
					first = append(first, l, line{tag: app, stream: "stdout", text: fmt.Sprintf("GET /%d 200\n", i)})
				}
				f.chunk(first, 0)
				f.chunk(lines(other, "stderr", "unrelated one\n\tat not.a.Frame(X.java:1)"), 100)
				f.chunk(trace[cut:], 200)
				f.end()
				eq(t, f.logs(app, "stderr"), want)
				if got := f.logs(app, "stdout"); len(got) != cut {
					t.Errorf("cut %d: %d stdout lines, want %d", cut, len(got), cut)
				}
				if got := f.logs(other, "stderr"); len(got) != 2 && c.parser != "java" {
					t.Errorf("other container: %q", got)
				}
			}
		})
	}
}

func TestPartialLines(t *testing.T) {
	const tag = "kube.a"
	t.Run("cri", func(t *testing.T) {
		f := newFeeder(t, Config{Parser: "cri"})
		p := func(s, flag string) line {
			return line{tag: tag, stream: "stdout", text: s, extra: map[string]any{"_p": flag}}
		}
		f.chunk([]line{p("first ", "P"), p("second ", "P")}, 0)
		f.chunk([]line{p("end", "F"), p("whole", "F")}, 10)
		f.end()
		eq(t, f.logs(tag, "stdout"), []string{"first second end", "whole"})
	})
	t.Run("docker", func(t *testing.T) {
		f := newFeeder(t, Config{Parser: "docker"})
		big := strings.Repeat("x", 16<<10)
		d := func(s string) line { return line{tag: tag, stream: "stdout", text: s} }
		f.chunk([]line{d(big), d(big)}, 0)
		f.chunk([]line{d("tail\n"), d("next\n")}, 10)
		f.end()
		eq(t, f.logs(tag, "stdout"), []string{big + big + "tail\n", "next\n"})
	})
}

// The seed's Fluentd concat: multiline_start_regexp /^\S/, separator "".
func TestConcat(t *testing.T) {
	empty := ""
	f := newFeeder(t, Config{Start: `^\S`, Separator: &empty})
	ls := lines("t", "stdout", "first\n  cont a\n  cont b\nsecond\nthird\n  cont c")
	f.chunk(ls[:2], 0)
	f.chunk(ls[2:], 10)
	f.end()
	eq(t, f.logs("t", "stdout"), []string{"first  cont a  cont b\n", "second\n", "third  cont c\n"})

	f = newFeeder(t, Config{Continuous: `^\s`})
	f.chunk(lines("t", "stdout", "a\n b\nc\nd\n e"), 0)
	f.end()
	eq(t, f.logs("t", "stdout"), []string{"a\n b\n", "c\n", "d\n e\n"})

	f = newFeeder(t, Config{Start: `^BEGIN`, End: `^END`})
	f.chunk(lines("t", "stdout", "x\nBEGIN\n1\nEND\ny"), 0)
	f.end()
	eq(t, f.logs("t", "stdout"), []string{"x\n", "BEGIN\n1\nEND\n", "y\n"})
}

func TestCustomRules(t *testing.T) {
	f := newFeeder(t, Config{Rules: []Rule{
		{State: "start_state", Regex: `/^\[\d{4}-\d{2}-\d{2}/`, Next: "cont"},
		{State: "cont", Regex: `/^\s+/`, Next: "cont"},
	}})
	f.chunk(lines("t", "stdout", "[2026-01-01] boom\n  detail 1\n  detail 2\nplain\n[2026-01-02] ok"), 0)
	f.end()
	eq(t, f.logs("t", "stdout"), []string{"[2026-01-01] boom\n  detail 1\n  detail 2\n", "plain\n", "[2026-01-02] ok\n"})
}

// A chunk with lines in an open group is held until the group is stored.
func TestHeldUntilStored(t *testing.T) {
	f := newFeeder(t, Config{Parser: "java"})
	tr := lines("t", "stderr", javaTrace)
	r0 := f.chunk(tr[:3], 0)
	if !f.j.Held(r0) {
		t.Fatal("a chunk with lines in an open group is not held")
	}
	r1 := f.chunk(tr[3:5], 10)
	if !f.j.Held(r1) || len(f.j.Released()) != 0 {
		t.Fatal("released too early")
	}
	r2 := f.chunk(tr[5:], 20) // the INFO line ends the group
	rel := f.j.Released()
	if f.j.Held(r0) || f.j.Held(r1) || f.j.Held(r2) || len(rel) != 3 || rel[0] != r0 || rel[1] != r1 || rel[2] != r2 {
		t.Fatalf("released %v", rel)
	}
}

// A group that never ends is stored by the bounds and by time, counted.
func TestNeverEnding(t *testing.T) {
	reg := prometheus.NewRegistry()
	met := NewMetrics(reg)
	cfg := Config{Continuous: `^\s`, MaxLines: 10, FlushInterval: time.Second}
	cfg.SetDefaults()
	j, err := New(&cfg, met)
	if err != nil {
		t.Fatal(err)
	}
	f := &feeder{t: t, j: j, now: t0}
	frames := []line{{tag: "t", stream: "e", text: "worker stuck\n"}}
	for i := 0; i < 24; i++ {
		frames = append(frames, line{tag: "t", stream: "e", text: fmt.Sprintf("\tat x.Y.z(Y.java:%d)\n", i)})
	}
	f.chunk(frames, 0)
	got := f.logs("t", "e")
	if len(got) != 2 || strings.Count(got[0], "\n") != 10 || strings.Count(got[1], "\n") != 10 {
		t.Fatalf("%d records: %q", len(got), got)
	}
	if g, _ := j.Open(); g != 1 {
		t.Fatalf("%d groups open, want the last 5 lines in one", g)
	}
	if n := testutil.ToFloat64(met.groups.WithLabelValues(ReasonLines)); n != 2 {
		t.Errorf("stored by max_lines %v, want 2", n)
	}
	// By time: the open group is stored after flush_interval, not before.
	if fl := j.Expired(t0.Add(999*time.Millisecond), false); len(fl) != 0 {
		t.Fatal("stored before flush_interval")
	}
	fl := j.Expired(t0.Add(time.Second), false)
	if len(fl) != 1 || fl[0].Count != 1 || fl[0].ID != "c0/ml" {
		t.Fatalf("flushed %+v", fl)
	}
	f.decode(fl[0].Tag, fl[0].Entries, fl[0].Count)
	if got := f.logs("t", "e"); strings.Count(got[2], "\n") != 5 {
		t.Errorf("last group %q", got[2])
	}
	if n := testutil.ToFloat64(met.groups.WithLabelValues(ReasonTimeout)); n != 1 {
		t.Errorf("stored by time %v", n)
	}
	if n := testutil.ToFloat64(met.lines); n != 25 {
		t.Errorf("lines joined %v", n)
	}
}

func TestMemoryBound(t *testing.T) {
	cfg := Config{Parser: "java", MaxBytes: 1 << 10, MaxOpenBytes: 2 << 10}
	cfg.SetDefaults()
	j, _ := New(&cfg, nil)
	f := &feeder{t: t, j: j, now: t0}
	for s := 0; s < 3; s++ {
		f.chunk([]line{{tag: "t", stream: fmt.Sprint(s), text: "java.lang.Error: " + strings.Repeat("m", 900) + "\n"},
			{tag: "t", stream: fmt.Sprint(s), text: "\tat a.B.c(B.java:1)\n"}}, 10*s)
		f.j.Expired(t0, false)
	}
	if _, b := j.Open(); b > 2<<10 {
		t.Fatalf("%d bytes open, bound 2KiB", b)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Parser: "ruby"}, "parser: \"ruby\""},
		{Config{Parser: "java", Start: "x"}, "set one of"},
		{Config{Start: "("}, "start:"},
		{Config{Rules: []Rule{{State: "a", Regex: "x", Next: "b"}}}, "no rule for start_state"},
		{Config{Rules: []Rule{{State: "start_state", Regex: "(", Next: "b"}}}, "rules[0].regex"},
		{Config{Parser: "java", MaxLines: 1}, "max_lines"},
	} {
		c.cfg.SetDefaults()
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

// go test -run '^$' -bench . -benchmem ./ingest/multiline/
func BenchmarkJavaNoStart(b *testing.B) {
	cfg := Config{Parser: "java"}
	cfg.SetDefaults()
	j, _ := New(&cfg, nil)
	var p []byte
	const per = 1000
	for i := 0; i < per; i++ {
		p = append(p, entry(line{stream: "stdout", text: fmt.Sprintf(`10.0.0.%d - - [01/Jan/2026:12:00:00 +0000] "GET /item/%d HTTP/1.1" 200 512 "-" "curl/8.5.0"`+"\n", i%250, i)}, i)...)
	}
	out := make([]byte, 0, 2*len(p))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, _, _ = j.Add(out[:0], "kube.a", "", p, uint64(i), t0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/line")
}

// Any lines, in any streams and chunks, through every parser: no panic,
// every entry handed out is valid, and at the end nothing is open or held.
func FuzzJoin(f *testing.F) {
	f.Add(javaTrace, uint8(3))
	f.Add(goPanic, uint8(5))
	f.Add(pythonTrace+"\n\n\x00\xff", uint8(1))
	f.Fuzz(func(t *testing.T, text string, cut uint8) {
		for _, cfg := range []Config{{Parser: "java"}, {Parser: "python"}, {Parser: "go"}, {Parser: "docker"}, {Parser: "cri"},
			{Start: `^\S`}, {Continuous: `^\s`, MaxLines: 3}, {Start: `^B`, End: `^E`}} {
			f := newFeeder(t, cfg)
			ls := strings.Split(text, "\n")
			var batch []line
			for i, l := range ls {
				extra := map[string]any{"_p": []string{"P", "F"}[i%2]}
				batch = append(batch, line{tag: "t", stream: fmt.Sprint(i % 3), text: l + []string{"\n", ""}[i%2], extra: extra})
				if len(batch) > int(cut%7) {
					f.chunk(batch, i)
					batch = nil
				}
			}
			if len(batch) > 0 {
				f.chunk(batch, len(ls))
			}
			f.end()
			if g, b := f.j.Open(); g != 0 || b != 0 || len(f.j.holds) != 0 {
				t.Fatalf("%+v: %d groups, %d bytes open, %d chunks held after the end", cfg, g, b, len(f.j.holds))
			}
		}
	})
}
