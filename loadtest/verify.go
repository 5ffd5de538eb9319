package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Target is where Verify looks for the records.
type Target struct {
	// FileDir is a file sink's directory (NDJSON files).
	FileDir string
	// ESURL and ESIndex: an Elasticsearch index (pattern) counted with
	// _count for lg_run; only losses can be told there, not duplicates.
	ESURL, ESIndex string
	// MetricsURL is sluice's /metrics: the sinks' delivered counters
	// (sluice_sink_records_total{outcome="delivered"}) must grow, from
	// Baseline, by the number of acknowledged records. Counters cannot
	// tell duplicates; more deliveries than acks count as Extra, and
	// records sent to the dead-letter stream as Dead. Sink names one sink;
	// empty, every sink must have delivered them all.
	MetricsURL, Sink string
	// VictoriaLogsURL is a VictoriaLogs server: the run's records are
	// counted with a LogsQL stats query, duplicates by distinct lg_seq.
	VictoriaLogsURL string
	Baseline        SinkCounts
	// AllowDuplicates accepts records found more than once. Without it a
	// duplicate fails the verification: sluice writes each record once per
	// replica (docs/PRODUCTION.md says when a duplicate can still happen).
	AllowDuplicates bool
}

// Verification is what arrived of the acknowledged records.
type Verification struct {
	Acked      int // acknowledged records
	Found      int // distinct acknowledged records found
	Lost       int // acknowledged and not found
	Duplicates int // extra copies found (of any record of the run)
	Extra      int // found but never acknowledged (sent before a failure)
	Dead       int // sent to the dead-letter stream (metrics only)
	// Waited is how long until everything was there (or the deadline).
	Waited time.Duration
	// LastWrite, for a file sink directory, is the latest modification
	// time of the files that hold the run's records: when the last of them
	// was written, however long reading them back took. For VictoriaLogs
	// it is when the server first held as many of the run's rows as were
	// acknowledged, however long counting the distinct ones took.
	LastWrite time.Time
	// DuplicatesAllowed is the target's AllowDuplicates.
	DuplicatesAllowed bool
}

// OK reports whether nothing acknowledged was lost and, unless duplicates
// are allowed, nothing was found twice.
func (v Verification) OK() bool {
	return v.Lost == 0 && (v.DuplicatesAllowed || v.Duplicates == 0)
}

// Problem says what makes the verification fail, or "" when it is OK.
func (v Verification) Problem() string {
	switch {
	case v.Lost > 0:
		return "acknowledged records were lost"
	case !v.OK():
		return "records were written more than once (-allow-duplicates accepts that)"
	}
	return ""
}

func (v Verification) String() string {
	extra := fmt.Sprintf("%d duplicates", v.Duplicates)
	if v.Dead > 0 {
		extra = fmt.Sprintf("%d dead letters", v.Dead)
	}
	return fmt.Sprintf("verified: %d acknowledged, %d found, %d lost, %s, %d unacknowledged found (after %.2fs)",
		v.Acked, v.Found, v.Lost, extra, v.Extra, v.Waited.Seconds())
}

