package cloudwatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/awsconf"
	"github.com/sluicelog/sluice/internal/awsfake"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/cloudwatch/cwfake"
	"github.com/sluicelog/sluice/sinks/sinktest"
)

// awsEnv gives the SDK static credentials and keeps it off the machine's
// files and metadata service.
func awsEnv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
}

// now is the fake service's clock and the records' time.
var now = time.Date(2026, 11, 22, 7, 34, 52, 0, time.UTC)

func newFake(t testing.TB) *cwfake.Server {
	f := cwfake.New()
	f.Now = func() time.Time { return now }
	t.Cleanup(f.Close)
	return f
}

func newSink(t testing.TB, f *cwfake.Server, cfg Config) *Sink {
	t.Helper()
	awsEnv(t)
	cfg.AWS.Region = "eu-west-1"
	cfg.AWS.Endpoint = f.URL()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, "cw", component.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func records(t testing.TB, tag string, at time.Time, recs ...map[string]any) []sinks.Record {
	t.Helper()
	out := make([]sinks.Record, len(recs))
	for i, r := range recs {
		b, err := msgpack.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = sinks.Record{Tag: tag, Entry: chunk.Entry{Sec: at.Unix(), Nsec: int32(at.Nanosecond()), Record: b}, Seq: 1, Index: i}
	}
	return out
}

func pod(ns, name, container string, n int) map[string]any {
	k := map[string]any{}
	if ns != "" {
		k["namespace_name"] = ns
	}
	if name != "" {
		k["pod_name"] = name
		k["container_name"] = container
	}
	return map[string]any{"log": fmt.Sprintf("line %d", n), "n": n, "kubernetes": k}
}

func TestGroupsStreamsAndCreation(t *testing.T) {
	f := newFake(t)
	f.CreateGroup("/eks/pay", 30) // exists: its retention stays
	s := newSink(t, f, Config{LogGroup: "/eks/${kubernetes.namespace_name}", LogGroupFallback: "/eks/unknown",
		LogStream: "${kubernetes.pod_name}.${kubernetes.container_name}", LogStreamPrefix: "from-",
		AutoCreateGroup: true, RetentionDays: 7})
	recs := records(t, "kube.a", now, pod("shop", "web-1", "nginx", 0), pod("shop", "web-1", "nginx", 1),
		pod("pay", "api-1", "app", 2), pod("", "", "", 3), pod("shop", "", "", 4))
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"/eks/shop/web-1.nginx":    {`"log":"line 0"`, `"log":"line 1"`},
		"/eks/pay/api-1.app":       {`"log":"line 2"`},
		"/eks/unknown/from-kube.a": {`"log":"line 3"`},
		"/eks/shop/from-kube.a":    {`"log":"line 4"`},
	}
	if got := f.Streams(); fmt.Sprint(got) != "[/eks/pay/api-1.app /eks/shop/from-kube.a /eks/shop/web-1.nginx /eks/unknown/from-kube.a]" {
		t.Errorf("streams %v", got)
	}
	for path, prefixes := range want {
		g, st, _ := strings.Cut(path[1:], "/")
		g = "/" + g
		if i := strings.Index(st, "/"); i >= 0 {
			g, st = g+"/"+st[:i], st[i+1:]
		}
		evs := f.Events(g, st)
		if len(evs) != len(prefixes) {
			t.Errorf("%s: %d events", path, len(evs))
			continue
		}
		for i, e := range evs {
			if !strings.Contains(e.Message, prefixes[i]) || e.Timestamp != now.UnixMilli() || !json.Valid([]byte(e.Message)) {
				t.Errorf("%s event %d: %+v", path, i, e)
			}
		}
	}
	if r, _ := f.Retention("/eks/shop"); r != 7 {
		t.Errorf("created group retention %d", r)
	}
	if r, _ := f.Retention("/eks/pay"); r != 30 {
		t.Errorf("existing group's retention changed to %d", r)
	}
	// Remembered: a second write creates nothing.
	groups, streams := f.Calls("CreateLogGroup"), f.Calls("CreateLogStream")
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if f.Calls("CreateLogGroup") != groups || f.Calls("CreateLogStream") != streams {
		t.Errorf("creates repeated: groups %d->%d, streams %d->%d", groups, f.Calls("CreateLogGroup"), streams, f.Calls("CreateLogStream"))
	}
	// Another sink (a restart) finds the streams there:
	// ResourceAlreadyExistsException is success.
	s2 := newSink(t, f, Config{LogGroup: "/eks/${kubernetes.namespace_name}", LogGroupFallback: "/eks/unknown",
		LogStream: "${kubernetes.pod_name}.${kubernetes.container_name}", LogStreamPrefix: "from-"})
	if err := s2.Write(context.Background(), recs[:1]); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Events("/eks/shop", "web-1.nginx")); n != 5 {
		t.Errorf("%d events after three writes", n)
	}
	// Without auto_create_group a missing group is an error to retry.
	s3 := newSink(t, f, Config{LogGroup: "/missing"})
	if err := s3.Write(context.Background(), recs[:1]); err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Errorf("missing group: %v", err)
	}
}

