package s3

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/sinktest"
)

// fakeS3 is gofakes3 on loopback with a bucket, and a client for the test.
type fakeS3 struct {
	url    string
	client *awss3.Client
}

func newFakeS3(t testing.TB) *fakeS3 { return newFakeS3With(t, nil) }

// newFakeS3With puts wrap, when not nil, in front of the fake S3.
func newFakeS3With(t testing.TB, wrap func(http.Handler) http.Handler) *fakeS3 {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	var h http.Handler = gofakes3.New(s3mem.New()).Server()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := awss3.New(awss3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, nil
		})})
	if _, err := client.CreateBucket(context.Background(), &awss3.CreateBucketInput{Bucket: aws.String("logs")}); err != nil {
		t.Fatal(err)
	}
	return &fakeS3{url: srv.URL, client: client}
}

var opened = time.Date(2026, 11, 22, 7, 34, 52, 0, time.UTC)

func (f *fakeS3) sink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	cfg.AWS.Region = "eu-west-1"
	cfg.AWS.Endpoint = f.url
	cfg.PathStyle = true
	if cfg.Bucket == "" {
		cfg.Bucket = "logs"
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, "s3", component.Settings{Now: func() time.Time { return opened }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// objects lists the bucket and returns each object's lines.
func (f *fakeS3) objects(t testing.TB) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	list, err := f.client.ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: aws.String("logs")})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list.Contents {
		get, err := f.client.GetObject(context.Background(), &awss3.GetObjectInput{Bucket: aws.String("logs"), Key: o.Key})
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(get.Body)
		if err != nil {
			t.Fatalf("%s: %v", *o.Key, err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 16<<20)
		lines := []map[string]any{}
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: %v", *o.Key, err)
			}
			lines = append(lines, m)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", *o.Key, err)
		}
		get.Body.Close()
		out[*o.Key] = lines
	}
	return out
}

func recs(t testing.TB, tag string, from, n int, pad string) []sinks.Record {
	out := make([]sinks.Record, n)
	for i := range out {
		b, err := msgpack.Marshal(map[string]any{"n": from + i, "pad": pad})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = sinks.Record{Tag: tag, Entry: chunk.Entry{Sec: opened.Unix(), Record: b}, Seq: 1, Index: i}
	}
	return out
}

var keyShape = regexp.MustCompile(`^logs/2026/11/22/07/(kube\.a|kube\.b)-[0-9a-f-]{36}\.json\.gz$`)

// Concurrent writes share one object per tag; each returns once its object
// is stored; every record is in the bucket once.
func TestObjectsPerTagAfterTimeout(t *testing.T) {
	f := newFakeS3(t)
	s := f.sink(t, Config{UploadTimeout: 300 * time.Millisecond})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			batch := append(recs(t, "kube.a", w*100, 50, "x"), recs(t, "kube.b", w*100+50, 50, "y")...)
			errs <- s.Write(context.Background(), batch)
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	objs := f.objects(t)
	if len(objs) != 2 {
		t.Fatalf("%d objects, want one per tag: %v", len(objs), keys(objs))
	}
	seen := map[float64]int{}
	for k, lines := range objs {
		if !keyShape.MatchString(k) {
			t.Errorf("key %q", k)
		}
		for _, l := range lines {
			seen[l["n"].(float64)]++
			if l["@timestamp"] != "2026-11-22T07:34:52.000000000Z" {
				t.Errorf("line %v", l)
			}
		}
	}
	if len(seen) != 400 {
		t.Errorf("%d distinct records, want 400", len(seen))
	}
	for n, c := range seen {
		if c != 1 {
			t.Errorf("record %v stored %d times", n, c)
		}
	}
}

func keys(m map[string][]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// An object is uploaded as soon as it reaches total_file_size; a write is
// never split across objects.
func TestRollBySize(t *testing.T) {
	f := newFakeS3(t)
	s := f.sink(t, Config{TotalFileSize: 16 << 10, UploadTimeout: time.Hour, KeyFormat: "%Y/${tag[1]}/${uuid}.gz"})
	noise := make([]byte, 8<<10)
	for i := 0; i < 3; i++ {
		rand.Read(noise)
		// The upload timeout is an hour: only the size can end the write.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.Write(ctx, recs(t, "kube.web", i*10, 10, hex.EncodeToString(noise)[:4096]))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	objs := f.objects(t)
	if len(objs) != 3 {
		t.Fatalf("%d objects, want 3: %v", len(objs), keys(objs))
	}
	for k, lines := range objs {
		if !strings.HasPrefix(k, "2026/web/") || len(lines) != 10 {
			t.Errorf("%s: %d lines", k, len(lines))
		}
	}
}

// A large object goes up in parts through the upload manager.
func TestMultipartUpload(t *testing.T) {
	f := newFakeS3(t)
	s := f.sink(t, Config{TotalFileSize: 6 << 20, UploadTimeout: time.Hour, PartSize: 5 << 20})
	noise := make([]byte, 3<<10)
	var batch []sinks.Record
	for i := 0; i < 2200; i++ { // about 6.6 MB of incompressible hex
		rand.Read(noise)
		batch = append(batch, recs(t, "kube.a", i, 1, hex.EncodeToString(noise))...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	objs := f.objects(t)
	if len(objs) != 1 {
		t.Fatalf("%d objects", len(objs))
	}
	for _, lines := range objs {
		if len(lines) != 2200 || lines[2199]["n"].(float64) != 2199 {
			t.Errorf("%d lines", len(lines))
		}
	}
	if v := testutil.ToFloat64(s.m.objects.WithLabelValues("multipart")); v != 1 {
		t.Errorf("multipart uploads: %v", v)
	}
}

// A failed upload fails the writes in it, to be retried; nothing is
// acknowledged before an object is stored.
func TestFailedUpload(t *testing.T) {
	f := newFakeS3(t)
	s := f.sink(t, Config{Bucket: "missing", UploadTimeout: 50 * time.Millisecond})
	err := s.Write(context.Background(), recs(t, "kube.a", 0, 5, "x"))
	if err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "NoSuchBucket") {
		t.Fatalf("want a retryable NoSuchBucket error, got %v", err)
	}
	// Close uploads what is open.
	ok := f.sink(t, Config{UploadTimeout: time.Hour})
	done := make(chan error, 1)
	go func() { done <- ok.Write(context.Background(), recs(t, "kube.a", 0, 5, "x")) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok.mu.Lock()
		n := len(ok.open)
		ok.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := ok.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if objs := f.objects(t); len(objs) != 1 {
		t.Errorf("%d objects after Close", len(objs))
	}
	if err := ok.Write(context.Background(), recs(t, "kube.a", 0, 1, "x")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for want, c := range map[string]Config{
		"bucket":            {},
		"key_format":        {Bucket: "b", KeyFormat: "%Q"},
		"not record fields": {Bucket: "b", KeyFormat: "${kubernetes.pod_name}"},
		"part_size":         {Bucket: "b", PartSize: 1 << 20},
		"upload_timeout":    {Bucket: "b", UploadTimeout: -1},
	} {
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", c, err, want)
		}
	}
}

type s3Dest struct{ f *fakeS3 }

func (d s3Dest) NewSink(t *testing.T) sinks.Sink {
	return d.f.sink(t, Config{UploadTimeout: 20 * time.Millisecond})
}

func (d s3Dest) Delivered(t *testing.T) []int {
	var ns []int
	for _, lines := range d.f.objects(t) {
		for _, l := range lines {
			ns = append(ns, int(l["n"].(float64)))
		}
	}
	return ns
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Destination { return s3Dest{newFakeS3(t)} })
}
