package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/sluicelog/sluice/ingest/multiline"
	"github.com/sluicelog/sluice/internal/bufpool"
	"github.com/sluicelog/sluice/internal/chunk"
	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/mono"
	"github.com/sluicelog/sluice/internal/msgp"
	"github.com/sluicelog/sluice/internal/units"
)

// Publisher stores chunks durably; the queue implements it.
type Publisher interface {
	// Publish starts storing c and returns at once (or blocks briefly when the
	// publisher is saturated). The chunk must not change until the returned
	// Pending reports. Publishing the same chunk again after a failure must be
	// safe (the queue deduplicates it).
	Publish(c *chunk.Chunk) (chunk.Pending, error)
}

// Config configures the Forward listener.
type Config struct {
	// Listen is the TCP address; the UDP heartbeat uses the same port.
	Listen string `yaml:"listen"`
	// MaxChunkBytes caps one Forward value on the wire.
	MaxChunkBytes units.ByteSize `yaml:"max_chunk_bytes"`
	// MaxDecompressedBytes caps a compressed chunk once inflated.
	MaxDecompressedBytes units.ByteSize `yaml:"max_decompressed_bytes"`
	// MaxInflightBytes bounds, per connection, the bytes of chunks read but
	// not yet acknowledged; reading stops above it.
	MaxInflightBytes units.ByteSize `yaml:"max_inflight_bytes"`
	// MaxInflightBytesTotal bounds the same over all connections: with
	// thousands of forwarders, memory follows this, not connections times
	// max_inflight_bytes.
	MaxInflightBytesTotal units.ByteSize `yaml:"max_inflight_bytes_total"`
	// MaxInflightChunks bounds, per connection, the chunks awaiting storage.
	MaxInflightChunks int `yaml:"max_inflight_chunks"`
	// ReadBufferBytes is the read buffer a connection starts with and goes
	// back to when its sender pauses; it grows (from a shared pool) for
	// bigger values.
	ReadBufferBytes units.ByteSize `yaml:"read_buffer_bytes"`
	// WriteTimeout bounds writing one ack.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxConnectionAge, when set, closes a connection once it is this old,
	// give or take 10% so that a fleet does not reconnect at once: between
	// chunks, after every ack. The forwarder reconnects through the load
	// balancer, which spreads connections over replicas that came up since.
	// 0 (the default) keeps connections; cluster.balance does the same job
	// on demand.
	MaxConnectionAge time.Duration `yaml:"max_connection_age"`
	// UDPHeartbeat answers Fluentd's UDP heartbeat on the listen port.
	UDPHeartbeat *bool `yaml:"udp_heartbeat"`
	// Security is the shared-key handshake; off when no shared key is set.
	Security SecurityConfig `yaml:"security"`
	// TLS is on when a certificate and key are set.
	TLS TLSConfig `yaml:"tls"`
	// Multiline joins the lines of one event per connection and stream
	// before they are stored (docs/TRANSFORMS.md); off by default.
	Multiline multiline.Config `yaml:"multiline"`
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = ":24224"
	}
	if c.MaxChunkBytes == 0 {
		c.MaxChunkBytes = units.ByteSize(DefaultLimits.MaxChunkBytes)
	}
	if c.MaxDecompressedBytes == 0 {
		c.MaxDecompressedBytes = units.ByteSize(DefaultLimits.MaxDecompressedBytes)
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = 64 << 20
	}
	if c.MaxInflightChunks == 0 {
		c.MaxInflightChunks = 64
	}
	if c.MaxInflightBytesTotal == 0 {
		c.MaxInflightBytesTotal = max(256<<20, c.MaxInflightBytes)
	}
	if c.ReadBufferBytes == 0 {
		c.ReadBufferBytes = 16 << 10
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.UDPHeartbeat == nil {
		on := true
		c.UDPHeartbeat = &on
	}
	c.Security.setDefaults()
	c.TLS.setDefaults()
	c.Multiline.SetDefaults()
}

