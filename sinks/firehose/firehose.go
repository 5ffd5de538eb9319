// Package firehose is a sink that writes records to an Amazon Data Firehose
// (Kinesis Data Firehose) delivery stream with PutRecordBatch, through
// aws-sdk-go-v2, typically on to S3.
//
// Each record is a line of JSON ending in a newline (the event time under
// time_key first, as in the file sink), so the objects Firehose writes are
// read line by line. With pack, consecutive lines share one Firehose record
// up to the record limit, which saves Firehose's per-record rounding (5 KB)
// for small logs. Calls stay within 500 records and 4 MiB; a line over
// 1,000 KiB is dead-lettered. When the answer has FailedPutCount > 0, only
// the failed records are retried (throttled when the code says the stream
// is over its throughput).
package firehose

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	fh "github.com/aws/aws-sdk-go-v2/service/firehose"
	"github.com/aws/aws-sdk-go-v2/service/firehose/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/awsconf"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/jsonl"
	"github.com/sluicelog/sluice/sinks"
)

// Limits of PutRecordBatch.
const (
	MaxRecords     = 500
	MaxBatchBytes  = 4 << 20
	MaxRecordBytes = 1000 << 10
)

// Config configures a Firehose sink.
type Config struct {
	AWS            awsconf.Config `yaml:"aws"`
	DeliveryStream string         `yaml:"delivery_stream"`
	// Pack puts several lines in one Firehose record (off by default).
	Pack bool `yaml:"pack"`
	// TimeKey names the event time in each line ("-": left out).
	TimeKey string `yaml:"time_key"`
	// TagKey, when set, adds the tag under this key.
	TagKey string `yaml:"tag_key"`
}

// SetDefaults fills the zero fields.
func (c *Config) SetDefaults() {
	if c.TimeKey == "" {
		c.TimeKey = jsonl.DefaultTimeKey
	}
}

// Validate reports the first unusable field as "field: problem".
func (c Config) Validate() error {
	if err := c.AWS.Validate(); err != nil {
		return fmt.Errorf("aws.%w", err)
	}
	if c.DeliveryStream == "" {
		return errors.New("delivery_stream: must be set")
	}
	return nil
}

// API is the part of the Firehose client the sink uses.
type API interface {
	PutRecordBatch(context.Context, *fh.PutRecordBatchInput, ...func(*fh.Options)) (*fh.PutRecordBatchOutput, error)
}

// Sink writes to a delivery stream.
type Sink struct {
	cfg   Config
	api   API
	log   *slog.Logger
	jopts jsonl.Options
	m     metrics
}

// New builds a sink with a client from the default credential chain.
func New(ctx context.Context, cfg Config, name string, set component.Settings) (*Sink, error) {
	awsCfg, err := cfg.AWS.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	client := fh.NewFromConfig(awsCfg, func(o *fh.Options) { o.Retryer = aws.NopRetryer{} })
	return NewWithAPI(cfg, name, client, set), nil
}

// NewWithAPI builds a sink on a given client.
func NewWithAPI(cfg Config, name string, api API, set component.Settings) *Sink {
	set = set.Defaults()
	s := &Sink{cfg: cfg, api: api, log: set.Logger.With("sink", name), m: newMetrics(name, set.Registerer)}
	if cfg.TimeKey != "-" {
		s.jopts.TimeKey = cfg.TimeKey
	}
	s.jopts.TagKey = cfg.TagKey
	return s
}

// Limits: unpacked, one call's worth of records.
func (s *Sink) Limits() sinks.Limits {
	if s.cfg.Pack {
		return sinks.Limits{MaxBytes: MaxBatchBytes}
	}
	return sinks.Limits{MaxRecords: MaxRecords, MaxBytes: MaxBatchBytes}
}

// entry is one Firehose record and the batch records in it.
type entry struct {
	data []byte
	recs []int
}

