package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is the outcome of a run, like hey's.
type Report struct {
	Protocol, Mode string
	RunID          string
	Connections    int
	Total          time.Duration
	// Requests counts the chunks or HTTP requests answered successfully.
	Requests int
	// Records and Bytes were acknowledged (or, without acks, written).
	Records int
	Bytes   int64
	// RecordsPerSec and MBPerSec are over the whole run.
	RecordsPerSec float64
	MBPerSec      float64
	// Latency of each acknowledged request: ack or response.
	Fastest, Slowest, Average time.Duration
	Percentiles               map[string]time.Duration
	Histogram                 []Bucket
	// Status counts the requests by outcome: acked, sent, HTTP 200, ack
	// timeout, connection error, HTTP 503...
	Status map[string]int
	// Acked lists the acknowledged sequence numbers, for Verify.
	Acked []Span `json:"-"`
}

// Bucket is one bar of the latency histogram: requests up to Mark.
type Bucket struct {
	Mark  time.Duration
	Count int
}

// PercentileMarks are the percentiles reported.
var PercentileMarks = []float64{10, 25, 50, 75, 90, 95, 99, 99.9}

func newReport(cfg *Config, total time.Duration, workers []*worker) *Report {
	r := &Report{Protocol: cfg.Protocol, Mode: cfg.Mode, RunID: cfg.RunID, Connections: cfg.Connections,
		Total: total, Status: map[string]int{}}
	var lat []time.Duration
	for _, w := range workers {
		lat = append(lat, w.lat...)
		r.Records += w.records
		r.Bytes += w.bytes
		r.Acked = append(r.Acked, w.acked...)
		for k, v := range w.status {
			r.Status[k] += v
		}
	}
	r.Requests = len(lat)
	if s := total.Seconds(); s > 0 {
		r.RecordsPerSec = float64(r.Records) / s
		r.MBPerSec = float64(r.Bytes) / 1e6 / s
	}
	r.summarize(lat)
	return r
}

// summarize computes the latency figures.
func (r *Report) summarize(lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	r.Fastest, r.Slowest = lat[0], lat[len(lat)-1]
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	r.Average = sum / time.Duration(len(lat))
	r.Percentiles = map[string]time.Duration{}
	for _, p := range PercentileMarks {
		r.Percentiles[percentName(p)] = percentile(lat, p)
	}
	// Ten equal bars from fastest to slowest, as hey draws them.
	const bars = 10
	step := (r.Slowest - r.Fastest) / bars
	r.Histogram = make([]Bucket, bars+1)
	for i := range r.Histogram {
		r.Histogram[i].Mark = r.Fastest + time.Duration(i)*step
	}
	r.Histogram[bars].Mark = r.Slowest
	j := 0
	for _, d := range lat {
		for j < bars && d > r.Histogram[j].Mark {
			j++
		}
		r.Histogram[j].Count++
	}
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p*float64(len(sorted))/100 - 1e-9)) // 99.9% of 1000 is 999, not 1000 by rounding
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func percentName(p float64) string {
	return "p" + strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", p), "0"), ".")
}

// Print writes the report as hey does.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nSummary (%s %s, %d connections, run %s):\n", r.Protocol, r.Mode, r.Connections, r.RunID)
	fmt.Fprintf(w, "  Total:\t%.4f secs\n", r.Total.Seconds())
	fmt.Fprintf(w, "  Slowest:\t%.4f secs\n", r.Slowest.Seconds())
	fmt.Fprintf(w, "  Fastest:\t%.4f secs\n", r.Fastest.Seconds())
	fmt.Fprintf(w, "  Average:\t%.4f secs\n", r.Average.Seconds())
	fmt.Fprintf(w, "  Records/sec:\t%.1f\n", r.RecordsPerSec)
	fmt.Fprintf(w, "  MB/sec:\t%.2f\n", r.MBPerSec)
	fmt.Fprintf(w, "  Records:\t%d acknowledged in %d requests (%d bytes)\n", r.Records, r.Requests, r.Bytes)
	if len(r.Histogram) > 0 {
		fmt.Fprintf(w, "\nResponse time histogram (ack or response):\n")
		most := 0
		for _, b := range r.Histogram {
			most = max(most, b.Count)
		}
		for _, b := range r.Histogram {
			bar := 0
			if most > 0 {
				bar = b.Count * 40 / most
			}
			fmt.Fprintf(w, "  %.4f [%d]\t|%s\n", b.Mark.Seconds(), b.Count, strings.Repeat("■", bar))
		}
		fmt.Fprintf(w, "\nLatency distribution:\n")
		for _, p := range PercentileMarks {
			n := percentName(p)
			fmt.Fprintf(w, "  %s%% in %.4f secs\n", strings.TrimPrefix(n, "p"), r.Percentiles[n].Seconds())
		}
	}
	fmt.Fprintf(w, "\nStatus distribution:\n")
	keys := make([]string, 0, len(r.Status))
	for k := range r.Status {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  [%s]\t%d requests\n", k, r.Status[k])
	}
}

// JSON writes the report for machines (durations in seconds).
func (r *Report) JSON(w io.Writer) error {
	pct := map[string]float64{}
	for k, v := range r.Percentiles {
		pct[k] = v.Seconds()
	}
	hist := make([]map[string]any, len(r.Histogram))
	for i, b := range r.Histogram {
		hist[i] = map[string]any{"mark": b.Mark.Seconds(), "count": b.Count}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"protocol": r.Protocol, "mode": r.Mode, "run": r.RunID, "connections": r.Connections,
		"total": r.Total.Seconds(), "requests": r.Requests, "records": r.Records, "bytes": r.Bytes,
		"records_per_sec": r.RecordsPerSec, "mb_per_sec": r.MBPerSec,
		"fastest": r.Fastest.Seconds(), "slowest": r.Slowest.Seconds(), "average": r.Average.Seconds(),
		"percentiles": pct, "histogram": hist, "status": r.Status,
	})
}
