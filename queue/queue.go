// Package queue is sluice's durable buffer: a NATS JetStream stream of chunks
// between ingest and the sinks. It starts an embedded nats-server unless an
// external one is configured, creates the stream and one durable pull
// consumer per sink, publishes chunks with deduplication ids and turns
// consumed messages back into chunks.
//
// Layout: one stream (default LOGS) on subjects `<prefix>.<escaped tag>`
// (see Subject), interest retention (a message goes once every sink has
// acknowledged it), bounded by MaxBytes with discard-new (a full stream
// refuses publishes: backpressure, never silent loss) and by MaxAge. A chunk
// is one message; a chunk above the message size limit is split at entry
// boundaries; small chunks with chunk ids are gathered into batch messages
// (batch.go), whose resends Seen tells apart. Headers carry the tag, the
// entry count and the encoding.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicelog/sluice/internal/component"
	"github.com/sluicelog/sluice/internal/units"
)

// Header names of a chunk message.
const (
	HeaderTag      = "Sluice-Tag"
	HeaderCount    = "Sluice-Count"
	HeaderEncoding = "Sluice-Encoding"
	HeaderChunkID  = "Sluice-Chunk-Id"
)

// Config is the JetStream setup.
type Config struct {
	// URL of an external NATS server or cluster; empty starts an embedded one.
	URL string `yaml:"url"`
	// CredsFile is a NATS credentials file for the external server.
	CredsFile string `yaml:"creds_file"`
	// Embedded configures the embedded server.
	Embedded EmbeddedConfig `yaml:"embedded"`
	// Stream configures the log stream.
	Stream StreamConfig `yaml:"stream"`
	// DeadLetter configures the dead-letter stream.
	DeadLetter DeadLetterConfig `yaml:"dead_letter"`
	// PublishTimeout bounds how long one publish waits for its PubAck.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// MaxPendingPublishes bounds the publishes awaiting a PubAck, in total.
	MaxPendingPublishes int `yaml:"max_pending_publishes"`
	// Batch gathers small chunks into batch messages (see BatchConfig).
	Batch BatchConfig `yaml:"batch"`
}

// EmbeddedConfig configures the embedded nats-server.
type EmbeddedConfig struct {
	// StoreDir is where JetStream keeps its files.
	StoreDir string `yaml:"store_dir"`
	// Listen is a host:port for NATS clients (other replicas, the nats CLI);
	// empty means in-process only.
	Listen string `yaml:"listen"`
	// MaxPayload is the largest message the server takes.
	MaxPayload units.ByteSize `yaml:"max_payload"`
	// MaxStore caps the JetStream file store; 0 lets nats-server choose.
	MaxStore units.ByteSize `yaml:"max_store"`
}

// StreamConfig configures the log stream.
type StreamConfig struct {
	Name string `yaml:"name"`
	// SubjectPrefix is the first subject token; tags follow it.
	SubjectPrefix string `yaml:"subject_prefix"`
	// MaxBytes bounds the stream; above it publishes are refused.
	MaxBytes units.ByteSize `yaml:"max_bytes"`
	// MaxAge drops messages older than this even if a sink has not read them.
	MaxAge time.Duration `yaml:"max_age"`
	// Replicas is the number of copies in a clustered JetStream.
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is how long a chunk id is remembered for deduplication.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// Retention is "interest" (a message is removed once every sink has
	// acknowledged it) or "limits" (messages stay until max_age or max_bytes:
	// a replay window for rewinding sinks).
	Retention string `yaml:"retention"`
	// Discard is what a full stream does: "new" refuses new messages
	// (backpressure, never loss) or "old" drops the oldest, even ones a sink
	// has not written yet.
	Discard string `yaml:"discard"`
	// Compression is how sluice stores each message's entries: "s2"
	// compresses them (S2 block format, a message whose entries would not
	// shrink is stored as it is) or "none". This is sluice's own, per
	// message, before JetStream sees the bytes: every copy on the way
	// through JetStream and every byte on its disk shrinks, and the
	// stream's max_bytes holds that many more records.
	Compression string `yaml:"compression"`
}