// Validate checks the configuration; error texts start with the field name.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, msg string) { errs = append(errs, fmt.Errorf("%s: %s", field, msg)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen", fmt.Sprintf("%q is not host:port", c.Listen))
	}
	if c.MaxChunkBytes < 1<<10 || c.MaxChunkBytes > 1<<30 {
		add("max_chunk_bytes", "must be between 1KiB and 1GiB")
	}
	if c.MaxDecompressedBytes < c.MaxChunkBytes || c.MaxDecompressedBytes > 4<<30 {
		add("max_decompressed_bytes", "must be at least max_chunk_bytes and at most 4GiB")
	}
	if c.MaxInflightBytes < 1<<10 {
		add("max_inflight_bytes", "must be at least 1KiB")
	}
	if c.MaxInflightChunks < 1 {
		add("max_inflight_chunks", "must be positive")
	}
	if c.MaxInflightBytesTotal < c.MaxInflightBytes {
		add("max_inflight_bytes_total", "must be at least max_inflight_bytes")
	}
	if c.ReadBufferBytes < 4<<10 || c.ReadBufferBytes > 64<<20 {
		add("read_buffer_bytes", "must be between 4KiB and 64MiB")
	}
	if c.MaxConnectionAge < 0 || c.MaxConnectionAge > 0 && c.MaxConnectionAge < time.Second {
		add("max_connection_age", "must be 0 (off) or at least 1s")
	}
	if c.WriteTimeout <= 0 {
		add("write_timeout", "must be positive")
	}
	if _, err := c.Security.load(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.TLS.load(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Multiline.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("multiline.%w", err))
	}
	return errors.Join(errs...)
}

type serverMetrics struct {
	records   prometheus.Counter
	bytes     prometheus.Counter
	chunks    *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	conns     prometheus.Gauge
	shed      *prometheus.CounterVec
	readBufs  prometheus.Gauge // bytes of read buffers held by connections
	retries   prometheus.Counter
	heartbeat prometheus.Counter
	// authFailures counts connections closed by a failed TLS or Forward
	// handshake, by reason.
	authFailures *prometheus.CounterVec
}

func newServerMetrics(r prometheus.Registerer) *serverMetrics {
	l := prometheus.Labels{"listener": "forward"}
	m := &serverMetrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_records_total",
			Help: "Records stored durably (and acknowledged when asked).", ConstLabels: l}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_bytes_total",
			Help: "Bytes of records stored durably, after decompression.", ConstLabels: l}),
		chunks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_chunks_total",
			Help: "Forward values decoded, by mode.", ConstLabels: l}, []string{"mode"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_rejected_total",
			Help: "Connections closed (Forward) or requests refused (HTTP, OTLP) for bad input, by reason.", ConstLabels: l}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_dropped_records_total",
			Help: "Records acknowledged but deliberately not stored, by reason.", ConstLabels: l}, []string{"reason"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_ingest_connections",
			Help: "Open connections.", ConstLabels: l}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_connections_shed_total",
			Help: "Connections closed by sluice between chunks, after their acks, so that the forwarder reconnects elsewhere: by reason (balance, max_age).", ConstLabels: l}, []string{"reason"}),
		readBufs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_ingest_read_buffer_bytes",
			Help: "Bytes of read buffers held by connections; a connection waiting for its sender's next bytes holds none.", ConstLabels: l}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_publish_retries_total",
			Help: "Chunks published again after JetStream refused or failed them.", ConstLabels: l}),
		heartbeat: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_heartbeats_total",
			Help: "UDP heartbeats answered.", ConstLabels: l}),
		authFailures: component.AuthFailures(r).MustCurryWith(l),
	}
	r.MustRegister(m.records, m.bytes, m.chunks, m.rejected, m.dropped, m.conns, m.shed, m.readBufs, m.retries, m.heartbeat)
	return m
}

