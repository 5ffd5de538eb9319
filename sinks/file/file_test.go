package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/msgp"
	"github.com/sluicelog/sluice/internal/units"
	"github.com/sluicelog/sluice/sinks"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// om is a msgpack map that keeps its order.
type om []kv

type kv struct {
	k string
	v any
}

func (m om) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, p := range m {
		if err := enc.EncodeString(p.k); err != nil {
			return err
		}
		if err := enc.Encode(p.v); err != nil {
			return err
		}
	}
	return nil
}

// entry is one entry of a test chunk.
type entry struct {
	sec, nsec uint32
	record    om
}

// newChunk builds a chunk whose entries are [EventTime, record].
func newChunk(t testing.TB, tag string, entries ...entry) *chunk.Chunk {
	t.Helper()
	c := &chunk.Chunk{Tag: tag, Count: len(entries)}
	for _, e := range entries {
		c.Entries = msgp.AppendArrayHeader(c.Entries, 2)
		c.Entries = msgp.AppendEventTime(c.Entries, e.sec, e.nsec)
		rec, err := msgpack.Marshal(e.record)
		if err != nil {
			t.Fatal(err)
		}
		c.Entries = append(c.Entries, rec...)
	}
	return c
}

// clock is a fake wall clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// 2026-11-22 07:34:52 UTC.
const t0 = 1795332892

func newClock() *clock { return &clock{t: time.Unix(t0, 0)} }

func newSink(t *testing.T, cfg Config, name string, c *clock) *Sink {
	t.Helper()
	s, err := New(cfg, name, nil, c.now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// recs turns chunks into the records the runner hands a sink.
func recs(t testing.TB, batch ...*chunk.Chunk) []sinks.Record {
	t.Helper()
	var out []sinks.Record
	for ci, c := range batch {
		for off, i := 0, 0; off < len(c.Entries); i++ {
			e, next, err := chunk.ReadEntry(c.Entries, off)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, sinks.Record{Tag: c.Tag, Entry: e, Seq: uint64(ci + 1), Index: i})
			off = next
		}
	}
	return out
}

func write(t *testing.T, s *Sink, batch ...*chunk.Chunk) {
	t.Helper()
	if err := s.Write(context.Background(), recs(t, batch...)); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// files returns the names of the files in dir, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// lines returns the lines of a file, checking that each is a JSON object and
// that the file ends with a newline.
func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	ls := bytes.Split(b[:len(b)-1], []byte("\n"))
	for i, l := range ls {
		if !json.Valid(l) || l[0] != '{' {
			t.Fatalf("%s line %d is not a JSON object: %q", path, i+1, l)
		}
	}
	return ls
}

func decode(t *testing.T, line []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return m
}

// keys returns the keys of a JSON object line in order.
func keys(t *testing.T, line []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(line))
	d.Token()
	var ks []string
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, tok.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return ks
}

func TestWriteLines(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	s := newSink(t, Config{Path: dir}, "out", c)
	write(t, s,
		newChunk(t, "kube.app",
			entry{t0, 1, om{{"log", "hello \"world\"\n"}, {"stream", "stdout"}, {"n", -3}, {"k8s", om{{"pod", "web-1"}, {"labels", om{{"app", "web"}}}}}}},
			entry{t0 + 1, 999999999, om{{"log", "bye"}, {"f", 2.5}, {"none", nil}, {"list", []any{1, "a"}}}},
		),
		newChunk(t, "other", entry{0, 0, om{{"msg", "日本語 \xff"}}}),
	)
	write(t, s, newChunk(t, "kube.app", entry{t0, 2, om{}}))
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}

	if got, want := files(t, dir), []string{"sluice-out-20261122-07-000000.ndjson"}; !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	ls := lines(t, filepath.Join(dir, "sluice-out-20261122-07-000000.ndjson"))
	want := []map[string]any{
		{"@timestamp": "2026-11-22T07:34:52.000000001Z", "tag": "kube.app", "log": "hello \"world\"\n", "stream": "stdout",
			"n": json.Number("-3"), "k8s": map[string]any{"pod": "web-1", "labels": map[string]any{"app": "web"}}},
		{"@timestamp": "2026-11-22T07:34:53.999999999Z", "tag": "kube.app", "log": "bye", "f": json.Number("2.5"),
			"none": nil, "list": []any{json.Number("1"), "a"}},
		{"@timestamp": "1970-01-01T00:00:00.000000000Z", "tag": "other", "msg": "日本語 \ufffd"},
		{"@timestamp": "2026-11-22T07:34:52.000000002Z", "tag": "kube.app"},
	}
	if len(ls) != len(want) {
		t.Fatalf("%d lines, want %d", len(ls), len(want))
	}
	for i := range want {
		if got := decode(t, ls[i]); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("line %d: %#v\nwant %#v", i+1, got, want[i])
		}
	}
	if got, want := keys(t, ls[0]), []string{"@timestamp", "tag", "log", "stream", "n", "k8s"}; !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
}

