// Package cloudwatch is a sink that writes records to Amazon CloudWatch Logs
// with PutLogEvents, through aws-sdk-go-v2.
//
// Each record becomes one log event: its message is the record as JSON (or
// the value of log_key), its timestamp the event time in milliseconds. The
// log group and stream come from field templates (see internal/fieldtpl),
// with fallbacks; by default the stream is log_stream_prefix followed by the
// tag, as in Fluent Bit. A stream (and, when allowed, its group) is created
// on first use and remembered; ResourceAlreadyExistsException counts as
// success.
//
// The events of a batch are grouped by stream, sorted by time and cut into
// PutLogEvents calls that keep every rule of the API: at most 10,000 events,
// at most 1,048,576 bytes counting 26 bytes per event, a span of at most 24
// hours. A message larger than an event may be is truncated with a marker
// or dead-lettered (oversize). Events the service reports in
// rejectedLogEventsInfo (too new, too old, expired) go to the dead-letter
// stream and are counted per reason. ThrottlingException pauses the sink.
package cloudwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/awsconf"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/fieldtpl"
	"github.com/sluicelog/sluice/internal/jsonl"
	"github.com/sluicelog/sluice/sinks"
)

// Limits of PutLogEvents.
const (
	MaxEvents     = 10000
	MaxBatchBytes = 1048576
	EventOverhead = 26
	// MaxMessageBytes is the largest message of one event.
	MaxMessageBytes = 1048576 - EventOverhead
	// MaxSpanMillis is the longest time one call may span.
	MaxSpanMillis = 24 * 3600 * 1000
)

// TruncatedMarker ends a truncated message.
const TruncatedMarker = "[truncated]"

// Config configures a CloudWatch Logs sink.
type Config struct {
	AWS awsconf.Config `yaml:"aws"`
	// LogGroup is a field template: "/eks/${kubernetes.namespace_name}".
	LogGroup string `yaml:"log_group"`
	// LogGroupFallback is used when a field of LogGroup is missing.
	LogGroupFallback string `yaml:"log_group_fallback"`
	// LogStream is a field template; empty means log_stream_prefix + tag.
	LogStream string `yaml:"log_stream"`
	// LogStreamFallback is used when a field of LogStream is missing;
	// empty means log_stream_prefix + tag.
	LogStreamFallback string `yaml:"log_stream_fallback"`
	LogStreamPrefix   string `yaml:"log_stream_prefix"`
	// AutoCreateGroup creates missing groups (streams are always created).
	AutoCreateGroup bool `yaml:"auto_create_group"`
	// RetentionDays is set on the groups the sink creates; 0 keeps logs
	// for ever.
	RetentionDays int `yaml:"retention_days"`
	// LogKey, when set, sends only this field's value as the message.
	LogKey string `yaml:"log_key"`
	// Oversize is truncate (default) or dead_letter for messages over
	// max_message_bytes.
	Oversize        string `yaml:"oversize"`
	MaxMessageBytes int    `yaml:"max_message_bytes"`
}

// Oversize rules.
const (
	OversizeTruncate   = "truncate"
	OversizeDeadLetter = "dead_letter"
)

var validRetention = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// SetDefaults fills the zero fields.
func (c *Config) SetDefaults() {
	if c.Oversize == "" {
		c.Oversize = OversizeTruncate
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = MaxMessageBytes
	}
}