// Server is the Forward protocol listener.
type Server struct {
	cfg    Config
	limits Limits
	pub    Publisher
	log    *slog.Logger
	// eagerAfterAck is the package's, read at New.
	eagerAfterAck time.Duration
	m             *serverMetrics
	ml            *multiline.Metrics // nil when joining is off

	ln  net.Listener
	udp net.PacketConn
	// auth checks the handshake; nil when it is off. Set by Start.
	auth *authenticator

	// hard ends every wait: it is cancelled by Close, or by Shutdown when its
	// context ends before the connections drained.
	hard       context.Context
	hardCancel context.CancelFunc

	// total bounds the bytes read and not yet stored over all connections.
	total *semaphore.Weighted
	// waking bounds the idle connections taking a read buffer for the bytes
	// that just arrived: a slot is held from the buffer's taking until the
	// bytes read are decoded and handed on. When a fleet's forwarders send
	// at the same moment, the rest wait for a slot with no buffer, instead
	// of thousands each holding one while they wait for the CPU.
	waking chan struct{}
	// ackWorkers runs the connections' ackers (ackLoop).
	ackWorkers *workers

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// New returns a server; cfg must have its defaults set and be valid.
func New(cfg Config, pub Publisher, set component.Settings) *Server {
	set = set.Defaults()
	hard, cancel := context.WithCancel(context.Background())
	var ml *multiline.Metrics
	if cfg.Multiline.Enabled() {
		ml = multiline.NewMetrics(set.Registerer)
	}
	return &Server{
		ackWorkers: newWorkers(ackerIdle, hard.Done()),
		ml:         ml,
		cfg:        cfg,
		limits: Limits{MaxChunkBytes: int(cfg.MaxChunkBytes), MaxDecompressedBytes: int(cfg.MaxDecompressedBytes),
			MaxTagBytes: DefaultLimits.MaxTagBytes},
		pub:           pub,
		eagerAfterAck: eagerAfterAck,
		log:           set.Logger.With("listener", "forward"),
		m:             newServerMetrics(set.Registerer),
		hard:          hard,
		hardCancel:    cancel,
		conns:         make(map[*conn]struct{}),
		total:         semaphore.NewWeighted(int64(cfg.MaxInflightBytesTotal)),
		waking:        make(chan struct{}, wakingSlots()),
	}
}

// ackerIdle is how long an acker's goroutine waits for another connection's
// chunks before it ends.
const ackerIdle = 2 * time.Second

// wakingSlots is how many idle connections may wake into a read buffer at
// once: enough to keep every CPU busy while others wait on locks or the
// queue, few enough that their buffers are a megabyte or two.
func wakingSlots() int { return max(16, 8*runtime.GOMAXPROCS(0)) }

// Start reads the secrets and certificates, listens on TCP (with TLS when
// configured; UDP for the heartbeat) and serves in the background. It
// returns once the listeners are bound.
func (s *Server) Start(ctx context.Context) error {
	auth, err := s.cfg.Security.load()
	if err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	tc, err := s.cfg.TLS.load()
	if err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	s.auth = auth
	if auth != nil || tc != nil {
		for _, r := range authReasons {
			s.m.authFailures.WithLabelValues(r)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("forward: listen: %w", err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	s.ln = ln
	if *s.cfg.UDPHeartbeat {
		host, _, _ := net.SplitHostPort(s.cfg.Listen)
		port := ln.Addr().(*net.TCPAddr).Port
		udp, err := lc.ListenPacket(ctx, "udp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err != nil {
			ln.Close()
			return fmt.Errorf("forward: listen udp heartbeat: %w", err)
		}
		s.udp = udp
		s.wg.Add(1)
		go s.heartbeat()
	}
	s.wg.Add(1)
	go s.accept()
	s.log.Info("forward listener started", "addr", ln.Addr().String(), "tls", tc != nil,
		"client_certificates", tc != nil && tc.ClientCAs != nil, "shared_key", auth != nil,
		"users", len(s.cfg.Security.Users))
	return nil
}

// Addr returns the TCP address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.hard.Done():
				return
			}
			continue
		}
		c := s.newConn(nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		c.opened = time.Now()
		if age := s.cfg.MaxConnectionAge; age > 0 {
			jitter := time.Duration(rand.Int64N(int64(age/5)+1)) - age/10
			c.ageTimer = time.AfterFunc(age+jitter, func() { c.shed("max_age") })
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.m.conns.Inc()
		go c.serve()
	}
}

func (s *Server) heartbeat() {
	defer s.wg.Done()
	buf := make([]byte, 64)
	for {
		n, addr, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n >= 1 && buf[0] == 0x00 {
			if _, err := s.udp.WriteTo([]byte{0x00}, addr); err == nil {
				s.m.heartbeat.Inc()
			}
		}
	}
}

// Shutdown stops accepting, stops reading the open connections, waits until
// every chunk already read is stored and acknowledged, and closes them. When
// ctx ends first, the rest is abandoned unacknowledged (forwarders resend).
// It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	s.mu.Lock()
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.hardCancel()
		s.ackWorkers.Wait()
		return nil
	case <-ctx.Done():
		s.Close()
		return fmt.Errorf("forward: shutdown: %w", ctx.Err())
	}
}

// Close stops everything at once: chunks not yet acknowledged stay so.
func (s *Server) Close() {
	s.stopAccepting()
	s.hardCancel()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.ackWorkers.Wait()
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	if s.ln != nil {
		s.ln.Close()
	}
	if s.udp != nil {
		s.udp.Close()
	}
}

