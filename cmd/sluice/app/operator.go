package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/jsonl"
	"github.com/sluicelog/sluice/queue"
	"github.com/sluicelog/sluice/sinks"
)

// operator implements api.Operator over the app.
type operator struct{ a *App }

var _ api.Operator = operator{}

func (o operator) runner(sink string) (*sinks.Runner, error) {
	r, ok := o.a.byName[sink]
	if !ok {
		return nil, fmt.Errorf("sink %q: %w", sink, api.ErrNotFound)
	}
	return r, nil
}

func (o operator) Status(ctx context.Context) (*api.Status, error) {
	a := o.a
	st := &api.Status{}
	if a.replicas != nil {
		st.Replica = a.replicas.ID()
		for _, r := range a.replicas.List() {
			st.Replicas = append(st.Replicas, api.ReplicaStatus{ID: r.ID, ForwardConnections: r.ForwardConnections,
				HTTPConnections: r.HTTPConnections, OTLPConnections: r.OTLPConnections, RecordsPerSec: r.RecordsPerSec, Draining: r.Draining, Announced: r.Announced})
		}
	}
	if a.forward != nil {
		st.Listeners = append(st.Listeners, api.ListenerStatus{Name: "forward", Addr: a.forward.Addr().String(),
			Connections: int(listenerMetric(a.ingestReg, "sluice_ingest_connections", "forward"))})
	}
	for _, l := range a.extraListeners {
		st.Listeners = append(st.Listeners, l())
	}
	js := a.q.JetStream()
	st.Stream = api.StreamStatus{Name: a.q.StreamName(), Retention: a.cfg.NATS.Stream.Retention,
		MaxBytes: int64(a.cfg.NATS.Stream.MaxBytes), Connected: a.q.Healthy() == nil}
	if s, err := js.Stream(ctx, a.q.StreamName()); err == nil {
		state := s.CachedInfo().State
		st.Stream.Messages, st.Stream.Bytes, st.Stream.FirstSeq, st.Stream.LastSeq = state.Msgs, state.Bytes, state.FirstSeq, state.LastSeq
	}
	dead, _ := a.q.DeadLetterCounts(ctx)
	for _, sc := range a.cfg.Sinks {
		ss := api.SinkStatus{Name: sc.Name, Type: sc.Type(), DeadLetters: dead[sc.Name]}
		if c, err := js.Consumer(ctx, a.q.StreamName(), queue.ConsumerName(sc.Name)); err == nil {
			info := c.CachedInfo()
			ss.Lag, ss.AckPending, ss.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
		}
		if r, ok := a.byName[sc.Name]; ok {
			s := r.Stats()
			ss.Delivered, ss.Dead, ss.Retried, ss.LastError = s.Delivered, s.Dead, s.Retried, s.LastError
			if !s.LastErrorAt.IsZero() {
				at := s.LastErrorAt
				ss.LastErrorAt = &at
			}
		}
		st.Sinks = append(st.Sinks, ss)
	}
	return st, nil
}

func (o operator) Rewind(ctx context.Context, sink string, seq uint64, at time.Time) (uint64, error) {
	if _, err := o.runner(sink); err != nil {
		return 0, err
	}
	if seq == 0 {
		return o.a.RewindSinkToTime(ctx, sink, at)
	}
	return o.a.RewindSink(ctx, sink, seq)
}

func (o operator) DeadLetters(ctx context.Context, sink string, from uint64, limit int) ([]api.DeadLetter, error) {
	if _, err := o.runner(sink); err != nil {
		return nil, err
	}
	dls, err := o.a.q.DeadLetters(ctx, sink, from, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.DeadLetter, len(dls))
	for i := range dls {
		out[i] = deadLetterView(&dls[i])
	}
	return out, nil
}

func (o operator) DeadLetter(ctx context.Context, seq uint64) (*api.DeadLetter, error) {
	d, err := o.a.q.DeadLetterAt(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("dead letter %d: %w", seq, api.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	v := deadLetterView(d)
	return &v, nil
}

func (o operator) ReplayDeadLetters(ctx context.Context, sink string, limit int) (int, error) {
	if _, err := o.runner(sink); err != nil {
		return 0, err
	}
	return o.a.ReplayDeadLetters(ctx, sink, limit)
}

// deadLetterView shows a dead letter with its record as JSON.
func deadLetterView(d *queue.DeadLetter) api.DeadLetter {
	v := api.DeadLetter{Seq: d.StoredSeq, Sink: d.Sink, Tag: d.Tag, Error: d.Err, Attempts: d.Attempts,
		Origin: fmt.Sprintf("%d-%d", d.Seq, d.Index), Stored: d.Stored}
	if e, _, err := chunk.ReadEntry(d.Entry, 0); err == nil {
		v.Time = time.Unix(e.Sec, int64(e.Nsec)).UTC().Format(time.RFC3339Nano)
		if rec, _, err := jsonl.AppendValue(nil, e.Record, 0); err == nil {
			v.Record = json.RawMessage(rec)
		}
	}
	return v
}