// Validate reports the first unusable field as "field: problem".
func (c Config) Validate() error {
	if err := c.AWS.Validate(); err != nil {
		return fmt.Errorf("aws.%w", err)
	}
	if c.LogGroup == "" {
		return errors.New("log_group: must be set")
	}
	for _, t := range []struct{ name, v string }{{"log_group", c.LogGroup}, {"log_stream", c.LogStream}} {
		if _, err := fieldtpl.Parse(t.v); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	if tpl, _ := fieldtpl.Parse(c.LogGroup); tpl.UsesRecord() && c.LogGroupFallback == "" {
		return errors.New("log_group_fallback: must be set when log_group uses record fields")
	}
	switch {
	case c.RetentionDays != 0 && !slices.Contains(validRetention, c.RetentionDays):
		return fmt.Errorf("retention_days: %d is not one CloudWatch allows (%v)", c.RetentionDays, validRetention)
	case c.Oversize != OversizeTruncate && c.Oversize != OversizeDeadLetter:
		return fmt.Errorf("oversize: %q is not truncate or dead_letter", c.Oversize)
	case c.MaxMessageBytes < len(TruncatedMarker)+1 || c.MaxMessageBytes > MaxMessageBytes:
		return fmt.Errorf("max_message_bytes: must be between %d and %d", len(TruncatedMarker)+1, MaxMessageBytes)
	}
	return nil
}

// API is the part of the CloudWatch Logs client the sink uses.
type API interface {
	CreateLogGroup(context.Context, *cloudwatchlogs.CreateLogGroupInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogGroupOutput, error)
	CreateLogStream(context.Context, *cloudwatchlogs.CreateLogStreamInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogStreamOutput, error)
	PutRetentionPolicy(context.Context, *cloudwatchlogs.PutRetentionPolicyInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutRetentionPolicyOutput, error)
	PutLogEvents(context.Context, *cloudwatchlogs.PutLogEventsInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutLogEventsOutput, error)
}

// Sink writes to CloudWatch Logs.
type Sink struct {
	cfg            Config
	api            API
	log            *slog.Logger
	group          *fieldtpl.Template
	stream         *fieldtpl.Template // nil: prefix + tag
	streamFallback *fieldtpl.Template
	logKey         []string

	mu     sync.Mutex
	known  map[string]bool // "group\x00stream" created or seen
	groups map[string]bool

	m metrics
}

// New builds a sink with a client from the default credential chain.
func New(ctx context.Context, cfg Config, name string, set component.Settings) (*Sink, error) {
	awsCfg, err := cfg.AWS.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	client := cloudwatchlogs.NewFromConfig(awsCfg, func(o *cloudwatchlogs.Options) {
		// The runner retries, with backoff and per-record outcomes.
		o.Retryer = aws.NopRetryer{}
	})
	return NewWithAPI(cfg, name, client, set)
}

// NewWithAPI builds a sink on a given client.
func NewWithAPI(cfg Config, name string, api API, set component.Settings) (*Sink, error) {
	set = set.Defaults()
	s := &Sink{cfg: cfg, api: api, log: set.Logger.With("sink", name), known: map[string]bool{}, groups: map[string]bool{},
		m: newMetrics(name, set.Registerer)}
	var err error
	if s.group, err = fieldtpl.Parse(cfg.LogGroup); err != nil {
		return nil, fmt.Errorf("log_group: %w", err)
	}
	if cfg.LogStream != "" {
		if s.stream, err = fieldtpl.Parse(cfg.LogStream); err != nil {
			return nil, fmt.Errorf("log_stream: %w", err)
		}
	}
	fallback := cfg.LogStreamFallback
	if fallback == "" {
		fallback = cfg.LogStreamPrefix + "${tag}"
	}
	if s.streamFallback, err = fieldtpl.Parse(fallback); err != nil {
		return nil, fmt.Errorf("log_stream_fallback: %w", err)
	}
	if cfg.LogKey != "" {
		s.logKey = splitPath(cfg.LogKey)
	}
	return s, nil
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

// Limits: one call's worth of events.
func (s *Sink) Limits() sinks.Limits {
	return sinks.Limits{MaxRecords: MaxEvents, MaxBytes: MaxBatchBytes}
}

// event is one record on its way.
type event struct {
	i       int // index in the batch
	ts      int64
	message string
}

// Write sends the records, stream by stream.
func (s *Sink) Write(ctx context.Context, records []sinks.Record) error {
	failed := map[int]error{}
	streams := map[[2]string][]event{}
	var order [][2]string
	var buf []byte
	for i := range records {
		rec := &records[i]
		key, msg, err := s.prepare(rec, buf[:0])
		if err != nil {
			failed[i] = err
			continue
		}
		if _, ok := streams[key]; !ok {
			order = append(order, key)
		}
		streams[key] = append(streams[key], event{i: i, ts: rec.Sec*1000 + int64(rec.Nsec)/1e6, message: msg})
	}
	var whole error
	for _, key := range order {
		evs := streams[key]
		if whole != nil {
			for _, e := range evs {
				failed[e.i] = whole
			}
			continue
		}
		if err := s.writeStream(ctx, key[0], key[1], evs, failed); err != nil {
			whole = err
			for _, e := range evs {
				if _, done := failed[e.i]; !done {
					failed[e.i] = err
				}
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	if len(failed) == len(records) && whole != nil && len(order) == 1 {
		return whole
	}
	return &sinks.PartialError{Failed: failed}
}

// prepare names a record's group and stream and makes its message.
func (s *Sink) prepare(rec *sinks.Record, buf []byte) ([2]string, string, error) {
	var key [2]string
	g, ok := s.group.Append(buf[:0], rec.Tag, rec.Record)
	if !ok || len(g) == 0 {
		g = append(g[:0], s.cfg.LogGroupFallback...)
	}
	key[0] = groupName(g)
	var st []byte
	ok = false
	if s.stream != nil {
		st, ok = s.stream.Append(g[:0], rec.Tag, rec.Record)
	}
	if !ok || len(st) == 0 {
		st, _ = s.streamFallback.Append(g[:0], rec.Tag, rec.Record)
	}
	key[1] = streamName(st)
	var msg []byte
	found := false
	if s.logKey != nil {
		msg, found = fieldtpl.AppendField(st[:0], rec.Record, s.logKey)
	}
	if !found {
		var err error
		if msg, err = jsonl.AppendLine(st[:0], rec.Tag, rec.Entry, jsonl.Options{}); err != nil {
			return key, "", sinks.Permanent(fmt.Errorf("cloudwatch: record cannot be converted to JSON: %w", err))
		}
		msg = msg[:len(msg)-1] // the line's newline
	}
	if !utf8.Valid(msg) {
		msg = []byte(string([]rune(string(msg)))) // invalid bytes become U+FFFD
	}
	if len(msg) == 0 {
		return key, "", sinks.Permanent(errors.New("cloudwatch: empty message (CloudWatch refuses empty events)"))
	}
	if len(msg) > s.cfg.MaxMessageBytes {
		if s.cfg.Oversize == OversizeDeadLetter {
			s.m.oversize.WithLabelValues("dead_letter").Inc()
			return key, "", sinks.Permanent(fmt.Errorf("cloudwatch: message of %d bytes is over max_message_bytes %d", len(msg), s.cfg.MaxMessageBytes))
		}
		s.m.oversize.WithLabelValues("truncated").Inc()
		cut := s.cfg.MaxMessageBytes - len(TruncatedMarker)
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = append(msg[:cut], TruncatedMarker...)
	}
	return key, string(msg), nil
}

// groupName makes a valid log group name: CloudWatch allows letters,
// digits and _ - / . #, at most 512 bytes; anything else becomes "_".
func groupName(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '/' || c == '.' || c == '#'
		if !ok {
			out[i] = '_'
		}
	}
	return string(out[:min(len(out), 512)])
}

// streamName makes a valid log stream name: no ':' or '*', at most 512
// bytes.
func streamName(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		if c == ':' || c == '*' {
			out[i] = '_'
		}
	}
	n := min(len(out), 512)
	for n > 0 && n < len(out) && !utf8.RuneStart(out[n]) {
		n--
	}
	return string(out[:n])
}

// writeStream sorts a stream's events and sends them in calls within the
// limits. Per-event failures go in failed; an error means the stream could
// not be written at all.
func (s *Sink) writeStream(ctx context.Context, group, stream string, evs []event, failed map[int]error) error {
	if err := s.ensureStream(ctx, group, stream); err != nil {
		return err
	}
	slices.SortStableFunc(evs, func(a, b event) int {
		switch {
		case a.ts < b.ts:
			return -1
		case a.ts > b.ts:
			return 1
		}
		return 0
	})
	for len(evs) > 0 {
		n, size := 0, 0
		for n < len(evs) && n < MaxEvents {
			es := len(evs[n].message) + EventOverhead
			if size+es > MaxBatchBytes || evs[n].ts-evs[0].ts > MaxSpanMillis {
				break
			}
			size += es
			n++
		}
		if err := s.put(ctx, group, stream, evs[:n], failed); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

func (s *Sink) put(ctx context.Context, group, stream string, evs []event, failed map[int]error) error {
	in := &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream),
		LogEvents: make([]types.InputLogEvent, len(evs))}
	for i, e := range evs {
		in.LogEvents[i] = types.InputLogEvent{Timestamp: aws.Int64(e.ts), Message: aws.String(e.message)}
	}
	out, err := s.api.PutLogEvents(ctx, in)
	if err != nil {
		s.m.calls.WithLabelValues(errorCode(err)).Inc()
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			s.forget(group, stream)
		}
		return classify(fmt.Errorf("cloudwatch: PutLogEvents %s %s: %w", group, stream, err))
	}
	s.m.calls.WithLabelValues("ok").Inc()
	s.m.events.Add(float64(len(evs)))
	if r := out.RejectedLogEventsInfo; r != nil {
		reject := func(from, to int, reason string) {
			for j := max(from, 0); j < min(to, len(evs)); j++ {
				failed[evs[j].i] = sinks.Permanent(fmt.Errorf("cloudwatch: event rejected as %s", reason))
				s.m.rejected.WithLabelValues(reason).Inc()
			}
		}
		if r.TooOldLogEventEndIndex != nil {
			reject(0, int(*r.TooOldLogEventEndIndex), "too_old")
		}
		if r.ExpiredLogEventEndIndex != nil {
			from := 0
			if r.TooOldLogEventEndIndex != nil {
				from = int(*r.TooOldLogEventEndIndex)
			}
			reject(from, int(*r.ExpiredLogEventEndIndex), "expired")
		}
		if r.TooNewLogEventStartIndex != nil {
			reject(int(*r.TooNewLogEventStartIndex), len(evs), "too_new")
		}
	}
	return nil
}

// classify marks throttling and bad input; everything else, credentials
// included (an operator can fix them without losing records), is retried.
func classify(err error) error {
	switch errorCode(err) {
	case "ThrottlingException", "LimitExceededException":
		return sinks.Throttled(err, 0)
	case "InvalidParameterException":
		return sinks.Permanent(err)
	}
	return err
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return "error"
}

// ensureStream creates the stream (and the group, when allowed) the first
// time it is used.
func (s *Sink) ensureStream(ctx context.Context, group, stream string) error {
	key := group + "\x00" + stream
	s.mu.Lock()
	known := s.known[key]
	s.mu.Unlock()
	if known {
		return nil
	}
	err := s.createStream(ctx, group, stream)
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) && s.cfg.AutoCreateGroup {
		if err = s.createGroup(ctx, group); err == nil {
			err = s.createStream(ctx, group, stream)
		}
	}
	if err != nil {
		return classify(err)
	}
	s.mu.Lock()
	s.known[key] = true
	s.mu.Unlock()
	return nil
}

func (s *Sink) createStream(ctx context.Context, group, stream string) error {
	_, err := s.api.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream)})
	var exists *types.ResourceAlreadyExistsException
	if err != nil && !errors.As(err, &exists) {
		s.m.creates.WithLabelValues("stream", errorCode(err)).Inc()
		return fmt.Errorf("cloudwatch: CreateLogStream %s %s: %w", group, stream, err)
	}
	s.m.creates.WithLabelValues("stream", "ok").Inc()
	return nil
}