func TestRecordKeysWin(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Path: dir}, "out", newClock())
	write(t, s, newChunk(t, "t",
		entry{t0, 0, om{{"tag", "own tag"}, {"msg", "a"}}},
		entry{t0, 0, om{{"msg", "b"}, {"@timestamp", "own time"}}},
	))
	s.Close(context.Background())
	ls := lines(t, filepath.Join(dir, "sluice-out-20261122-07-000000.ndjson"))
	wantKeys := [][]string{{"@timestamp", "tag", "msg"}, {"tag", "msg", "@timestamp"}}
	want := []map[string]any{
		{"@timestamp": "2026-11-22T07:34:52.000000000Z", "tag": "own tag", "msg": "a"},
		{"@timestamp": "own time", "tag": "t", "msg": "b"},
	}
	for i := range want {
		if got := keys(t, ls[i]); !slices.Equal(got, wantKeys[i]) {
			t.Errorf("line %d keys %q, want %q", i+1, got, wantKeys[i])
		}
		if got := decode(t, ls[i]); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("line %d: %#v, want %#v", i+1, got, want[i])
		}
	}
}

func TestCustomKeys(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Path: dir, Prefix: "logs", TimeKey: "time", TagKey: NoKey}, "s3", newClock())
	write(t, s, newChunk(t, "t", entry{t0, 5, om{{"tag", "kept"}}}))
	s.Close(context.Background())
	ls := lines(t, filepath.Join(dir, "logs-s3-20261122-07-000000.ndjson"))
	if got, want := string(ls[0]), `{"time":"2026-11-22T07:34:52.000000005Z","tag":"kept"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestRollByHour(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	c.t = time.Date(2026, 11, 22, 7, 59, 59, 999999999, time.UTC)
	s := newSink(t, Config{Path: dir}, "out", c)
	write(t, s, newChunk(t, "t", entry{1, 0, om{{"i", 1}}}))
	write(t, s, newChunk(t, "t", entry{2, 0, om{{"i", 2}}}))
	c.t = c.t.Add(time.Nanosecond)
	write(t, s, newChunk(t, "t", entry{3, 0, om{{"i", 3}}}))
	// A clock in another zone names files by the UTC hour.
	c.t = time.Date(2026, 11, 23, 1, 0, 0, 0, time.FixedZone("X", 5*3600))
	write(t, s, newChunk(t, "t", entry{4, 0, om{{"i", 4}}}))
	s.Close(context.Background())

	want := map[string][]string{
		"sluice-out-20261122-07-000000.ndjson": {"1", "2"},
		"sluice-out-20261122-08-000000.ndjson": {"3"},
		"sluice-out-20261122-20-000000.ndjson": {"4"},
	}
	got := files(t, dir)
	if len(got) != len(want) {
		t.Fatalf("files %q, want %d files", got, len(want))
	}
	for name, is := range want {
		ls := lines(t, filepath.Join(dir, name))
		var gotIs []string
		for _, l := range ls {
			gotIs = append(gotIs, decode(t, l)["i"].(json.Number).String())
		}
		if !slices.Equal(gotIs, is) {
			t.Errorf("%s holds records %q, want %q", name, gotIs, is)
		}
	}
}

func TestRollBySize(t *testing.T) {
	dir := t.TempDir()
	one := newChunk(t, "t", entry{t0, 0, om{{"msg", strings.Repeat("x", 50)}}})
	// Measure a line.
	probe := newSink(t, Config{Path: t.TempDir()}, "probe", newClock())
	write(t, probe, one)
	probe.Close(context.Background())
	lineLen := int64(len(lines(t, filepath.Join(probe.cfg.Path, "sluice-probe-20261122-07-000000.ndjson"))[0]) + 1)

	// Three lines fit in a file, four do not.
	s := newSink(t, Config{Path: dir, MaxFileBytes: units.ByteSize(3*lineLen + lineLen/2)}, "out", newClock())
	for i := 0; i < 7; i++ {
		write(t, s, one)
	}
	// A batch of five lines is larger than the limit: it goes whole into a
	// new file, and the next batch into another one.
	write(t, s, one, one, newChunk(t, "t", entry{t0, 0, om{{"msg", strings.Repeat("x", 50)}}}, entry{t0, 0, om{{"msg", strings.Repeat("x", 50)}}}, entry{t0, 0, om{{"msg", strings.Repeat("x", 50)}}}))
	write(t, s, one)
	s.Close(context.Background())

	want := []string{
		"sluice-out-20261122-07-000000.ndjson",
		"sluice-out-20261122-07-000001.ndjson",
		"sluice-out-20261122-07-000002.ndjson",
		"sluice-out-20261122-07-000003.ndjson",
		"sluice-out-20261122-07-000004.ndjson",
	}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	wantLines := []int{3, 3, 1, 5, 1}
	for i, name := range want {
		ls := lines(t, filepath.Join(dir, name))
		if len(ls) != wantLines[i] {
			t.Errorf("%s has %d lines, want %d", name, len(ls), wantLines[i])
		}
		for _, l := range ls {
			if int64(len(l)+1) != lineLen {
				t.Errorf("%s has a line of %d bytes, want %d: %q", name, len(l)+1, lineLen, l)
			}
		}
	}
}

func TestRestartDoesNotOverwrite(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	// Files of other sinks, other hours and other shapes do not count.
	for _, name := range []string{
		"sluice-other-20261122-07-000009.ndjson",
		"sluice-out-20261122-06-000007.ndjson",
		"sluice-out-20261122-07-000002.ndjson.tmp",
		"sluice-out-20261122-07-x.ndjson",
		"sluice-out-20261122-07-000002.ndjson",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s1 := newSink(t, Config{Path: dir}, "out", c)
	write(t, s1, newChunk(t, "t", entry{1, 0, om{{"run", 1}}}))
	if err := s1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := newSink(t, Config{Path: dir}, "out", c)
	write(t, s2, newChunk(t, "t", entry{1, 0, om{{"run", 2}}}))
	if err := s2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	old, err := os.ReadFile(filepath.Join(dir, "sluice-out-20261122-07-000002.ndjson"))
	if err != nil || string(old) != "old\n" {
		t.Errorf("existing file changed: %q, %v", old, err)
	}
	for name, run := range map[string]string{
		"sluice-out-20261122-07-000003.ndjson": "1",
		"sluice-out-20261122-07-000004.ndjson": "2",
	} {
		ls := lines(t, filepath.Join(dir, name))
		if len(ls) != 1 || decode(t, ls[0])["run"] != json.Number(run) {
			t.Errorf("%s: %q, want the record of run %s", name, ls, run)
		}
	}
	if n := len(files(t, dir)); n != 7 {
		t.Errorf("%d files, want 7", n)
	}
}

func TestCloseAndWriteAfterClose(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Path: dir, Sync: true}, "out", newClock())
	write(t, s, newChunk(t, "t", entry{1, 0, om{{"a", 1}}}))
	for i := 0; i < 2; i++ {
		if err := s.Close(context.Background()); err != nil {
			t.Fatalf("Close %d: %v", i+1, err)
		}
	}
	err := s.Write(context.Background(), recs(t, newChunk(t, "t", entry{1, 0, om{{"a", 2}}})))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	if ls := lines(t, filepath.Join(dir, "sluice-out-20261122-07-000000.ndjson")); len(ls) != 1 {
		t.Errorf("%d lines, want 1", len(ls))
	}
}

func TestCloseUnused(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Path: dir}, "out", newClock())
	write(t, s) // an empty batch opens no file
	write(t, s, &chunk.Chunk{Tag: "t"})
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("files %q, want none", got)
	}
}

// TestCorruptRecordFailsAlone gives the sink records whose bytes cannot be
// converted: each is reported as a permanent failure by its index and left
// out, and the other records of the batch are written.
func TestCorruptRecordFailsAlone(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Path: dir}, "out", newClock())
	batch := recs(t, newChunk(t, "t", entry{1, 0, om{{"a", 1}}}, entry{2, 0, om{{"a", 2}}}, entry{3, 0, om{{"a", 3}}}))
	batch[1].Record = []byte{0x81, 0xa1, 'k', 0xc1} // a map whose value is the never-used byte
	err := s.Write(context.Background(), batch)
	var pe *sinks.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || !sinks.IsPermanent(pe.Failed[1]) || !errors.Is(pe.Failed[1], ErrCorrupt) {
		t.Fatalf("Write: %v, want a permanent ErrCorrupt for record 1 only", err)
	}
	s.Close(context.Background())
	ls := lines(t, filepath.Join(dir, "sluice-out-20261122-07-000000.ndjson"))
	if len(ls) != 2 || decode(t, ls[0])["a"] != json.Number("1") || decode(t, ls[1])["a"] != json.Number("3") {
		t.Errorf("lines %q, want records 1 and 3", ls)
	}
}

func TestWriteCanceled(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Path: dir}, "out", newClock())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(ctx, recs(t, newChunk(t, "t", entry{1, 0, om{{"a", 1}}}))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write: %v, want context.Canceled", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("files %q, want none", got)
	}
}

func TestFailedWriteMovesToNewFile(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Path: dir}, "out", newClock())
	write(t, s, newChunk(t, "t", entry{1, 0, om{{"a", 1}}}))
	// Make the next write fail by closing the file under the sink.
	s.f.Close()
	if err := s.Write(context.Background(), recs(t, newChunk(t, "t", entry{2, 0, om{{"a", 2}}}))); err == nil {
		t.Fatal("Write to a closed file succeeded")
	}
	write(t, s, newChunk(t, "t", entry{3, 0, om{{"a", 3}}}))
	s.Close(context.Background())
	if got, want := files(t, dir), []string{"sluice-out-20261122-07-000000.ndjson", "sluice-out-20261122-07-000001.ndjson"}; !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	for i, name := range []string{"sluice-out-20261122-07-000000.ndjson", "sluice-out-20261122-07-000001.ndjson"} {
		ls := lines(t, filepath.Join(dir, name))
		if len(ls) != 1 || decode(t, ls[0])["a"] != json.Number([]string{"1", "3"}[i]) {
			t.Errorf("%s: %q", name, ls)
		}
	}
}

func TestBigBatchBufferNotKept(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Path: dir}, "out", newClock())
	small := newChunk(t, "t", entry{1, 0, om{{"a", 1}}})
	write(t, s, small)
	if cap(s.buf) == 0 {
		t.Fatal("buffer not kept after a small batch")
	}
	// About 10 MiB of lines.
	one := newChunk(t, "t", entry{t0, 0, om{{"log", strings.Repeat("x", 1000)}}})
	big := &chunk.Chunk{Tag: "t", Count: 10000, Entries: bytes.Repeat(one.Entries, 10000)}
	write(t, s, big)
	if s.buf != nil {
		t.Errorf("buffer of %d bytes kept", cap(s.buf))
	}
	write(t, s, small)
	if c := cap(s.buf); c == 0 || c > maxKeptBuffer {
		t.Errorf("buffer capacity %d after a small batch", c)
	}
	s.Close(context.Background())
	f, err := os.Open(filepath.Join(dir, "sluice-out-20261122-07-000000.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
	}
	if n != 10002 {
		t.Errorf("%d lines, want 10002", n)
	}
}

func TestConfig(t *testing.T) {
	var c Config
	c.SetDefaults()
	want := Config{Path: "./data/out", Prefix: "sluice", MaxFileBytes: 128 << 20, TimeKey: "@timestamp", TagKey: "tag"}
	if c != want {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	set := Config{Path: "p", Prefix: "x", MaxFileBytes: 5, TimeKey: "a", TagKey: "b", Sync: true}
	c = set
	c.SetDefaults()
	if c != set {
		t.Errorf("SetDefaults changed set fields: %+v", c)
	}

	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no path", func(c *Config) { c.Path = "" }, "path: must not be empty"},
		{"no prefix", func(c *Config) { c.Prefix = "" }, "prefix: must not be empty"},
		{"prefix with slash", func(c *Config) { c.Prefix = "a/b" }, `prefix: "a/b" must not contain a path separator or NUL`},
		{"zero size", func(c *Config) { c.MaxFileBytes = 0 }, "max_file_bytes: must be positive"},
		{"negative size", func(c *Config) { c.MaxFileBytes = -1 }, "max_file_bytes: must be positive"},
		{"no time key", func(c *Config) { c.TimeKey = "" }, `time_key: must not be empty (use "-" to leave the key out)`},
		{"no tag key", func(c *Config) { c.TagKey = "" }, `tag_key: must not be empty (use "-" to leave the key out)`},
		{"same keys", func(c *Config) { c.TagKey = c.TimeKey }, `tag_key: must differ from time_key "@timestamp"`},
		{"both keys left out", func(c *Config) { c.TagKey, c.TimeKey = NoKey, NoKey }, ""},
	}
	for _, tt := range tests {
		c := want
		tt.mod(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want no error", tt.name, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := New(Config{Path: dir}, "out", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755&^umask(t) {
		t.Errorf("directory: %v, %v", fi, err)
	}
	for _, name := range []string{"", "a/b", "..", `a\b`} {
		if _, err := New(Config{Path: dir}, name, nil, nil); err == nil {
			t.Errorf("New accepts the name %q", name)
		}
	}
	if _, err := New(Config{Path: dir, MaxFileBytes: -1}, "out", nil, nil); err == nil || !strings.Contains(err.Error(), "max_file_bytes") {
		t.Errorf("New with a bad config: %v", err)
	}
}

// umask returns the process umask as seen by a new directory.
func umask(t *testing.T) os.FileMode {
	d := filepath.Join(t.TempDir(), "probe")
	if err := os.Mkdir(d, 0o777); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ fi.Mode().Perm()
}