// conn is one forwarder connection: a reader goroutine that decodes and
// publishes, and an acker goroutine that waits for each chunk's PubAck, in
// order, and writes its ack.
type conn struct {
	s   *Server
	nc  net.Conn
	log *slog.Logger
	dec *Decoder

	// inflight bounds the bytes read and not yet stored.
	inflight *semaphore.Weighted
	// pending holds the items queued and not yet acknowledged, in order.
	// An acker goroutine runs only while there are some (acking says
	// whether one does), so that an idle connection costs one goroutine,
	// not two.
	pending chan *inflight
	// unacked counts the items queued and not yet acknowledged (or
	// dropped); ackedAt is when the last ack was written (mono.Now);
	// prompt counts the chunks in a row that came with
	// nothing unacknowledged, just after an ack (queue's alone, whose
	// callers take turns: the reader, or the joiner's under jmu).
	unacked   atomic.Int32
	ackedAt   atomic.Int64
	prompt    int
	ackMu     sync.Mutex
	acking    bool
	ackers    sync.WaitGroup
	ackBroken bool // acks stopped (a failed write, or a hard stop); the ackers' own
	// gate is held by the acker while JetStream refuses a chunk, so that the
	// reader does not read further.
	gate    sync.Mutex
	stopped atomic.Bool
	// opened is when the connection was accepted; shedding is set once it
	// was asked to close (balance, max age).
	opened   time.Time
	shedding atomic.Bool
	ageTimer *time.Timer

	// small is readSmall's buffer, for a connection that is not a plain
	// socket (TLS); nil until then.
	small []byte
	// woke is set while readLoop holds a slot of s.waking.
	woke bool

	// batch gathers Message-mode events of one tag without a chunk id, which
	// arrive one record at a time, into one chunk.
	batch    *[]byte // from getBuf
	batchTag []byte
	batchN   int

	// joiner joins multiline groups (nil when off). jmu orders everything
	// it hands out: a chunk's deferred ack is queued only after the item
	// that stores its last open group.
	joiner   *multiline.Joiner
	jmu      sync.Mutex
	nextRef  uint64
	deferred map[uint64]string // chunk ref -> ack id, held by an open group
}

type inflight struct {
	c      *chunk.Chunk
	p      chunk.Pending
	err    error
	ack    string
	weight int64
	buf    *[]byte // holds c.Entries; recycled once c is stored
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{
		s:        s,
		nc:       nc,
		log:      s.log.With("remote", nc.RemoteAddr().String()),
		dec:      NewDecoder(s.limits),
		inflight: semaphore.NewWeighted(int64(s.cfg.MaxInflightBytes)),
		pending:  make(chan *inflight, s.cfg.MaxInflightChunks),
	}
	if s.ml != nil {
		c.joiner, _ = multiline.New(&s.cfg.Multiline, s.ml) // validated
		c.deferred = map[uint64]string{}
	}
	return c
}

func (c *conn) stopReading() {
	c.stopped.Store(true)
	_ = c.nc.SetReadDeadline(time.Now())
}

// shed stops reading the connection between chunks; once every chunk read
// is stored and acknowledged, serve closes it. It reports whether this call
// asked (false if the connection was asked before, or is stopping anyway).
func (c *conn) shed(reason string) bool {
	if c.stopped.Load() || !c.shedding.CompareAndSwap(false, true) {
		return false
	}
	c.s.m.shed.WithLabelValues(reason).Inc()
	c.log.Debug("closing connection so that the forwarder reconnects elsewhere", "reason", reason)
	c.stopReading()
	return true
}