func (s *Sink) createGroup(ctx context.Context, group string) error {
	_, err := s.api.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(group)})
	var exists *types.ResourceAlreadyExistsException
	switch {
	case errors.As(err, &exists):
		s.m.creates.WithLabelValues("group", "ok").Inc()
		return nil // someone else made it: keep its retention
	case err != nil:
		s.m.creates.WithLabelValues("group", errorCode(err)).Inc()
		return fmt.Errorf("cloudwatch: CreateLogGroup %s: %w", group, err)
	}
	s.m.creates.WithLabelValues("group", "ok").Inc()
	s.log.Info("log group created", "group", group, "retention_days", s.cfg.RetentionDays)
	if s.cfg.RetentionDays > 0 {
		if _, err := s.api.PutRetentionPolicy(ctx, &cloudwatchlogs.PutRetentionPolicyInput{
			LogGroupName: aws.String(group), RetentionInDays: aws.Int32(int32(s.cfg.RetentionDays))}); err != nil {
			return fmt.Errorf("cloudwatch: PutRetentionPolicy %s: %w", group, err)
		}
	}
	return nil
}

// forget drops a stream from the cache after the service said it is gone.
func (s *Sink) forget(group, stream string) {
	s.mu.Lock()
	delete(s.known, group+"\x00"+stream)
	s.mu.Unlock()
}