// Stream compressions.
const (
	CompressionS2   = "s2"
	CompressionNone = "none"
)

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Embedded.StoreDir == "" {
		c.Embedded.StoreDir = "./data/jetstream"
	}
	if c.Embedded.MaxPayload == 0 {
		c.Embedded.MaxPayload = 8 << 20
	}
	if c.Stream.Name == "" {
		c.Stream.Name = "LOGS"
	}
	if c.Stream.SubjectPrefix == "" {
		c.Stream.SubjectPrefix = "logs"
	}
	if c.Stream.MaxBytes == 0 {
		c.Stream.MaxBytes = 10 << 30
	}
	if c.Stream.MaxAge == 0 {
		c.Stream.MaxAge = 72 * time.Hour
	}
	if c.Stream.Replicas == 0 {
		c.Stream.Replicas = 1
	}
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = 2 * time.Minute
	}
	if c.Stream.Retention == "" {
		c.Stream.Retention = "interest"
	}
	if c.Stream.Discard == "" {
		c.Stream.Discard = "new"
	}
	if c.Stream.Compression == "" {
		c.Stream.Compression = CompressionS2
	}
	if c.DeadLetter.MaxAge == 0 {
		c.DeadLetter.MaxAge = 14 * 24 * time.Hour
	}
	if c.DeadLetter.MaxBytes == 0 {
		c.DeadLetter.MaxBytes = 1 << 30
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.MaxPendingPublishes == 0 {
		c.MaxPendingPublishes = 1024
	}
	c.Batch.setDefaults()
}

// Validate checks the configuration; error texts start with the field name.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, msg string) { errs = append(errs, fmt.Errorf("%s: %s", field, msg)) }
	if c.URL == "" && c.Embedded.StoreDir == "" {
		add("embedded.store_dir", "must not be empty")
	}
	if c.Embedded.MaxPayload < 64<<10 || c.Embedded.MaxPayload > 64<<20 {
		add("embedded.max_payload", "must be between 64KiB and 64MiB (messages use at most 16MiB of it)")
	}
	if !validToken(c.Stream.Name) {
		add("stream.name", "must be letters, digits, '_' or '-'")
	}
	if !validToken(c.Stream.SubjectPrefix) {
		add("stream.subject_prefix", "must be letters, digits, '_' or '-'")
	}
	if c.Stream.MaxBytes < 1<<20 {
		add("stream.max_bytes", "must be at least 1MiB")
	}
	if c.Stream.MaxAge < 0 {
		add("stream.max_age", "must not be negative")
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		add("stream.replicas", "must be between 1 and 5")
	}
	if c.Stream.DuplicateWindow < 0 {
		add("stream.duplicate_window", "must not be negative")
	}
	if c.Stream.Retention != "interest" && c.Stream.Retention != "limits" {
		add("stream.retention", fmt.Sprintf("%q is not one of interest, limits", c.Stream.Retention))
	}
	if c.Stream.Discard != "new" && c.Stream.Discard != "old" {
		add("stream.discard", fmt.Sprintf("%q is not one of new, old", c.Stream.Discard))
	}
	if c.Stream.Compression != CompressionS2 && c.Stream.Compression != CompressionNone {
		add("stream.compression", fmt.Sprintf("%q is not one of s2, none", c.Stream.Compression))
	}
	if c.DeadLetter.MaxAge < 0 {
		add("dead_letter.max_age", "must not be negative")
	}
	if c.DeadLetter.MaxBytes < 1<<20 {
		add("dead_letter.max_bytes", "must be at least 1MiB")
	}
	if c.PublishTimeout <= 0 {
		add("publish_timeout", "must be positive")
	}
	if c.MaxPendingPublishes < 1 {
		add("max_pending_publishes", "must be positive")
	}
	c.Batch.validate(add, maxMessageBytes-8<<10, c.MaxPendingPublishes)
	return errors.Join(errs...)
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !safe(s[i]) {
			return false
		}
	}
	return true
}

