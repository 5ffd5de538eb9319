package firehose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	fh "github.com/aws/aws-sdk-go-v2/service/firehose"
	"github.com/aws/aws-sdk-go-v2/service/firehose/types"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/awsfake"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/firehose/fhfake"
	"github.com/sluicelog/sluice/sinks/sinktest"
)

func newSink(t testing.TB, f *fhfake.Server, cfg Config) *Sink {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	cfg.AWS.Region = "eu-west-1"
	cfg.AWS.Endpoint = f.URL()
	if cfg.DeliveryStream == "" {
		cfg.DeliveryStream = "logs-to-s3"
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, "fh", component.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var when = time.Date(2026, 11, 22, 7, 34, 52, 0, time.UTC)

// sized makes n records whose JSON lines are exactly size bytes.
func sized(t testing.TB, n, size int) []sinks.Record {
	out := make([]sinks.Record, n)
	for i := range out {
		out[i] = record(t, i, map[string]any{"n": i, "p": ""})
		line := len(`{"@timestamp":"2026-11-22T07:34:52.000000000Z","n":,"p":""}`+"\n") + len(fmt.Sprint(i))
		b, _ := msgpack.Marshal(map[string]any{"n": i, "p": strings.Repeat("x", size-line)})
		out[i].Record = b
	}
	return out
}

func record(t testing.TB, i int, m map[string]any) sinks.Record {
	b, err := msgpack.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return sinks.Record{Tag: "t", Entry: chunk.Entry{Sec: when.Unix(), Record: b}, Seq: 1, Index: i}
}

func lines(t testing.TB, f *fhfake.Server) []map[string]any {
	var out []map[string]any
	for _, data := range f.Records("logs-to-s3") {
		if !bytes.HasSuffix(data, []byte("\n")) {
			t.Fatalf("record does not end in a newline: %.60q", data)
		}
		for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				t.Fatalf("%v: %.80q", err, l)
			}
			out = append(out, m)
		}
	}
	return out
}

func TestLinesAndLimits(t *testing.T) {
	cases := []struct {
		name  string
		recs  func(t *testing.T) []sinks.Record
		calls []int
		dead  int
	}{
		{"500 records", func(t *testing.T) []sinks.Record { return sized(t, 500, 100) }, []int{500}, 0},
		{"501 records", func(t *testing.T) []sinks.Record { return sized(t, 501, 100) }, []int{500, 1}, 0},
		{"4 MiB", func(t *testing.T) []sinks.Record { return sized(t, 8, 512<<10) }, []int{8}, 0},
		{"4 MiB and a byte", func(t *testing.T) []sinks.Record {
			r := sized(t, 8, 512<<10)
			r[7] = sized(t, 8, 512<<10+1)[7]
			return r
		}, []int{7, 1}, 0},
		{"1000 KiB record", func(t *testing.T) []sinks.Record { return sized(t, 1, 1000<<10) }, []int{1}, 0},
		{"1000 KiB and a byte", func(t *testing.T) []sinks.Record {
			return append(sized(t, 1, 1000<<10+1), sized(t, 2, 100)[1])
		}, []int{1}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := fhfake.New("logs-to-s3")
			defer f.Close()
			s := newSink(t, f, Config{})
			recs := c.recs(t)
			err := s.Write(context.Background(), recs)
			var pe *sinks.PartialError
			switch {
			case c.dead == 0 && err != nil:
				t.Fatal(err)
			case c.dead > 0 && (!errors.As(err, &pe) || len(pe.Failed) != c.dead || !sinks.IsPermanent(pe.Failed[0])):
				t.Fatalf("want %d dead, got %v", c.dead, err)
			}
			if got := f.Calls(); fmt.Sprint(got) != fmt.Sprint(c.calls) {
				t.Errorf("calls %v, want %v", got, c.calls)
			}
			if n := len(lines(t, f)); n != len(recs)-c.dead {
				t.Errorf("%d lines stored", n)
			}
		})
	}
}

func TestLineFormat(t *testing.T) {
	f := fhfake.New("logs-to-s3")
	defer f.Close()
	s := newSink(t, f, Config{TagKey: "tag"})
	r := record(t, 0, map[string]any{"log": "hello", "kubernetes": map[string]any{"pod_name": "web-1"}})
	r.Nsec = 123456789
	if err := s.Write(context.Background(), []sinks.Record{r}); err != nil {
		t.Fatal(err)
	}
	got := f.Records("logs-to-s3")
	// The time and the tag come first; the record's own keys follow in
	// its (here random, from a Go map) order.
	prefix := `{"@timestamp":"2026-11-22T07:34:52.123456789Z","tag":"t",`
	var m map[string]any
	if len(got) != 1 || !strings.HasPrefix(string(got[0]), prefix) || !strings.HasSuffix(string(got[0]), "}\n") ||
		json.Unmarshal(got[0], &m) != nil || m["log"] != "hello" || fmt.Sprint(m["kubernetes"]) != "map[pod_name:web-1]" {
		t.Errorf("got %q", got)
	}
}

