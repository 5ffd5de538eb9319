// Package s3 is a sink that writes gzip-compressed NDJSON objects to Amazon
// S3 through aws-sdk-go-v2's upload manager (multipart above its part size).
//
// Records are gathered into one open object per tag; each line is the
// record as JSON with the event time under time_key, as in the file sink.
// An object is uploaded when it reaches total_file_size (of NDJSON) or
// upload_timeout after its first record, whichever comes first, and on
// shutdown. A Write returns only once the object holding its records is
// stored, so the runner acknowledges records only after that (it keeps the
// messages alive with in-progress acks meanwhile); several concurrent
// writes share an object, so concurrency bounds how many batches one
// object gathers.
//
// Each record is stored once: a Write has no timeout of its own (the sink is
// a sinks.Gatherer), and a failed upload is retried, with backoff, as the
// same sealed object under the same key, which S3 overwrites whole. Only an
// upload that S3 refused outright (a 4xx answer such as AccessDenied or
// NoSuchBucket: nothing was stored) fails its writes back to the runner,
// whose records then go into a new object; so does one still failing when
// Close gives up.
//
// Keys come from key_format: strftime conversions (%Y %m %d %H %M %S, of
// the time the object was opened, in UTC), ${tag}, ${tag[N]} and ${uuid} (a
// fresh UUID per object), e.g. logs/%Y/%m/%d/%H/${tag}-${uuid}.json.gz.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/awsconf"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/fieldtpl"
	"github.com/sluicelog/sluice/internal/jsonl"
	"github.com/sluicelog/sluice/internal/units"
	"github.com/sluicelog/sluice/sinks"
)

// Defaults for Config.
const (
	DefaultKeyFormat     = "logs/%Y/%m/%d/%H/${tag}-${uuid}.json.gz"
	DefaultTotalFileSize = 64 << 20
	DefaultUploadTimeout = time.Minute
	DefaultPartSize      = 8 << 20
)

// Config configures an S3 sink.
type Config struct {
	AWS    awsconf.Config `yaml:"aws"`
	Bucket string         `yaml:"bucket"`
	// KeyFormat names objects (see the package documentation).
	KeyFormat string `yaml:"key_format"`
	// TotalFileSize uploads an object once its NDJSON, before compression,
	// reaches it.
	TotalFileSize units.ByteSize `yaml:"total_file_size"`
	// UploadTimeout uploads an object this long after its first record.
	UploadTimeout time.Duration `yaml:"upload_timeout"`
	// PartSize is the multipart part size (at least 5MiB).
	PartSize units.ByteSize `yaml:"part_size"`
	// PathStyle addresses buckets as paths (LocalStack, MinIO).
	PathStyle bool   `yaml:"path_style"`
	TimeKey   string `yaml:"time_key"`
	TagKey    string `yaml:"tag_key"`
}

// SetDefaults fills the zero fields.
func (c *Config) SetDefaults() {
	if c.KeyFormat == "" {
		c.KeyFormat = DefaultKeyFormat
	}
	if c.TotalFileSize == 0 {
		c.TotalFileSize = DefaultTotalFileSize
	}
	if c.UploadTimeout == 0 {
		c.UploadTimeout = DefaultUploadTimeout
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.TimeKey == "" {
		c.TimeKey = jsonl.DefaultTimeKey
	}
}

// Validate reports the first unusable field as "field: problem".
func (c Config) Validate() error {
	if err := c.AWS.Validate(); err != nil {
		return fmt.Errorf("aws.%w", err)
	}
	switch {
	case c.Bucket == "":
		return errors.New("bucket: must be set")
	case c.TotalFileSize < 1:
		return errors.New("total_file_size: must be positive")
	case c.UploadTimeout <= 0:
		return errors.New("upload_timeout: must be positive")
	case int64(c.PartSize) < manager.MinUploadPartSize:
		return fmt.Errorf("part_size: must be at least %d (5MiB)", manager.MinUploadPartSize)
	}
	if _, _, err := parseKey(c.KeyFormat); err != nil {
		return fmt.Errorf("key_format: %w", err)
	}
	return nil
}

const uuidMark = "\x00uuid\x00"

// parseKey splits a key format into its time layout and tag template.
func parseKey(format string) (*fieldtpl.Layout, *fieldtpl.Template, error) {
	l, err := fieldtpl.ParseLayout(strings.ReplaceAll(format, "${uuid}", uuidMark))
	if err != nil {
		return nil, nil, err
	}
	t, err := fieldtpl.Parse(string(l.Append(nil, time.Time{})))
	if err != nil {
		return nil, nil, err
	}
	if t.UsesRecord() {
		return nil, nil, errors.New("only ${tag}, ${tag[N]} and ${uuid} can be used, not record fields")
	}
	return l, t, nil
}

// Sink writes objects to S3.
type Sink struct {
	cfg      Config
	uploader *manager.Uploader
	layout   *fieldtpl.Layout
	log      *slog.Logger
	now      func() time.Time
	jopts    jsonl.Options

	mu       sync.Mutex
	open     map[string]*object // by tag
	closed   bool
	flushing bool // no more gathering: see Flush
	wg       sync.WaitGroup

	// abandon ends upload retries: Close closes it when its ctx ends.
	abandon     chan struct{}
	abandonOnce sync.Once
	// retryMin and retryMax bound the backoff between upload attempts.
	retryMin, retryMax time.Duration

	m metrics
}

// object is an object being gathered, then uploaded.
type object struct {
	tag     string
	opened  time.Time
	buf     bytes.Buffer
	zw      *gzip.Writer
	records int
	raw     int // NDJSON bytes before compression
	timer   *time.Timer
	sealed  bool
	done    chan struct{}
	err     error
	key     string
}

// New builds a sink with a client from the default credential chain.
func New(ctx context.Context, cfg Config, name string, set component.Settings) (*Sink, error) {
	awsCfg, err := cfg.AWS.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	client := awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		o.UsePathStyle = cfg.PathStyle
		o.Retryer = aws.NopRetryer{}
	})
	return NewWithClient(cfg, name, client, set)
}