// Connections returns the open connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shed asks up to n open connections, the longest open first, to close
// between chunks, after their acks, so that their forwarders reconnect
// through the load balancer; reason labels
// sluice_ingest_connections_shed_total. A value read in part is dropped
// unacknowledged (the forwarder sends it again). It returns how many it
// asked.
func (s *Server) Shed(n int, reason string) int {
	s.mu.Lock()
	cands := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		if !c.shedding.Load() && !c.stopped.Load() {
			cands = append(cands, c)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(cands, func(a, b *conn) int { return a.opened.Compare(b.opened) })
	asked := 0
	for _, c := range cands {
		if asked == n {
			break
		}
		if c.shed(reason) {
			asked++
		}
	}
	return asked
}

func (c *conn) serve() {
	// serve, readLoop and decodeAll keep small frames: every chunk's
	// publish runs below them, and with them a connection's goroutine,
	// one for each forwarder, fits a 4 KiB stack.
	defer c.closed()
	// Nothing is read as Forward events before the handshakes succeeded.
	rest, ok := c.open()
	if !ok {
		return
	}
	stopFlush := c.startFlusher()
	err := c.readLoop(rest)
	stopFlush()
	c.ackers.Wait()
	c.ended(err)
}

// closed releases what a connection holds once serve ends.
func (c *conn) closed() {
	s := c.s
	if c.ageTimer != nil {
		c.ageTimer.Stop()
	}
	c.nc.Close()
	c.dec.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.m.conns.Dec()
	s.wg.Done()
}

// ended counts and logs why readLoop returned.
func (c *conn) ended(err error) {
	var fe *Error
	switch {
	case errors.As(err, &fe):
		c.s.m.rejected.WithLabelValues(fe.Reason).Inc()
		c.log.Warn("closing connection: bad input", "reason", fe.Reason, "err", fe.Err)
	case err != nil && !c.stopped.Load() && c.s.hard.Err() == nil:
		c.log.Debug("connection ended", "err", err)
	}
}

const maxBatchBytes = 1 << 20

// readLoop decodes and submits the Forward stream, starting with the bytes
// in initial (read during the handshake).
func (c *conn) readLoop(initial []byte) error {
	bufSize := int(c.s.cfg.ReadBufferBytes)
	maxBuf := int(c.s.cfg.MaxChunkBytes) + bufSize
	// The buffer follows what the connection sends: it grows (by pooled
	// size classes) for a big value and goes back to the pool, for a small
	// one, once the sender pauses with little pending.
	buf := append(c.getReadBuf(max(bufSize, len(initial))), initial...)
	defer func() {
		c.putReadBuf(buf)
		c.leaveWaking()
	}()
	shortAt := 0      // bytes buffered when a value was last found incomplete
	readFull := false // whether the last read filled all the free space
	for {
		// A large incomplete value is decoded again only once the buffer has
		// doubled or the sender paused, so that a big chunk arriving in many
		// reads is not walked once per read.
		var err error
		if shortAt == 0 || len(buf) >= 2*shortAt || !readFull {
			var start int
			if start, shortAt, err = c.decodeAll(buf); err != nil {
				return err
			}
			buf = buf[:copy(buf, buf[start:])]
		}
		c.leaveWaking()
		if buf, err = c.fit(buf, readFull, bufSize, maxBuf, c.dec.Declared()); err != nil {
			return err
		}
		c.gate.Lock()
		//lint:ignore SA2001 waiting for the acker to release the gate is the point
		c.gate.Unlock()
		if c.stopped.Load() {
			return nil
		}
		if buf, readFull, err = c.fill(buf, readFull, maxBuf); err != nil {
			return c.readFailed(buf, err)
		}
	}
}

// leaveWaking gives back the slot of s.waking that the last wake-up took.
func (c *conn) leaveWaking() {
	if c.woke {
		<-c.s.waking
		c.woke = false
	}
}

// fit makes room in buf for the next read: a buffer twice the size when
// buf is full (up to maxBuf, past which the value is too large), one that
// holds the incomplete value at its start whole when its headers declared
// a length (declared) above buf's room, and one of bufSize again once a big
// value is done and the sender paused.
func (c *conn) fit(buf []byte, readFull bool, bufSize, maxBuf, declared int) ([]byte, error) {
	switch limit := min(cap(buf), maxBuf); {
	case len(buf) == limit && limit >= maxBuf:
		return buf, reject(ReasonTooLarge, "value is above the limit of %d bytes", c.s.cfg.MaxChunkBytes)
	case len(buf) == limit || declared > limit:
		// The option map follows the entries: declaredSlack leaves it room.
		size := declared + declaredSlack
		if len(buf) == limit {
			size = max(size, 2*cap(buf))
		}
		nb := append(c.getReadBuf(min(size, maxBuf)), buf...)
		c.putReadBuf(buf)
		return nb, nil
	case cap(buf) > bufSize && len(buf) < bufSize && !readFull:
		nb := append(c.getReadBuf(bufSize), buf...)
		c.putReadBuf(buf)
		return nb, nil
	}
	return buf, nil
}

// declaredSlack is the room fit leaves after a value's declared length for
// what follows its entries (the option map).
const declaredSlack = 4 << 10

// fill reads the sender's next bytes into buf (up to maxBuf bytes in all)
// and returns buf with them and whether the read filled all the free space.
// With nothing pending and a sender that paused, it waits for them with the
// buffer back in the pool, and takes one of the same size when they come.
func (c *conn) fill(buf []byte, readFull bool, maxBuf int) ([]byte, bool, error) {
	if len(buf) > 0 || readFull {
		limit := min(cap(buf), maxBuf)
		free := limit - len(buf)
		n, err := c.nc.Read(buf[len(buf):limit])
		return buf[:len(buf)+n], n == free, err
	}
	size := min(cap(buf), maxBuf)
	c.putReadBuf(buf)
	wake := func() []byte {
		select {
		case c.s.waking <- struct{}{}:
			c.woke = true
			return c.getReadBuf(size)
		case <-c.s.hard.Done():
			return nil
		}
	}
	full := false
	nb, n, err, ok := readWhenReady(c.nc, maxBuf, wake)
	if !ok {
		// Not a socket (TLS): wait in a read into the connection's small
		// buffer instead.
		nb, n, full, err = c.readSmall(wake)
	} else if nb != nil {
		full = n == min(cap(nb), maxBuf)
	}
	if nb == nil {
		return c.getReadBuf(size), false, err // for the error, or a read of nothing
	}
	return nb[:n], full, err
}

// readFailed says what a failed read means: nil for a stop, or for a sender
// that closed between values; an *Error for one that closed inside a value.
func (c *conn) readFailed(buf []byte, err error) error {
	if c.stopped.Load() {
		return nil
	}
	if errors.Is(err, io.EOF) && len(buf) > 0 {
		if _, _, derr := c.dec.Decode(buf); derr != nil && derr != ErrShort {
			return derr
		}
		return reject(ReasonTruncated, "connection closed inside a value (%d bytes pending)", len(buf))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// decodeAll decodes and handles the complete values at the start of buf. It
// returns the bytes they took and, when what follows is an incomplete value
// above 64 KiB, that value's length so far (else 0). It is a function of its
// own to keep readLoop's frame small (see serve).
func (c *conn) decodeAll(buf []byte) (start, shortAt int, err error) {
	for start < len(buf) {
		ev, n, err := c.dec.Decode(buf[start:])
		if err == ErrShort {
			if len(buf)-start > 64<<10 {
				shortAt = len(buf) - start
			}
			break
		}
		if err != nil {
			return start, 0, err
		}
		if err := c.handle(&ev); err != nil {
			return start, 0, err
		}
		start += n
	}
	return start, shortAt, c.flushBatch()
}

// smallReadBytes is the buffer a connection that is not a plain socket
// (TLS) waits for its sender's next bytes with: its read buffer is in the
// pool meanwhile, as a plain socket's is while readWhenReady waits.
const smallReadBytes = 512

// readSmall waits for the next bytes of a connection that is not a plain
// socket, reading them into a small buffer of its own, then moves them
// into a buffer taken with get (nil when the server is closing). full says
// whether the read filled the small buffer: more is likely waiting.
func (c *conn) readSmall(get func() []byte) (buf []byte, n int, full bool, err error) {
	if c.small == nil {
		c.small = make([]byte, smallReadBytes)
	}
	n, err = c.nc.Read(c.small)
	if n == 0 {
		return nil, 0, false, err
	}
	if buf = get(); buf == nil {
		return nil, 0, false, net.ErrClosed
	}
	return append(buf, c.small[:n]...), n, n == len(c.small), err
}

// getReadBuf takes a read buffer of at least n bytes from the pool.
func (c *conn) getReadBuf(n int) []byte {
	b := bufpool.Get(n)
	c.s.m.readBufs.Add(float64(cap(b)))
	return b
}

// putReadBuf gives a read buffer back to the pool.
func (c *conn) putReadBuf(b []byte) {
	c.s.m.readBufs.Sub(float64(cap(b)))
	bufpool.Put(b)
}

func (c *conn) handle(ev *Event) error {
	if ev.Keepalive {
		return nil
	}
	c.s.m.chunks.WithLabelValues(ev.Mode.String()).Inc()
	if ev.Signal != 0 {
		// Metrics and traces are not logs: acknowledge and drop, counted.
		c.s.m.dropped.WithLabelValues(fmt.Sprintf("signal_%d", ev.Signal)).Add(float64(ev.Count))
		return c.submit(nil, ev.Chunk)
	}
	if ev.Mode == ModeMessage && ev.Chunk == nil {
		if c.batchN > 0 && (string(c.batchTag) != string(ev.Tag) || len(*c.batch)+len(ev.Entries) > maxBatchBytes) {
			if err := c.flushBatch(); err != nil {
				return err
			}
		}
		if c.batchN == 0 {
			c.batchTag = append(c.batchTag[:0], ev.Tag...)
		}
		if c.batch == nil {
			c.batch = getBuf(len(ev.Entries))
		}
		bufpool.Append(c.batch, ev.Entries)
		c.batchN++
		return nil
	}
	if err := c.flushBatch(); err != nil {
		return err
	}
	if ev.Count == 0 {
		return c.submit(nil, ev.Chunk)
	}
	buf := getBuf(len(ev.Entries))
	*buf = append(*buf, ev.Entries...)
	return c.submitBuf(&chunk.Chunk{Tag: string(ev.Tag), ID: string(ev.Chunk), Count: ev.Count, Entries: *buf}, ev.Chunk, buf)
}

// getBuf returns a buffer for at least n bytes of entries, from the shared
// size-class pool: a chunk's buffer returns there once JetStream has stored
// the chunk, so that steady ingest does not allocate (and zero) fresh
// memory for every chunk, and a small chunk holds a small buffer.
func getBuf(n int) *[]byte { return bufpool.GetPtr(n) }

func putBuf(b *[]byte) { bufpool.PutPtr(b) }

func (c *conn) flushBatch() error {
	if c.batchN == 0 {
		return nil
	}
	ch := &chunk.Chunk{Tag: string(c.batchTag), Count: c.batchN, Entries: *c.batch}
	buf := c.batch
	c.batch, c.batchN = nil, 0
	return c.submitBuf(ch, nil, buf)
}

// submit publishes ch (nil for an ack-only item) and queues it for the acker.
// It blocks while the connection's in-flight limits are reached.
func (c *conn) submit(ch *chunk.Chunk, ackID []byte) error {
	return c.submitBuf(ch, ackID, nil)
}

// submitBuf is submit for a chunk whose entries are in buf, a buffer from
// getBuf that returns there once the chunk is stored.
func (c *conn) submitBuf(ch *chunk.Chunk, ackID []byte, buf *[]byte) error {
	if c.joiner != nil && ch != nil {
		return c.submitJoined(ch, ackID, buf)
	}
	return c.queue(ch, ackID, buf)
}

// submitJoined runs a chunk through the joiner and submits what is to be
// stored now. The chunk's ack goes with it unless an open group holds some
// of its lines; then it waits, and is queued after the item that stores the
// last such group.
func (c *conn) submitJoined(ch *chunk.Chunk, ackID []byte, buf *[]byte) error {
	c.jmu.Lock()
	defer c.jmu.Unlock()
	ref := c.nextRef
	c.nextRef++
	out := getBuf(len(ch.Entries))
	entries, n, err := c.joiner.Add(*out, ch.Tag, ch.ID, ch.Entries, ref, time.Now())
	*out = entries
	if err != nil {
		putBuf(out)
		putBuf(buf)
		return err
	}
	if c.joiner.AsIs() && buf != nil {
		out, buf = buf, out // store the chunk itself, not the copy
		*out = ch.Entries
	}
	putBuf(buf) // the joiner copied what it keeps
	ack := ackID
	if c.joiner.Held(ref) {
		if len(ackID) > 0 {
			c.deferred[ref] = string(ackID)
		}
		ack = nil
	}
	switch {
	case n > 0:
		err = c.queue(&chunk.Chunk{Tag: ch.Tag, ID: ch.ID, Count: n, Entries: *out}, ack, out)
	default:
		putBuf(out)
		if len(ack) > 0 {
			err = c.queue(nil, ack, nil)
		}
	}
	if err != nil {
		return err
	}
	return c.flushGroups(false)
}

// flushGroups stores the groups that are due (all of them with all, at the
// end of the connection) and queues the acks they release; c.jmu is held.
func (c *conn) flushGroups(all bool) error {
	for _, f := range c.joiner.Expired(time.Now(), all) {
		buf := getBuf(len(f.Entries))
		*buf = append(*buf, f.Entries...)
		if err := c.queue(&chunk.Chunk{Tag: f.Tag, ID: f.ID, Count: f.Count, Entries: *buf}, nil, buf); err != nil {
			return err
		}
	}
	for _, ref := range c.joiner.Released() {
		if id, ok := c.deferred[ref]; ok {
			delete(c.deferred, ref)
			if err := c.queue(nil, []byte(id), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// startFlusher stores groups left open past flush_interval while the
// connection is quiet; the returned func stops it and stores every group
// still open.
func (c *conn) startFlusher() (stop func()) {
	if c.joiner == nil {
		return func() {}
	}
	every := min(max(c.s.cfg.Multiline.FlushInterval/4, 50*time.Millisecond), time.Second)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.jmu.Lock()
				err := c.flushGroups(false)
				c.jmu.Unlock()
				if err != nil {
					return
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		c.jmu.Lock()
		_ = c.flushGroups(true)
		c.jmu.Unlock()
	}
}

// queue publishes ch (nil for an ack-only item) and queues it for the acker.
func (c *conn) queue(ch *chunk.Chunk, ackID []byte, buf *[]byte) error {
	it := &inflight{c: ch, ack: string(ackID), buf: buf}
	if ch != nil {
		it.weight = min(int64(len(ch.Entries)), int64(c.s.cfg.MaxInflightBytes))
		if err := c.inflight.Acquire(c.s.hard, it.weight); err != nil {
			return err
		}
		if err := c.s.total.Acquire(c.s.hard, it.weight); err != nil {
			c.inflight.Release(it.weight)
			return err
		}
		ch.Eager = ch.ID != "" && c.waitsForAcks(len(ackID) > 0)
		it.p, it.err = c.s.pub.Publish(ch)
		if _, copied := it.p.(chunk.Copied); copied {
			putBuf(it.buf) // the publisher holds a copy until stored
			it.buf = nil
		}
	}
	c.unacked.Add(1)
	select {
	case c.pending <- it:
	case <-c.s.hard.Done():
		c.unacked.Add(-1)
		c.release(it.weight)
		return c.s.hard.Err()
	}
	c.ackMu.Lock()
	if !c.acking {
		c.acking = true
		c.ackers.Add(1)
		c.s.ackWorkers.Go(c.ackLoop)
	}
	c.ackMu.Unlock()
	return nil
}

// A sender that waits for each ack before it sends its next chunk (an
// application's logger in sync mode, a forwarder flushing chunk after chunk
// on one connection) sends one chunk a linger (nats.batch.linger) when its
// chunks wait for others to join their batch message. A chunk that comes
// with nothing of its connection unacknowledged, within eagerAfterAck of
// the connection's last ack, is prompt; from the eagerStreak-th prompt
// chunk in a row on, chunks are eager: the queue sends them at once. A
// fleet's forwarders (a chunk a second each) and short bursts keep the
// linger. New reads eagerAfterAck (tests change it).
var eagerAfterAck = 10 * time.Millisecond

const eagerStreak = 8

// waitsForAcks counts a chunk about to be published, acked when acked is
// set, and reports whether it is eager (see eagerAfterAck).
func (c *conn) waitsForAcks(acked bool) bool {
	at := c.ackedAt.Load()
	if acked && c.unacked.Load() == 0 && at != 0 && mono.Since(at) < c.s.eagerAfterAck {
		c.prompt++
	} else {
		c.prompt = 0
	}
	return c.prompt >= eagerStreak
}

// release gives back the in-flight bytes of one item.
func (c *conn) release(weight int64) {
	c.inflight.Release(weight)
	c.s.total.Release(weight)
}

// ackLoop stores and acknowledges the pending items in order, and ends
// when there are none left; queue starts it again for the next.
func (c *conn) ackLoop() {
	defer c.ackers.Done()
	for {
		var it *inflight
		select {
		case it = <-c.pending:
		default:
			// Look again under the lock: an item queued before queue
			// takes it is seen here, one queued after finds acking off.
			c.ackMu.Lock()
			select {
			case it = <-c.pending:
			default:
				c.acking = false
			}
			c.ackMu.Unlock()
			if it == nil {
				return
			}
		}
		c.ack(it)
	}
}

// ack stores one item's chunk and writes its ack, unless acks stopped.
func (c *conn) ack(it *inflight) {
	defer c.release(it.weight)
	if it.c != nil && !c.ackBroken {
		if err := c.store(it); err != nil {
			c.ackBroken = true // shutting down hard: no more acks
		} else {
			putBuf(it.buf) // stored: the publisher is done with the bytes
		}
	}
	// Settled before the ack is written: the sender may send its next
	// chunk as soon as it reads it.
	c.unacked.Add(-1)
	if it.ack != "" && !c.ackBroken {
		c.ackedAt.Store(mono.Now())
		if err := c.writeAck(it.ack); err != nil {
			c.log.Debug("writing ack failed", "err", err)
			c.ackBroken = true
			c.nc.Close()
		}
	}
}

// store waits until it's chunk is stored, publishing it again (with
// backoff, reading stopped) while JetStream refuses it. It fails only when
// the server stops hard.
func (c *conn) store(it *inflight) error {
	err := it.err
	if err == nil {
		err = it.p.Wait(c.s.hard)
	}
	if err != nil {
		c.gate.Lock()
		defer c.gate.Unlock()
		backoff := 20 * time.Millisecond
		for err != nil {
			if c.s.hard.Err() != nil {
				return c.s.hard.Err()
			}
			// Jittered, so that connections refused at the same moment (a
			// full stream refuses them all) do not retry together.
			wait := backoff/2 + rand.N(backoff)
			c.log.Warn("JetStream did not store a chunk; holding the connection and retrying",
				"tag", it.c.Tag, "err", err, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-c.s.hard.Done():
				return c.s.hard.Err()
			}
			backoff = min(2*backoff, 2*time.Second)
			c.s.m.retries.Inc()
			var p chunk.Pending
			it.c.Eager = false // a retry waits for others like it
			if p, err = c.s.pub.Publish(it.c); err == nil {
				err = p.Wait(c.s.hard)
			}
		}
	}
	c.s.m.records.Add(float64(it.c.Count))
	c.s.m.bytes.Add(float64(len(it.c.Entries)))
	return nil
}

func (c *conn) writeAck(id string) error {
	b := make([]byte, 0, len(id)+8)
	b = append(b, 0x81)
	b = msgp.AppendStr(b, "ack")
	b = msgp.AppendStr(b, id)
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	_, err := c.nc.Write(b)
	return err
}
