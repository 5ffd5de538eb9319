package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"github.com/sluicelog/sluice/internal/forwardtest"
)

// Config is one load run, in hey's terms.
type Config struct {
	// Protocol is forward, http or otlp.
	Protocol string `yaml:"protocol"`
	// Addr is host:port for forward and OTLP/gRPC, a base URL for http
	// and OTLP/HTTP (http://127.0.0.1:9880, http://127.0.0.1:4318).
	Addr string `yaml:"addr"`
	// Mode: forward: packed (default), forward, message, gzip; http: json
	// (default), ndjson, msgpack; otlp: protobuf (default, OTLP/HTTP),
	// json (OTLP/HTTP), grpc.
	Mode string `yaml:"mode"`
	// Ack asks for Forward acknowledgements (require_ack_response): each
	// value carries a chunk id. Without, it carries none (only its size).
	Ack bool `yaml:"ack"`
	// Resend makes a forwarder behave like Fluent Bit's forward output
	// when its connection fails or closes before the ack: it reconnects
	// and sends the same chunk, with the same chunk id, until it is
	// acknowledged (or the run ends). Without it the chunk is given up.
	Resend bool `yaml:"resend"`
	// Records is the total (-n); Duration (-z) runs for a time instead.
	Records  int           `yaml:"records"`
	Duration time.Duration `yaml:"duration"`
	// Connections is the number of concurrent connections (-c).
	Connections int `yaml:"connections"`
	// Rate limits each connection to this many records per second (-q);
	// 0 means no limit.
	Rate float64 `yaml:"rate"`
	// Timeout bounds each acknowledgement or response (-t).
	Timeout time.Duration `yaml:"timeout"`
	// ChunkRecords is the records per chunk or request (1 in message mode).
	ChunkRecords int `yaml:"chunk_records"`
	// Gzip compresses HTTP bodies.
	Gzip bool `yaml:"gzip"`
	// SharedKey does the Forward handshake; TLS dials with TLS.
	SharedKey   string `yaml:"shared_key"`
	TLS         bool   `yaml:"tls"`
	TLSInsecure bool   `yaml:"tls_insecure"`
	// Token is sent as an HTTP bearer token.
	Token    string   `yaml:"token"`
	Workload Workload `yaml:"workload"`
	// RunID marks this run's records (lg_run); random when empty.
	RunID string `yaml:"-"`
}

// SetDefaults fills the zero fields.
func (c *Config) SetDefaults() {
	if c.Protocol == "" {
		c.Protocol = "forward"
	}
	if c.Mode == "" {
		c.Mode = map[string]string{"forward": "packed", "http": "json", "otlp": OTLPProtobuf}[c.Protocol]
	}
	if c.Addr == "" {
		c.Addr = map[string]string{"forward": "127.0.0.1:24224", "http": "http://127.0.0.1:9880", "otlp": "http://127.0.0.1:4318"}[c.Protocol]
		if c.Protocol == "otlp" && c.Mode == OTLPGRPC {
			c.Addr = "127.0.0.1:4317"
		}
	}
	if c.Connections <= 0 {
		c.Connections = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 20 * time.Second
	}
	if c.ChunkRecords <= 0 {
		c.ChunkRecords = 1000
	}
	if c.Mode == "message" {
		c.ChunkRecords = 1
	}
	if c.Records == 0 && c.Duration == 0 {
		c.Records = 100000
	}
	if c.RunID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.RunID = hex.EncodeToString(b[:])
	}
	c.Workload.setDefaults()
}

// Validate checks the combination of settings.
func (c *Config) Validate() error {
	modes := map[string][]string{"forward": {"packed", "forward", "message", "gzip"}, "http": {"json", "ndjson", "msgpack"},
		"otlp": {OTLPProtobuf, OTLPJSON, OTLPGRPC}}
	ok := false
	for _, m := range modes[c.Protocol] {
		ok = ok || m == c.Mode
	}
	switch {
	case modes[c.Protocol] == nil:
		return fmt.Errorf("protocol %q is not forward, http or otlp", c.Protocol)
	case !ok:
		return fmt.Errorf("mode %q is not one of %v for %s", c.Mode, modes[c.Protocol], c.Protocol)
	case len(c.RunID) > 8:
		return errors.New("run id longer than 8 characters")
	case c.Records < 0 || c.Duration < 0 || c.Rate < 0:
		return errors.New("records, duration and rate must not be negative")
	case c.Protocol != "forward" && c.Ack:
		return errors.New("ack is for forward: every HTTP or gRPC response is an acknowledgement")
	}
	return nil
}