// NewWithClient builds a sink on a given client.
func NewWithClient(cfg Config, name string, client manager.UploadAPIClient, set component.Settings) (*Sink, error) {
	set = set.Defaults()
	layout, _, err := parseKey(cfg.KeyFormat)
	if err != nil {
		return nil, fmt.Errorf("key_format: %w", err)
	}
	s := &Sink{cfg: cfg, layout: layout, log: set.Logger.With("sink", name), now: set.Now,
		open: map[string]*object{}, m: newMetrics(name, set.Registerer),
		abandon: make(chan struct{}), retryMin: time.Second, retryMax: 30 * time.Second}
	s.uploader = manager.NewUploader(client, func(u *manager.Uploader) { u.PartSize = int64(cfg.PartSize) })
	if cfg.TimeKey != "-" {
		s.jopts.TimeKey = cfg.TimeKey
	}
	s.jopts.TagKey = cfg.TagKey
	return s, nil
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("s3 sink: closed")

// Flush uploads the open objects now, and from now on each object as soon
// as a Write has added its records (the runner is shutting down).
func (s *Sink) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushing = true
	for _, o := range s.open {
		s.sealLocked(o)
	}
}

// Write adds the records to the open objects of their tags and waits until
// those objects are stored. It ends early only when ctx does (the runner
// stops hard): the records may then be stored and come back (at least once).
func (s *Sink) Write(ctx context.Context, records []sinks.Record) error {
	failed := map[int]error{}
	byTag := map[string][]int{}
	var tags []string
	for i := range records {
		t := records[i].Tag
		if _, ok := byTag[t]; !ok {
			tags = append(tags, t)
		}
		byTag[t] = append(byTag[t], i)
	}
	var line []byte
	waits := map[*object][]int{}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	enc := jsonl.NewEncoder(s.jopts)
	for _, tag := range tags {
		o := s.open[tag]
		if o == nil {
			o = s.newObject(tag)
		}
		var joined []int
		for _, i := range byTag[tag] {
			var err error
			if line, err = enc.AppendLine(line[:0], records[i].Tag, records[i].Entry); err != nil {
				failed[i] = sinks.Permanent(fmt.Errorf("s3: record cannot be converted to JSON: %w", err))
				continue
			}
			if _, err := o.zw.Write(line); err != nil {
				failed[i] = err
				continue
			}
			o.records++
			o.raw += len(line)
			joined = append(joined, i)
		}
		waits[o] = joined
		if s.flushing || o.raw >= int(s.cfg.TotalFileSize) {
			s.sealLocked(o)
		}
	}
	s.mu.Unlock()
	for o, idx := range waits {
		select {
		case <-o.done:
		case <-ctx.Done():
			// The object may still be stored: the records come back
			// after a restart and may then be in two objects.
			return ctx.Err()
		}
		if o.err != nil {
			for _, i := range idx {
				failed[i] = o.err
			}
		}
	}
	switch {
	case len(failed) == 0:
		return nil
	case len(failed) == len(records) && len(waits) == 1:
		for _, e := range failed {
			if !sinks.IsPermanent(e) {
				return e
			}
		}
	}
	return &sinks.PartialError{Failed: failed}
}

// newObject opens an object for tag; s.mu is held.
func (s *Sink) newObject(tag string) *object {
	o := &object{tag: tag, opened: s.now().UTC(), done: make(chan struct{})}
	o.zw, _ = gzip.NewWriterLevel(&o.buf, gzip.BestSpeed)
	o.timer = time.AfterFunc(s.cfg.UploadTimeout, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sealLocked(o)
	})
	s.open[tag] = o
	return o
}