// Write sends the records in calls within the limits.
func (s *Sink) Write(ctx context.Context, records []sinks.Record) error {
	failed := map[int]error{}
	var entries []entry
	var buf []byte
	enc := jsonl.NewEncoder(s.jopts)
	for i := range records {
		start := len(buf)
		var err error
		buf, err = enc.AppendLine(buf, records[i].Tag, records[i].Entry)
		if err != nil {
			failed[i] = sinks.Permanent(fmt.Errorf("firehose: record cannot be converted to JSON: %w", err))
			continue
		}
		line := buf[start:]
		if len(line) > MaxRecordBytes {
			s.m.oversize.Inc()
			failed[i] = sinks.Permanent(fmt.Errorf("firehose: a record of %d bytes is over Firehose's limit of %d", len(line), MaxRecordBytes))
			buf = buf[:start]
			continue
		}
		if n := len(entries); s.cfg.Pack && n > 0 && len(entries[n-1].data)+len(line) <= MaxRecordBytes {
			e := &entries[n-1]
			e.data = buf[len(buf)-len(e.data)-len(line) : len(buf)]
			e.recs = append(e.recs, i)
			continue
		}
		entries = append(entries, entry{data: line, recs: []int{i}})
	}
	// buf may have moved while growing: point the entries at its end state.
	off := 0
	for i := range entries {
		n := len(entries[i].data)
		entries[i].data = buf[off : off+n]
		off += n
	}
	var whole error
	for len(entries) > 0 && whole == nil {
		n, size := 0, 0
		for n < len(entries) && n < MaxRecords && size+len(entries[n].data) <= MaxBatchBytes {
			size += len(entries[n].data)
			n++
		}
		whole = s.put(ctx, entries[:n], failed)
		if whole != nil {
			for _, e := range entries {
				for _, i := range e.recs {
					failed[i] = whole
				}
			}
		}
		entries = entries[n:]
	}
	switch {
	case len(failed) == 0:
		return nil
	case whole != nil && len(failed) == len(records):
		return whole
	}
	return &sinks.PartialError{Failed: failed}
}

// put sends one call; failed records of a 200 answer go in failed.
func (s *Sink) put(ctx context.Context, entries []entry, failed map[int]error) error {
	in := &fh.PutRecordBatchInput{DeliveryStreamName: aws.String(s.cfg.DeliveryStream), Records: make([]types.Record, len(entries))}
	for i, e := range entries {
		in.Records[i] = types.Record{Data: e.data}
	}
	out, err := s.api.PutRecordBatch(ctx, in)
	if err != nil {
		var ae smithy.APIError
		code := "error"
		if errors.As(err, &ae) {
			code = ae.ErrorCode()
		}
		s.m.calls.WithLabelValues(code).Inc()
		err = fmt.Errorf("firehose: PutRecordBatch %s: %w", s.cfg.DeliveryStream, err)
		switch code {
		case "ServiceUnavailableException", "ThrottlingException", "LimitExceededException":
			return sinks.Throttled(err, 0)
		case "InvalidArgumentException", "ValidationException":
			return sinks.Permanent(err)
		}
		return err
	}
	s.m.calls.WithLabelValues("ok").Inc()
	if aws.ToInt32(out.FailedPutCount) == 0 {
		return nil
	}
	if len(out.RequestResponses) != len(entries) {
		return fmt.Errorf("firehose: %d responses for %d records", len(out.RequestResponses), len(entries))
	}
	for j, r := range out.RequestResponses {
		if r.ErrorCode == nil {
			continue
		}
		s.m.failedRecords.WithLabelValues(*r.ErrorCode).Inc()
		err := fmt.Errorf("firehose: record failed: %s: %s", aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage))
		if *r.ErrorCode == "ServiceUnavailableException" {
			err = sinks.Throttled(err, 0)
		}
		for _, i := range entries[j].recs {
			failed[i] = err
		}
	}
	return nil
}

// Close has nothing to release.
func (s *Sink) Close(context.Context) error { return nil }

type metrics struct {
	calls         *prometheus.CounterVec
	failedRecords *prometheus.CounterVec
	oversize      prometheus.Counter
}

func newMetrics(name string, r prometheus.Registerer) metrics {
	l := prometheus.Labels{"sink": name}
	m := metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_firehose_put_calls_total",
			Help: "PutRecordBatch calls by result: ok or the AWS error code.", ConstLabels: l}, []string{"result"}),
		failedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_firehose_failed_records_total",
			Help: "Firehose records failed inside a successful call (FailedPutCount), by ErrorCode; they are retried.", ConstLabels: l}, []string{"code"}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_firehose_oversize_records_total",
			Help: "Records over 1,000 KiB as JSON, dead-lettered.", ConstLabels: l}),
	}
	r.MustRegister(m.calls, m.failedRecords, m.oversize)
	return m
}