func TestPacking(t *testing.T) {
	f := fhfake.New("logs-to-s3")
	defer f.Close()
	s := newSink(t, f, Config{Pack: true})
	recs := sized(t, 3000, 1000) // 3 MB: 3 Firehose records of at most 1000 KiB
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	data := f.Records("logs-to-s3")
	if len(data) != 3 {
		t.Errorf("%d Firehose records, want 3", len(data))
	}
	for _, d := range data {
		if len(d) > MaxRecordBytes {
			t.Errorf("record of %d bytes", len(d))
		}
	}
	got := lines(t, f)
	if len(got) != 3000 {
		t.Fatalf("%d lines", len(got))
	}
	for i, l := range got {
		if l["n"] != float64(i) {
			t.Fatalf("line %d holds n=%v", i, l["n"])
		}
	}
	// A packed record that fails fails every record in it.
	f2 := fhfake.New("logs-to-s3")
	defer f2.Close()
	f2.SetRecordFault(func(_ string, data []byte) (string, string) {
		if bytes.Contains(data, []byte(`"n":2,`)) || bytes.Contains(data, []byte(`"n":2}`)) {
			return "InternalFailure", "internal"
		}
		return "", ""
	})
	s2 := newSink(t, f2, Config{Pack: true})
	err := s2.Write(context.Background(), sized(t, 5, 400<<10)) // two per Firehose record
	var pe *sinks.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 2 || pe.Failed[2] == nil || pe.Failed[3] == nil {
		t.Errorf("want records 2 and 3 failed together, got %v", err)
	}
}

// FailedPutCount: only the failed records are sent again, so the stream
// ends up with every record exactly once. Counts through the runner.
func TestFailedPutCountResendsOnlyFailed(t *testing.T) {
	f := fhfake.New("logs-to-s3")
	defer f.Close()
	var mu sync.Mutex
	tries := map[string]int{}
	f.SetRecordFault(func(_ string, data []byte) (string, string) {
		var m struct{ N int }
		json.Unmarshal(data, &m)
		mu.Lock()
		defer mu.Unlock()
		tries[string(data)]++
		if m.N%5 == 0 && tries[string(data)] == 1 {
			return "ServiceUnavailableException", "Slow down."
		}
		return "", ""
	})
	env := sinktest.NewEnv(t)
	recs := make([]map[string]any, 300)
	for i := range recs {
		recs[i] = map[string]any{"n": i}
	}
	env.Publish("kube.web", recs...)
	env.Run(newSink(t, f, Config{}), nil)
	env.Settle()
	got := lines(t, f)
	seen := map[float64]int{}
	for _, l := range got {
		seen[l["n"].(float64)]++
	}
	if len(got) != 300 || len(seen) != 300 {
		t.Errorf("%d lines, %d distinct, want 300 once each", len(got), len(seen))
	}
	counts := fmt.Sprint(env.Counter("sluice_sink_records_total", "outcome", "delivered"),
		env.Counter("sluice_sink_records_retried_total", "", ""), env.Counter("sluice_sink_records_total", "outcome", "dead"))
	if counts != "300 60 0" {
		t.Errorf("delivered, retried, dead = %s, want 300 60 0", counts)
	}
}

func TestWholeCallErrors(t *testing.T) {
	f := fhfake.New("logs-to-s3")
	defer f.Close()
	s := newSink(t, f, Config{})
	recs := sized(t, 3, 100)
	f.Fail("PutRecordBatch", awsfake.Errorf("ServiceUnavailableException", "Slow down."))
	var th *sinks.ThrottledError
	if err := s.Write(context.Background(), recs); !errors.As(err, &th) {
		t.Errorf("throttled: %v", err)
	}
	missing := newSink(t, f, Config{DeliveryStream: "nope"})
	if err := missing.Write(context.Background(), recs); err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Errorf("missing stream: %v", err)
	}
	if err := s.Write(context.Background(), recs); err != nil || len(f.Records("logs-to-s3")) != 3 {
		t.Errorf("after the errors: %v", err)
	}
}

// The fake refuses what the service refuses, one over each limit.
func TestFakeEnforcesTheLimits(t *testing.T) {
	f := fhfake.New("logs-to-s3")
	defer f.Close()
	s := newSink(t, f, Config{})
	recs := func(n, size int) []types.Record {
		out := make([]types.Record, n)
		for i := range out {
			out[i] = types.Record{Data: bytes.Repeat([]byte("x"), size)}
		}
		return out
	}
	for want, r := range map[string][]types.Record{
		"less than or equal to 500":     recs(501, 1),
		"less than or equal to 1024000": recs(1, 1024001),
		"Records size exceeds 4194304":  append(recs(4, 1024000), recs(1, 98305)...),
	} {
		_, err := s.api.PutRecordBatch(context.Background(), &fh.PutRecordBatchInput{DeliveryStreamName: aws.String("logs-to-s3"), Records: r})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q, got %v", want, err)
		}
	}
	if _, err := s.api.PutRecordBatch(context.Background(), &fh.PutRecordBatchInput{DeliveryStreamName: aws.String("logs-to-s3"),
		Records: append(recs(4, 1024000), recs(1, 98304)...)}); err != nil {
		t.Errorf("exactly 4 MiB: %v", err)
	}
}

type fhDest struct{ f *fhfake.Server }

func (d fhDest) NewSink(t *testing.T) sinks.Sink { return newSink(t, d.f, Config{}) }

func (d fhDest) Delivered(t *testing.T) []int {
	var ns []int
	for _, l := range lines(t, d.f) {
		ns = append(ns, int(l["n"].(float64)))
	}
	return ns
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Destination {
		f := fhfake.New("logs-to-s3")
		t.Cleanup(f.Close)
		return fhDest{f}
	})
}