// sealLocked closes an object to new records and uploads it; s.mu is held.
func (s *Sink) sealLocked(o *object) {
	if o.sealed {
		return
	}
	o.sealed = true
	o.timer.Stop()
	if s.open[o.tag] == o {
		delete(s.open, o.tag)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.upload(o)
	}()
}

// key names an object.
func (s *Sink) key(o *object) string {
	tpl, err := fieldtpl.Parse(string(s.layout.Append(nil, o.opened)))
	if err != nil { // a % or $ from the layout's own text: keep it literal
		tpl = fieldtpl.MustParse(strings.ReplaceAll(string(s.layout.Append(nil, o.opened)), "$", "$$"))
	}
	k, _ := tpl.Append(nil, o.tag, nil)
	return strings.ReplaceAll(string(k), uuidMark, uuid.NewString())
}

// upload stores a sealed object, retrying it under its key until it is
// stored, refused outright, or abandoned by Close.
func (s *Sink) upload(o *object) {
	defer close(o.done)
	if err := o.zw.Close(); err != nil {
		o.err = err
		return
	}
	o.key = s.key(o)
	for attempt := 1; ; attempt++ {
		err := s.put(o)
		if err == nil {
			return
		}
		if refused(err) {
			s.m.objects.WithLabelValues("error").Inc()
			o.err = fmt.Errorf("s3: uploading %s/%s: %w", s.cfg.Bucket, o.key, err)
			s.log.Warn("upload refused; its records will be retried in a new object", "key", o.key, "records", o.records, "err", err)
			return
		}
		s.m.retries.Inc()
		wait := sinks.Backoff(s.retryMin, s.retryMax, attempt)
		s.log.Warn("upload failed; retrying the same object", "key", o.key, "records", o.records, "attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.abandon:
			t.Stop()
			s.m.objects.WithLabelValues("error").Inc()
			o.err = fmt.Errorf("s3: uploading %s/%s: abandoned at close after %d attempts: %w", s.cfg.Bucket, o.key, attempt, err)
			return
		}
	}
}

// put makes one attempt to store the object under its key.
func (s *Sink) put(o *object) error {
	start := time.Now()
	// Uploads finish even when the writes waiting on them give up, so
	// that Close can flush.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := s.uploader.Upload(ctx, &awss3.PutObjectInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(o.key), Body: bytes.NewReader(o.buf.Bytes()),
		ContentType: aws.String("application/x-ndjson"), ContentEncoding: aws.String("gzip"),
	})
	s.m.seconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	kind := "single"
	if out.UploadID != "" {
		kind = "multipart"
	}
	s.m.objects.WithLabelValues(kind).Inc()
	s.m.bytes.Add(float64(o.buf.Len()))
	s.log.Debug("object stored", "key", o.key, "records", o.records, "bytes", o.buf.Len(), "upload", kind)
	return nil
}

// refused reports whether S3 answered an upload with a client error that
// means nothing was stored and trying the same request again cannot help
// (AccessDenied, NoSuchBucket, ...): any 4xx but 408 and 429.
func refused(err error) bool {
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) {
		return false
	}
	c := re.HTTPStatusCode()
	return c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests
}

// Limits: none of its own; objects gather batches.
func (s *Sink) Limits() sinks.Limits { return sinks.Limits{} }

// Close uploads the open objects and waits for every upload.
func (s *Sink) Close(ctx context.Context) error {
	s.Flush()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.abandonOnce.Do(func() { close(s.abandon) })
		return ctx.Err()
	}
}

type metrics struct {
	retries prometheus.Counter
	objects *prometheus.CounterVec
	bytes   prometheus.Counter
	seconds prometheus.Observer
}

func newMetrics(name string, r prometheus.Registerer) metrics {
	l := prometheus.Labels{"sink": name}
	objects := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_s3_objects_total",
		Help: "Objects uploaded, by kind (single, multipart), or error: refused by S3 or abandoned at close (their records are retried in a new object).", ConstLabels: l}, []string{"kind"})
	bytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_s3_object_bytes_total",
		Help: "Compressed bytes of the objects uploaded.", ConstLabels: l})
	seconds := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_s3_upload_seconds",
		Help: "Time to upload one object.", ConstLabels: l, Buckets: prometheus.ExponentialBuckets(0.01, 3, 9)})
	retries := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_s3_upload_retries_total",
		Help: "Failed upload attempts retried as the same object under the same key.", ConstLabels: l})
	r.MustRegister(objects, bytes, seconds, retries)
	return metrics{objects: objects, bytes: bytes, seconds: seconds, retries: retries}
}
