package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/awsconf"
	"github.com/sluicelog/sluice/internal/forwardtest"
	"github.com/sluicelog/sluice/sinks/cloudwatch"
	"github.com/sluicelog/sluice/sinks/cloudwatch/cwfake"
	"github.com/sluicelog/sluice/sinks/firehose"
	"github.com/sluicelog/sluice/sinks/firehose/fhfake"
)

// The reference architecture: every record through Firehose (to S3 for
// audit), only the errors to CloudWatch Logs for developers, one log group
// per namespace.
func TestCloudWatchErrorsAndFirehoseEverything(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	cw := cwfake.New()
	cw.Now = func() time.Time { return time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC) }
	defer cw.Close()
	fh := fhfake.New("audit")
	defer fh.Close()

	cfg := testConfig(t, t.TempDir(), t.TempDir())
	cfg.Sinks = []config.SinkConfig{
		{Name: "dev", Match: []string{"kube.**"}, Condition: `level == "error"`, CloudWatch: &cloudwatch.Config{
			AWS:      awsconf.Config{Region: "eu-west-1", Endpoint: cw.URL()},
			LogGroup: "/eks/${kubernetes.namespace_name}", LogGroupFallback: "/eks/unknown",
			LogStream: "${kubernetes.pod_name}", AutoCreateGroup: true, RetentionDays: 7}},
		{Name: "audit", Firehose: &firehose.Config{AWS: awsconf.Config{Region: "eu-west-1", Endpoint: fh.URL()}, DeliveryStream: "audit"}},
	}
	validate(t, cfg)
	a := startApp(t, cfg)
	defer shutdown(t, a)
	c := dialForward(t, a)
	defer c.Close()
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	var p []byte
	for i := 0; i < 100; i++ {
		level := "info"
		if i%10 == 0 {
			level = "error"
		}
		ns := []string{"shop", "pay"}[i%2]
		p = append(p, forwardtest.Entry(t0.Add(time.Duration(i)*time.Second), map[string]any{"seq": i, "level": level,
			"kubernetes": map[string]any{"namespace_name": ns, "pod_name": fmt.Sprintf("%s-1", ns)}})...)
	}
	if err := c.SendAck(forwardtest.Packed("kube.app", p, forwardtest.Options{Chunk: "a"}), "a", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, a, "dev")
	waitDrained(t, a, "audit")

	lines := 0
	for _, r := range fh.Records("audit") {
		lines += bytes.Count(r, []byte("\n"))
	}
	if lines != 100 {
		t.Errorf("firehose holds %d records, want 100", lines)
	}
	// Errors are i = 0, 10, ..., 90: all even, so all in shop.
	evs := cw.Events("/eks/shop", "shop-1")
	if len(evs) != 10 || len(cw.Streams()) != 1 {
		t.Fatalf("cloudwatch: %d events, streams %v", len(evs), cw.Streams())
	}
	for i, e := range evs {
		var m struct {
			Seq   int
			Level string
		}
		if err := json.Unmarshal([]byte(e.Message), &m); err != nil || m.Level != "error" || m.Seq != 10*i ||
			e.Timestamp != t0.Add(time.Duration(10*i)*time.Second).UnixMilli() {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	if r, _ := cw.Retention("/eks/shop"); r != 7 {
		t.Errorf("retention %d", r)
	}
}