func TestLogKey(t *testing.T) {
	f := newFake(t)
	s := newSink(t, f, Config{LogGroup: "g", AutoCreateGroup: true, LogKey: "log"})
	recs := records(t, "t", now, map[string]any{"log": "plain text line", "n": 1}, map[string]any{"n": 2})
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	evs := f.Events("g", "t")
	if len(evs) != 2 || evs[0].Message != "plain text line" || evs[1].Message != `{"n":2}` {
		t.Errorf("events %+v", evs)
	}
}

// spread makes n events with messages of size bytes, dt apart.
func spread(t testing.TB, n, size int, dt time.Duration) []sinks.Record {
	recs := make([]map[string]any, n)
	for i := range recs {
		recs[i] = map[string]any{"m": "x"}
	}
	out := records(t, "t", now, recs...)
	for i := range out {
		at := now.Add(-time.Duration(n-i) * dt)
		out[i].Sec, out[i].Nsec = at.Unix(), int32(at.Nanosecond())
	}
	// Messages of exactly size bytes, as JSON {"m":"xxx"}.
	pad := strings.Repeat("x", size-len(`{"m":""}`))
	for i := range out {
		b, _ := msgpack.Marshal(map[string]any{"m": pad})
		out[i].Record = b
	}
	return out
}

// Every PutLogEvents rule at its edge and one over: the sink splits where
// the service would refuse, and the fake refuses what breaks a rule.
func TestBatchRules(t *testing.T) {
	cases := []struct {
		name  string
		recs  func(t *testing.T) []sinks.Record
		calls []int
	}{
		{"10000 events", func(t *testing.T) []sinks.Record { return spread(t, 10000, 20, time.Millisecond) }, []int{10000}},
		{"10001 events", func(t *testing.T) []sinks.Record { return spread(t, 10001, 20, time.Millisecond) }, []int{10000, 1}},
		// 8 events of 131,046 bytes + 26 = 131,072: exactly 1 MiB.
		{"1048576 bytes", func(t *testing.T) []sinks.Record { return spread(t, 8, 131046, time.Millisecond) }, []int{8}},
		{"1048577 bytes", func(t *testing.T) []sinks.Record {
			r := spread(t, 8, 131046, time.Millisecond)
			b, _ := msgpack.Marshal(map[string]any{"m": strings.Repeat("x", 131046-len(`{"m":""}`)+1)})
			r[7].Record = b
			return r
		}, []int{7, 1}},
		{"24 hours", func(t *testing.T) []sinks.Record {
			r := spread(t, 2, 20, time.Millisecond)
			r[0].Sec -= 24 * 3600 // first and last exactly 24h apart
			r[0].Nsec = r[1].Nsec
			return r
		}, []int{2}},
		{"24 hours and 1 ms", func(t *testing.T) []sinks.Record {
			r := spread(t, 2, 20, time.Millisecond)
			r[0].Sec -= 24 * 3600
			r[0].Nsec = r[1].Nsec - 1e6
			return r
		}, []int{1, 1}},
		{"unsorted", func(t *testing.T) []sinks.Record {
			r := spread(t, 3, 20, time.Second)
			r[0], r[2] = r[2], r[0]
			return r
		}, []int{3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(t)
			s := newSink(t, f, Config{LogGroup: "g", AutoCreateGroup: true})
			recs := c.recs(t)
			if err := s.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			if got := f.Puts(); fmt.Sprint(got) != fmt.Sprint(c.calls) {
				t.Errorf("calls of %v events, want %v", got, c.calls)
			}
			evs := f.Events("g", "t")
			if len(evs) != len(recs) {
				t.Errorf("%d events stored of %d", len(evs), len(recs))
			}
			for i := 1; i < len(evs); i++ {
				if evs[i].Timestamp < evs[i-1].Timestamp {
					t.Fatal("events stored out of order")
				}
			}
		})
	}
}