// Span is a run of acknowledged sequence numbers.
type Span struct{ From, N uint64 }

// worker state, merged into the report at the end.
type worker struct {
	lat     []time.Duration
	acked   []Span
	status  map[string]int
	records int
	bytes   int64
}

// Run sends the load and returns the report. progress, when not nil, gets
// a line about every second.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Report, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var next, sent, acked atomic.Uint64
	var runCtx context.Context // set before the workers begin
	reserve := func(n int) (uint64, int) {
		if runCtx.Err() != nil {
			return 0, 0
		}
		from := next.Add(uint64(n)) - uint64(n)
		if cfg.Records > 0 {
			if from >= uint64(cfg.Records) {
				return 0, 0
			}
			n = min(n, cfg.Records-int(from))
		}
		return from, n
	}
	// Every worker encodes its chunks before the clock starts.
	workers := make([]*worker, cfg.Connections)
	var ready, wg sync.WaitGroup
	begin := make(chan struct{})
	var client *http.Client
	if cfg.Protocol == "http" || cfg.Protocol == "otlp" && cfg.Mode != OTLPGRPC {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.Connections
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: cfg.TLSInsecure} //nolint:gosec // an explicit flag
		client = &http.Client{Transport: tr, Timeout: cfg.Timeout}
	}
	for i := range workers {
		w := &worker{status: map[string]int{}}
		workers[i] = w
		ready.Add(1)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			enc := newEncoder(&cfg, i)
			reqs := w.prepare(&cfg, enc, i)
			ready.Done()
			<-begin
			w.run(runCtx, &cfg, enc, reqs, i, client, reserve, &sent, &acked)
		}(i)
	}
	ready.Wait()
	runCtx = ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	start := time.Now()
	close(begin)
	stop := make(chan struct{})
	progressDone := make(chan struct{})
	if progress != nil {
		go func() {
			defer close(progressDone)
			t := time.NewTicker(time.Second)
			defer t.Stop()
			shown := false
			for {
				select {
				case <-stop:
					if shown {
						// End the progress line; a run too short for one
						// leaves no empty line before the report.
						fmt.Fprintln(progress)
					}
					return
				case <-t.C:
					el := time.Since(start).Seconds()
					fmt.Fprintf(progress, "\r%6.0fs  %d sent  %d acked  %.0f records/s ", el, sent.Load(), acked.Load(), float64(acked.Load())/el)
					shown = true
				}
			}
		}()
	}
	wg.Wait()
	total := time.Since(start)
	close(stop)
	if progress != nil {
		// The progress line ends before the report begins, not somewhere
		// inside it.
		<-progressDone
	}
	return newReport(&cfg, total, workers), nil
}

// templates per worker: distinct bodies rotated through.
const templates = 8

// prepare encodes the worker's requests.
func (w *worker) prepare(cfg *Config, enc *encoder, id int) []*request {
	var reqs []*request
	for k := 0; k < templates; k++ {
		reqs = append(reqs, enc.build(cfg.ChunkRecords, id*templates+k))
	}
	return reqs
}