// maxMessageBytes caps the size of one message, whatever the server allows.
const maxMessageBytes = 16 << 20

// Queue is an open connection to JetStream with the log stream in place.
type Queue struct {
	cfg        Config
	set        component.Settings
	srv        *server.Server
	nc         *nats.Conn
	js         jetstream.JetStream
	stream     jetstream.Stream
	maxMsg     int
	metrics    *metrics
	subjectFor *subjectCache
	batcher    *batcher // nil when batching is off
	seen       *Seen
	// expectStream makes JetStream refuse a message that would land in
	// another stream; made once, not per publish.
	expectStream jetstream.PublishOpt
	// lastPublish is mono.Now at the latest Publish (0: none); Storing
	// for quiet after it.
	lastPublish atomic.Int64
	quiet       time.Duration
}

// defaultQuiet is how long after a publish Storing still says so: the gaps
// between a burst's chunks are not its end.
const defaultQuiet = 2 * time.Millisecond

// Open starts the embedded server when no URL is set, connects, and creates
// or updates the log stream.
func Open(ctx context.Context, cfg Config, set component.Settings) (*Queue, error) {
	set = set.Defaults()
	q := &Queue{cfg: cfg, set: set, subjectFor: newSubjectCache(cfg.Stream.SubjectPrefix),
		expectStream: jetstream.WithExpectStream(cfg.Stream.Name), quiet: defaultQuiet}
	opts := []nats.Option{
		nats.Name("sluice"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Notice a server that vanished without closing the connection
		// (power loss, partition) within about 15s, not the default 4 min.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				set.Logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { set.Logger.Info("nats reconnected") }),
	}
	url := cfg.URL
	if url == "" {
		srv, err := startEmbedded(cfg.Embedded, set.Logger)
		if err != nil {
			return nil, err
		}
		q.srv = srv
		opts = append(opts, nats.InProcessServer(srv))
	} else if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		q.shutdownServer()
		return nil, fmt.Errorf("queue: connect to nats: %w", err)
	}
	q.nc = nc
	// Headers and the largest subject leave room below max_payload; messages
	// stay at most maxMessageBytes so that a sink's pull-ahead buffer holds
	// several of them within the client's 64MB pending limit.
	q.maxMsg = int(min(nc.MaxPayload(), maxMessageBytes)) - 8<<10
	q.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPendingPublishes),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	sc := jetstream.StreamConfig{
		Name:        cfg.Stream.Name,
		Description: "sluice log chunks",
		Subjects:    []string{cfg.Stream.SubjectPrefix + ".>"},
		Retention:   jetstream.InterestPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    int64(cfg.Stream.MaxBytes),
		MaxAge:      cfg.Stream.MaxAge,
		MaxMsgSize:  int32(nc.MaxPayload()),
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Stream.Replicas,
		Duplicates:  cfg.Stream.DuplicateWindow,
	}
	sc.RePublish = q.keysRepublish()
	if cfg.Stream.Retention == "limits" {
		sc.Retention = jetstream.LimitsPolicy
	}
	if cfg.Stream.Discard == "old" {
		sc.Discard = jetstream.DiscardOld
	}
	// The keys stream first: the log stream republishes into it.
	if err := q.createKeysStream(ctx); err != nil {
		q.Close()
		return nil, err
	}
	q.stream, err = q.createStream(ctx, sc)
	if err != nil {
		q.Close()
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || strings.Contains(err.Error(), "retention") {
			return nil, fmt.Errorf("queue: stream %s exists with other settings that cannot be changed in place (retention cannot): %w", sc.Name, err)
		}
		return nil, fmt.Errorf("queue: create stream %s: %w%s", sc.Name, err, storageHint(err))
	}
	if err := q.createDeadLetterStream(ctx); err != nil {
		q.Close()
		return nil, err
	}
	q.metrics = newMetrics(set.Registerer)
	if b := cfg.Batch; b.Enabled != nil && *b.Enabled {
		// The keys header takes up to 24 bytes a chunk beside the body.
		maxBytes := min(int(b.MaxBytes), q.maxMsg-maxBatchChunks*24)
		q.batcher = &batcher{q: q, linger: b.Linger, maxBytes: maxBytes, maxChunk: min(int(b.MaxChunkBytes), maxBytes),
			timeout: cfg.PublishTimeout, slots: make(chan struct{}, b.MaxPending)}
	}
	// Batch messages may come from other replicas whatever this one's
	// setting: the index always runs.
	if q.seen, err = q.startSeen(ctx); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// storageHint explains JetStream's refusal to reserve a stream's max_bytes.