// The fake refuses each rule broken by one, as the service does, so the
// sink's splitting is what keeps the calls valid.
func TestFakeEnforcesTheRules(t *testing.T) {
	f := newFake(t)
	f.CreateGroup("g", 0)
	api := newSink(t, f, Config{LogGroup: "g"}).api // the SDK client, signed
	if _, err := api.CreateLogStream(context.Background(), &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String("g"), LogStreamName: aws.String("s")}); err != nil {
		t.Fatal(err)
	}
	events := func(n, size int, step int64) []types.InputLogEvent {
		out := make([]types.InputLogEvent, n)
		for i := range out {
			out[i] = types.InputLogEvent{Timestamp: aws.Int64(now.UnixMilli() + int64(i)*step), Message: aws.String(strings.Repeat("y", size))}
		}
		return out
	}
	cases := map[string][]types.InputLogEvent{
		"Member must have length less than or equal to 10000": events(10001, 1, 0),
		"cannot span more than 24 hours":                      {events(1, 1, 0)[0], {Timestamp: aws.Int64(now.UnixMilli() + 86400001), Message: aws.String("z")}},
		"chronological order":                                 events(2, 1, -1),
		"Log event too large: 1048577 bytes":                  events(1, 1048551, 0),
	}
	cases["Upload too large: 1048577 bytes"] = append(events(7, 131046, 0), types.InputLogEvent{Timestamp: aws.Int64(now.UnixMilli()), Message: aws.String(strings.Repeat("y", 131047))})
	for want, evs := range cases {
		_, err := api.PutLogEvents(context.Background(), &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String("g"), LogStreamName: aws.String("s"), LogEvents: evs})
		var ip *types.InvalidParameterException
		if !errors.As(err, &ip) || !strings.Contains(err.Error(), want) {
			t.Errorf("want InvalidParameterException %q, got %v", want, err)
		}
	}
	if _, err := api.PutLogEvents(context.Background(), &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String("g"), LogStreamName: aws.String("s"),
		LogEvents: events(10000, 1, 0)}); err != nil {
		t.Errorf("10000 events: %v", err)
	}
}

func TestOversizeMessages(t *testing.T) {
	f := newFake(t)
	s := newSink(t, f, Config{LogGroup: "g", AutoCreateGroup: true, LogKey: "log"})
	exact := strings.Repeat("a", MaxMessageBytes)
	over := strings.Repeat("é", MaxMessageBytes/2) + "bb"
	err := s.Write(context.Background(), records(t, "t", now, map[string]any{"log": exact}, map[string]any{"log": over}))
	if err != nil {
		t.Fatal(err)
	}
	evs := f.Events("g", "t")
	if len(evs) != 2 || evs[0].Message != exact || len(evs[1].Message) > MaxMessageBytes ||
		!strings.HasSuffix(evs[1].Message, TruncatedMarker) || !strings.HasPrefix(evs[1].Message, "éé") {
		t.Fatalf("events of %d and %d bytes", len(evs[0].Message), len(evs[1].Message))
	}
	dl := newSink(t, f, Config{LogGroup: "g", AutoCreateGroup: true, LogKey: "log", Oversize: OversizeDeadLetter})
	err = dl.Write(context.Background(), records(t, "t", now, map[string]any{"log": "ok"}, map[string]any{"log": over}))
	var pe *sinks.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || !sinks.IsPermanent(pe.Failed[1]) {
		t.Fatalf("dead_letter: %v", err)
	}
}