func (w *worker) run(ctx context.Context, cfg *Config, enc *encoder, reqs []*request, id int, client *http.Client,
	reserve func(int) (uint64, int), sent, acked *atomic.Uint64) {
	var lim *rate.Limiter
	if cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), max(cfg.ChunkRecords, int(cfg.Rate/10)))
	}
	var conn *forwardtest.Conn
	var cc *grpc.ClientConn
	defer func() {
		if conn != nil {
			conn.Close()
		}
		if cc != nil {
			cc.Close()
		}
	}()
	if cfg.Protocol == "otlp" && cfg.Mode == OTLPGRPC {
		var err error
		if cc, err = dialOTLPGRPC(cfg); err != nil {
			w.status["dial error"]++
			return
		}
	}
	var zbuf, body bytes.Buffer
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	for k := 0; ; k++ {
		from, n := reserve(cfg.ChunkRecords)
		if n == 0 {
			return
		}
		r := reqs[k%templates]
		if n != r.records {
			r = enc.build(n, id*templates+k%templates)
		}
		if lim != nil {
			if err := lim.WaitN(ctx, n); err != nil {
				return
			}
		}
		r.setSeq(from)
		payload, chunk := r.payload(cfg, uint64(k)*uint64(cfg.Connections)+uint64(id), &zbuf, zw)
		sent.Add(uint64(n))
		t0 := time.Now()
		var status string
		var err error
		if cfg.Protocol == "forward" {
			for {
				if conn == nil {
					if conn, err = dial(cfg); err != nil {
						status = "dial error"
						conn = nil
					}
				}
				if conn != nil {
					status, err = sendForward(conn, cfg, payload, chunk)
					if err != nil {
						conn.Close()
						conn = nil
					}
				}
				if err == nil || !cfg.Resend || !cfg.Ack || ctx.Err() != nil {
					break
				}
				w.status["resent after "+status]++
				time.Sleep(20 * time.Millisecond)
			}
		} else if cc != nil {
			status, err = exportGRPC(ctx, cc, cfg, payload)
		} else if cfg.Protocol == "otlp" {
			status, err = postHTTP(ctx, client, cfg, "/v1/logs", map[string]string{OTLPProtobuf: "application/x-protobuf", OTLPJSON: "application/json"}[cfg.Mode], r, &body, zw)
		} else {
			status, err = postHTTP(ctx, client, cfg, "/"+r.tag, map[string]string{"json": "application/json", "ndjson": "application/x-ndjson", "msgpack": "application/msgpack"}[cfg.Mode], r, &body, zw)
		}
		lat := time.Since(t0)
		w.status[status]++
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(50 * time.Millisecond) // do not spin on a refusing server
			continue
		}
		w.lat = append(w.lat, lat)
		w.records += n
		w.bytes += int64(len(payload))
		w.acked = append(w.acked, Span{From: from, N: uint64(n)})
		acked.Add(uint64(n))
	}
}

func dial(cfg *Config) (*forwardtest.Conn, error) {
	var c *forwardtest.Conn
	var err error
	if cfg.TLS {
		c, err = forwardtest.DialTLS(cfg.Addr, &tls.Config{InsecureSkipVerify: cfg.TLSInsecure}) //nolint:gosec // an explicit flag
	} else {
		c, err = forwardtest.Dial(cfg.Addr)
	}
	if err != nil || cfg.SharedKey == "" {
		return c, err
	}
	// A fixed client name: the server's own (the host name) is refused.
	ok, reason, err := c.Handshake(forwardtest.Auth{Hostname: "loadgen", SharedKey: cfg.SharedKey}, cfg.Timeout)
	if err == nil && !ok {
		err = fmt.Errorf("handshake refused: %s", reason)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sendForward writes one value and, with acks, waits for its ack.
func sendForward(c *forwardtest.Conn, cfg *Config, payload []byte, chunk string) (string, error) {
	_ = c.SetWriteDeadline(time.Now().Add(cfg.Timeout))
	if !cfg.Ack {
		if _, err := c.Write(payload); err != nil {
			return "write error", err
		}
		return "sent", nil
	}
	if err := c.SendAck(payload, chunk, cfg.Timeout); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "ack timeout", err
		}
		return "connection error", err
	}
	return "acked", nil
}

// postHTTP posts one body to path with the content type and reads the
// status.
func postHTTP(ctx context.Context, client *http.Client, cfg *Config, path, ctype string, r *request, body *bytes.Buffer, zw *gzip.Writer) (string, error) {
	payload := r.body
	body.Reset()
	if cfg.Gzip {
		zw.Reset(body)
		_, _ = zw.Write(r.body)
		_ = zw.Close()
		payload = body.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(cfg.Addr, "/")+path, bytes.NewReader(payload))
	if err != nil {
		return "request error", err
	}
	req.Header.Set("Content-Type", ctype)
	if cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	res, err := client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout", err
		}
		return "connection error", err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	status := fmt.Sprintf("HTTP %d", res.StatusCode)
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusNoContent {
		return status, errors.New(status)
	}
	return status, nil
}