func storageHint(err error) string {
	if strings.Contains(err.Error(), "insufficient") {
		return " (JetStream reserves each stream's max_bytes up front: lower nats.stream.max_bytes and nats.dead_letter.max_bytes, or give JetStream more store: nats.embedded.max_store, or the server's max_file_store)"
	}
	return ""
}

func startEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*server.Server, error) {
	dir, err := filepath.Abs(cfg.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded.store_dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("queue: embedded.store_dir: %w", err)
	}
	opts := &server.Options{
		ServerName:         "sluice-embedded",
		JetStream:          true,
		StoreDir:           dir,
		JetStreamMaxStore:  int64(cfg.MaxStore),
		MaxPayload:         int32(cfg.MaxPayload),
		DontListen:         cfg.Listen == "",
		NoSigs:             true,
		NoLog:              true,
		JetStreamMaxMemory: 64 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("queue: embedded.listen: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded nats-server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("queue: embedded nats-server did not start within 30s")
	}
	log.Info("embedded JetStream started", "store_dir", dir, "listen", cfg.Listen)
	return srv, nil
}

func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// JetStream returns the JetStream handle, for components built on the queue.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// StreamName returns the log stream's name.
func (q *Queue) StreamName() string { return q.cfg.Stream.Name }

// ClientURL returns the URL NATS clients can use to reach the embedded
// server, or "" when it does not listen.
func (q *Queue) ClientURL() string {
	if q.srv == nil || q.cfg.Embedded.Listen == "" {
		return ""
	}
	return q.srv.ClientURL()
}

// Healthy reports whether the connection to JetStream is up.
func (q *Queue) Healthy() error {
	if q.nc == nil || !q.nc.IsConnected() {
		return errors.New("queue: not connected to nats")
	}
	return nil
}

// Close closes the connection after flushing what it has buffered and stops
// the embedded server. It is safe to call more than once.
func (q *Queue) Close() {
	if q.seen != nil {
		q.seen.Stop()
	}
	if q.nc != nil {
		_ = q.nc.FlushTimeout(5 * time.Second)
		q.nc.Close()
	}
	q.shutdownServer()
}

func (q *Queue) shutdownServer() {
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv.WaitForShutdown()
	}
}

// streamRequestTimeout bounds one attempt of a stream request at start.
const streamRequestTimeout = 10 * time.Second

// createStream creates or updates a stream (attempts).
func (q *Queue) createStream(ctx context.Context, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	var st jetstream.Stream
	err := attempts(ctx, streamRequestTimeout, func(ctx context.Context) (err error) {
		st, err = q.js.CreateOrUpdateStream(ctx, sc)
		return err
	})
	return st, err
}

// attempts runs a JetStream API request with a timeout of its own, again
// while it gets no answer and ctx lasts. A request that reaches a meta
// leader just as it steps down (a cluster starting up, or busy) gets no
// answer at all, and with only ctx's deadline one such request took all
// of it. Asking again is safe: the requests made this way create or update
// to one configuration.
func attempts(ctx context.Context, timeout time.Duration, req func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err := req(actx)
		cancel()
		if err == nil || !noAnswer(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// noAnswer reports whether a JetStream API request failed for want of an
// answer rather than with one.
func noAnswer(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
}