func TestRejectedEvents(t *testing.T) {
	f := newFake(t)
	f.CreateGroup("g", 7)
	s := newSink(t, f, Config{LogGroup: "g"})
	at := []time.Time{now.Add(-15 * 24 * time.Hour), now.Add(-8 * 24 * time.Hour), now.Add(-time.Hour), now, now.Add(3 * time.Hour)}
	var recs []sinks.Record
	for i, a := range at {
		recs = append(recs, records(t, "t", a, map[string]any{"n": i})...)
		recs[i].Index = i
	}
	// The last three span 4 hours, the first ones more than 24: the sink
	// splits by span, and the service rejects per call.
	err := s.Write(context.Background(), recs)
	var pe *sinks.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 3 {
		t.Fatalf("want 3 rejected, got %v", err)
	}
	for i, reason := range map[int]string{0: "too_old", 1: "expired", 4: "too_new"} {
		if e := pe.Failed[i]; e == nil || !sinks.IsPermanent(e) || !strings.Contains(e.Error(), reason) {
			t.Errorf("record %d: %v, want %s", i, e, reason)
		}
	}
	if n := len(f.Events("g", "t")); n != 2 {
		t.Errorf("%d events stored, want 2", n)
	}
	for reason, n := range map[string]float64{"too_old": 1, "expired": 1, "too_new": 1} {
		if v := testutil.ToFloat64(s.m.rejected.WithLabelValues(reason)); v != n {
			t.Errorf("rejected %s: %v", reason, v)
		}
	}
}

func TestThrottlingAndErrors(t *testing.T) {
	f := newFake(t)
	s := newSink(t, f, Config{LogGroup: "g", AutoCreateGroup: true})
	recs := records(t, "t", now, map[string]any{"n": 1})
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	f.Fail("PutLogEvents", awsfake.Errorf("ThrottlingException", "Rate exceeded"))
	var th *sinks.ThrottledError
	if err := s.Write(context.Background(), recs); !errors.As(err, &th) {
		t.Errorf("throttling: %v", err)
	}
	f.Fail("PutLogEvents", &awsfake.Error{Status: 503, Type: "ServiceUnavailableException", Message: "try later"})
	if err := s.Write(context.Background(), recs); err == nil || sinks.IsPermanent(err) || errors.As(err, &th) {
		t.Errorf("unavailable: %v", err)
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Errorf("after the errors: %v", err)
	}
	if n := len(f.Events("g", "t")); n != 2 {
		t.Errorf("%d events", n)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]Config{
		"log_group: must be set": {},
		"log_group_fallback":     {LogGroup: "/eks/${kubernetes.namespace_name}"},
		"retention_days":         {LogGroup: "g", RetentionDays: 10},
		"oversize":               {LogGroup: "g", Oversize: "drop"},
		"max_message_bytes":      {LogGroup: "g", MaxMessageBytes: MaxMessageBytes + 1},
		"log_stream: template":   {LogGroup: "g", LogStream: "${"},
		"aws.role_arn":           {LogGroup: "g", AWS: awsconf.Config{RoleARN: "nope"}},
	}
	for want, c := range cases {
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", c, err, want)
		}
	}
}

type cwDest struct{ f *cwfake.Server }

func (d cwDest) NewSink(t *testing.T) sinks.Sink {
	return newSink(t, d.f, Config{LogGroup: "conformance", AutoCreateGroup: true})
}

func (d cwDest) Delivered(t *testing.T) []int {
	var ns []int
	for _, path := range d.f.Streams() {
		_, stream, _ := strings.Cut(path, "/")
		for _, e := range d.f.Events("conformance", stream) {
			var m struct{ N int }
			if err := json.Unmarshal([]byte(e.Message), &m); err != nil {
				t.Fatalf("%q: %v", e.Message, err)
			}
			ns = append(ns, m.N)
		}
	}
	return ns
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Destination {
		f := cwfake.New()
		// The suite's records are from 2026-11-22: keep them young.
		f.Now = func() time.Time { return time.Unix(1795332892, 0) }
		t.Cleanup(f.Close)
		return cwDest{f}
	})
}

func TestNamesAreMadeValid(t *testing.T) {
	if g := groupName([]byte("/eks/shop front:ü")); g != "/eks/shop_front___" {
		t.Errorf("group %q", g)
	}
	if st := streamName([]byte("web:1*x")); st != "web_1_x" {
		t.Errorf("stream %q", st)
	}
	if st := streamName([]byte(strings.Repeat("é", 300))); len(st) != 512 || !utf8.ValidString(st) {
		t.Errorf("long stream of %d bytes", len(st))
	}
}