// Close has nothing to release.
func (s *Sink) Close(context.Context) error { return nil }

type metrics struct {
	calls    *prometheus.CounterVec
	creates  *prometheus.CounterVec
	rejected *prometheus.CounterVec
	oversize *prometheus.CounterVec
	events   prometheus.Counter
}

func newMetrics(name string, r prometheus.Registerer) metrics {
	l := prometheus.Labels{"sink": name}
	m := metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cloudwatch_put_calls_total",
			Help: "PutLogEvents calls by result: ok or the AWS error code.", ConstLabels: l}, []string{"result"}),
		creates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cloudwatch_creates_total",
			Help: "CreateLogGroup and CreateLogStream calls by resource and result (ok includes already existing).", ConstLabels: l}, []string{"resource", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cloudwatch_rejected_events_total",
			Help: "Events CloudWatch refused in rejectedLogEventsInfo, by reason (too_old, too_new, expired); they are dead-lettered.", ConstLabels: l}, []string{"reason"}),
		oversize: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cloudwatch_oversize_events_total",
			Help: "Messages over max_message_bytes, by what was done: truncated or dead_letter.", ConstLabels: l}, []string{"action"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_cloudwatch_events_sent_total",
			Help: "Events sent in successful PutLogEvents calls.", ConstLabels: l}),
	}
	r.MustRegister(m.calls, m.creates, m.rejected, m.oversize, m.events)
	return m
}
