package api

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Series are the counters and gauges of a /metrics page by series: the
// name alone when it has no labels, else name{label="value",...} with the
// labels sorted, as the page writes them.
type Series map[string]float64

// ParseSeries reads Prometheus text.
func ParseSeries(r io.Reader) (Series, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := Series{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var v float64
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name
			if len(labels) > 0 {
				sort.Strings(labels)
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = v
		}
	}
	return out, nil
}

// Sum adds up the series of metric name that carry every one of labels
// (each written label="value").
func (s Series) Sum(name string, labels ...string) float64 {
	var sum float64
	for key, v := range s {
		if key != name && !strings.HasPrefix(key, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(key, l) {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// Series reads /metrics.
func (c *Client) Series(ctx context.Context) (Series, error) {
	res, err := c.send(ctx, nil, "GET", "/metrics", nil)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		return nil, clientError(res.StatusCode, raw)
	}
	return ParseSeries(res.Body)
}