// Verify waits, up to wait, until the target holds every acknowledged
// record of the report's run, and counts what is lost and duplicated.
func Verify(ctx context.Context, r *Report, t Target, wait time.Duration) (Verification, error) {
	acked := map[uint64]bool{}
	for _, s := range r.Acked {
		for i := uint64(0); i < s.N; i++ {
			acked[s.From+i] = true
		}
	}
	start := time.Now()
	deadline := start.Add(wait)
	files := newFileScanner(t.FileDir, r.RunID)
	vl := &victoriaLogsWaiter{base: t.VictoriaLogsURL, run: r.RunID}
	for {
		var v Verification
		var err error
		last := time.Now().After(deadline)
		switch {
		case t.FileDir != "":
			v, err = files.poll(acked)
		case t.ESURL != "":
			v, err = verifyES(ctx, t, runField(r.Protocol), r.RunID, len(acked))
		case t.MetricsURL != "":
			v, err = verifyMetrics(ctx, t, len(acked))
		case t.VictoriaLogsURL != "":
			v, err = vl.poll(ctx, len(acked), last)
		default:
			return Verification{}, errors.New("verify: no target (a file sink directory, an Elasticsearch index or sluice's metrics)")
		}
		v.Waited, v.DuplicatesAllowed = time.Since(start), t.AllowDuplicates
		if err != nil || v.Lost == 0 || last {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fileScanner reads a file sink's directory incrementally: each poll reads
// only what was appended since the last, and takes lg_seq out of the lines
// of the run without decoding them, so that waiting costs little CPU beside
// the sluice being measured.
type fileScanner struct {
	dir       string
	marker    []byte // "lg_run":"<run>"
	offsets   map[string]int64
	seen      map[uint64]int
	lastWrite time.Time
}

func newFileScanner(dir, run string) *fileScanner {
	return &fileScanner{dir: dir, marker: []byte(`"lg_run":"` + run + `"`), offsets: map[string]int64{}, seen: map[uint64]int{}}
}

func (f *fileScanner) poll(acked map[uint64]bool) (Verification, error) {
	files, err := filepath.Glob(filepath.Join(f.dir, "*.ndjson"))
	if err != nil {
		return Verification{}, err
	}
	for _, name := range files {
		if err := f.scan(name); err != nil {
			return Verification{}, err
		}
	}
	v := tally(acked, f.seen)
	v.LastWrite = f.lastWrite
	return v, nil
}

var seqKey = []byte(`"lg_seq":"`)

// scan reads the whole lines appended to a file since the last scan.
func (f *fileScanner) scan(name string) error {
	fh, err := os.Open(name)
	if err != nil {
		return err
	}
	defer fh.Close()
	off := f.offsets[name]
	if _, err := fh.Seek(off, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(fh, 1<<20)
	found := false
	defer func() {
		if fi, err := fh.Stat(); err == nil && found && fi.ModTime().After(f.lastWrite) {
			f.lastWrite = fi.ModTime()
		}
	}()
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line over 1 MiB: skip it whole (not one of ours).
			for err == bufio.ErrBufferFull {
				off += int64(len(line))
				line, err = r.ReadSlice('\n')
			}
			off += int64(len(line))
			continue
		}
		if err != nil {
			break // a partial last line is read again next time
		}
		off += int64(len(line))
		if !bytes.Contains(line, f.marker) {
			continue
		}
		found = true
		if i := bytes.Index(line, seqKey); i >= 0 && len(line) >= i+len(seqKey)+seqWidth {
			if n, err := strconv.ParseUint(string(line[i+len(seqKey):i+len(seqKey)+seqWidth]), 10, 64); err == nil {
				f.seen[n]++
			}
		}
	}
	f.offsets[name] = off
	return nil
}

func tally(acked map[uint64]bool, seen map[uint64]int) Verification {
	v := Verification{Acked: len(acked)}
	for n, c := range seen {
		if acked[n] {
			v.Found++
		} else {
			v.Extra++
		}
		v.Duplicates += c - 1
	}
	v.Lost = v.Acked - v.Found
	return v
}

// runField is the field that holds the run id: OTLP carries it as a log
// attribute, which sluice writes under attributes.
func runField(protocol string) string {
	if protocol == "otlp" {
		return "attributes.lg_run"
	}
	return "lg_run"
}

// verifyES counts the run's documents, by field (holding the run id).
func verifyES(ctx context.Context, t Target, field, run string, acked int) (Verification, error) {
	index := t.ESIndex
	if index == "" {
		index = "_all"
	}
	u := strings.TrimRight(t.ESURL, "/") + "/" + index + "/_count?q=" + url.QueryEscape(field+":"+run)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Verification{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return Verification{}, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var c struct {
		Count int `json:"count"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &c) != nil {
		return Verification{Acked: acked, Lost: acked}, fmt.Errorf("verify: %s: %s", res.Status, body)
	}
	v := Verification{Acked: acked, Found: min(c.Count, acked)}
	v.Lost = acked - v.Found
	return v, nil
}

// SinkCounts is what sluice's sinks have done so far, by sink name.
type SinkCounts map[string]SinkCount

// SinkCount is one sink's record counters.
type SinkCount struct{ Delivered, Dead float64 }

// ReadSinkCounts reads sluice_sink_records_total from sluice's /metrics.
func ReadSinkCounts(ctx context.Context, metricsURL string) (SinkCounts, error) {
	fams, err := readMetrics(ctx, metricsURL)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	counts := SinkCounts{}
	fam := fams["sluice_sink_records_total"]
	if fam == nil {
		return counts, nil
	}
	for _, m := range fam.GetMetric() {
		var sink, outcome string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "sink":
				sink = l.GetValue()
			case "outcome":
				outcome = l.GetValue()
			}
		}
		c := counts[sink]
		switch outcome {
		case "delivered":
			c.Delivered = m.GetCounter().GetValue()
		case "dead":
			c.Dead = m.GetCounter().GetValue()
		}
		counts[sink] = c
	}
	return counts, nil
}

// ErrNoPublishErrors means a /metrics page has no
// sluice_queue_publish_errors_total: sluice shows every reason at 0 from
// the start, so the page is not sluice's, or its binary is older than that.
var ErrNoPublishErrors = errors.New("no sluice_queue_publish_errors_total")

// ReadPublishErrors reads sluice_queue_publish_errors_total from sluice's
// /metrics: the publishes to JetStream that failed (and were retried or
// refused), by reason (stalled, timeout, store_failed, ...). An empty map
// means none failed; a page without the metric is ErrNoPublishErrors.
func ReadPublishErrors(ctx context.Context, metricsURL string) (map[string]int, error) {
	fams, err := readMetrics(ctx, metricsURL)
	if err != nil {
		return nil, fmt.Errorf("publish errors: %w", err)
	}
	fam := fams["sluice_queue_publish_errors_total"]
	if fam == nil {
		return nil, fmt.Errorf("publish errors: %w on %s", ErrNoPublishErrors, metricsURL)
	}
	errs := map[string]int{}
	for _, m := range fam.GetMetric() {
		if n := int(m.GetCounter().GetValue()); n > 0 {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					errs[l.GetValue()] += n
				}
			}
		}
	}
	return errs, nil
}

// readMetrics reads the metric families of a Prometheus text page.
func readMetrics(ctx context.Context, metricsURL string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", metricsURL, res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", metricsURL, err)
	}
	return fams, nil
}

// verifyMetrics compares the sinks' counters with the baseline; with
// several sinks the one that delivered least decides.
func verifyMetrics(ctx context.Context, t Target, acked int) (Verification, error) {
	now, err := ReadSinkCounts(ctx, t.MetricsURL)
	if err != nil {
		return Verification{Acked: acked, Lost: acked}, err
	}
	if t.Sink != "" {
		if _, ok := now[t.Sink]; !ok {
			return Verification{Acked: acked, Lost: acked}, fmt.Errorf("verify: sluice has no sink %q", t.Sink)
		}
		now = SinkCounts{t.Sink: now[t.Sink]}
	}
	if len(now) == 0 {
		return Verification{Acked: acked, Lost: acked}, errors.New("verify: sluice reports no sink")
	}
	var v Verification
	first := true
	for name, c := range now {
		base := t.Baseline[name]
		delivered := int(c.Delivered - base.Delivered)
		dead := int(c.Dead - base.Dead)
		w := Verification{Acked: acked, Found: min(delivered, acked), Extra: max(delivered-acked, 0)}
		w.Lost = acked - w.Found
		w.Dead = max(dead, 0)
		if first || w.Found < v.Found {
			v = w
			first = false
		}
	}
	return v, nil
}
