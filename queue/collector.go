package queue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConsumerCollector exports the state of sink consumers, read from
// JetStream at each scrape: lag (messages not yet delivered), messages
// delivered and not acknowledged, and redeliveries pending.
type ConsumerCollector struct {
	q       *Queue
	sinks   []string
	lag     *prometheus.Desc
	pending *prometheus.Desc
	redeliv *prometheus.Desc
	stream  *prometheus.Desc
}

// NewConsumerCollector returns a collector for the consumers of sinks.
func NewConsumerCollector(q *Queue, sinks []string) *ConsumerCollector {
	return &ConsumerCollector{
		q: q, sinks: sinks,
		lag: prometheus.NewDesc("sluice_sink_consumer_lag_messages",
			"Messages in the stream not yet delivered to the sink.", []string{"sink"}, nil),
		pending: prometheus.NewDesc("sluice_sink_consumer_ack_pending_messages",
			"Messages delivered to the sink and not yet acknowledged.", []string{"sink"}, nil),
		redeliv: prometheus.NewDesc("sluice_sink_consumer_redelivered_messages",
			"Messages pending that were delivered more than once.", []string{"sink"}, nil),
		stream: prometheus.NewDesc("sluice_queue_stream_bytes",
			"Bytes stored in the log stream.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ConsumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.pending
	ch <- c.redeliv
	ch <- c.stream
}

// Collect implements prometheus.Collector. A consumer that cannot be read
// within two seconds is left out of that scrape.
func (c *ConsumerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, sink := range c.sinks {
		cons, err := c.q.js.Consumer(ctx, c.q.cfg.Stream.Name, ConsumerName(sink))
		if err != nil {
			continue
		}
		info := cons.CachedInfo()
		if fresh, err := cons.Info(ctx); err == nil {
			info = fresh
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(info.NumPending), sink)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumAckPending), sink)
		ch <- prometheus.MustNewConstMetric(c.redeliv, prometheus.GaugeValue, float64(info.NumRedelivered), sink)
	}
	if s, err := c.q.js.Stream(ctx, c.q.cfg.Stream.Name); err == nil {
		ch <- prometheus.MustNewConstMetric(c.stream, prometheus.GaugeValue, float64(s.CachedInfo().State.Bytes))
	}
}
