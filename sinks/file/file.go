// Package file is a sink that writes records to local files as
// newline-delimited JSON, one line per entry.
//
// # Lines
//
// Each line is a JSON object (see package jsonl for the conversion). Before
// the record's own fields, in their order, the sink adds two keys: time_key
// (default "@timestamp") with the event time as RFC 3339 UTC with nine
// fraction digits, e.g. "2026-11-22T07:34:52.000000001Z", and tag_key
// (default "tag") with the chunk's tag. A key set to "-" is left out. When a
// record already has a key of the same name, the record's value wins and
// the sink does not add its own, so no line repeats a key.
//
// # Files
//
// Files live in the directory path and are named
//
//	<prefix>-<name>-YYYYMMDD-HH-<seq>.ndjson
//
// where name is the sink's name, YYYYMMDD-HH the hour in UTC of the wall
// clock when a batch is written (not the event time) and seq a six-digit
// sequence number. A file is opened on the first write, so an idle sink
// leaves no empty file. The sink moves on to a new file when the hour
// changes and when the next batch would take the file above max_file_bytes;
// a batch is never split, so a file holds whole lines only and a single batch
// larger than the limit makes one larger file. A new file takes the next
// sequence number not yet used for its hour in the directory, and files are
// created exclusively, so a restarted sink never overwrites earlier files.
//
// # Durability
//
// Write returns nil once the whole batch has been handed to the operating
// system in one write, and, with sync, fsynced. If the write fails, the sink
// truncates the file back to its last whole batch and continues in a new
// file, so a retried batch does not follow a torn line.
//
// # Page cache
//
// Unless keep_page_cache is set, the sink asks the kernel to write each
// 8 MiB of a file back as soon as it is written and drops those pages from
// the page cache two windows later, on a goroutine of its own (Linux:
// sync_file_range and posix_fadvise). Writes then reuse warm pages, which
// costs a fraction of filling fresh ones, and the sink does not fill a
// container's memory with cache that nothing reads. Keep the cache when
// something reads the files right after they are written.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicelog/sluice/internal/jsonl"
	"github.com/sluicelog/sluice/internal/units"
	"github.com/sluicelog/sluice/sinks"
)

// Defaults for Config.
const (
	DefaultPath         = "./data/out"
	DefaultPrefix       = "sluice"
	DefaultMaxFileBytes = 128 << 20
	// DefaultBatchRecords and DefaultBatchBytes are the file sink's batch
	// limits unless configured: smaller than other sinks' (10,000 and 8
	// MiB), because a local write gains nothing from larger ones while every
	// batch's entries, their lines and the messages fetched for the next
	// batches are held in memory. Measured with 4 connections pushing 2 M
	// records (docs/PERFORMANCE.md): peak RSS 153-161 MB with 10,000 and 8
	// MiB, 124-126 MB with these, at the same CPU per record.
	DefaultBatchRecords = 1000
	DefaultBatchBytes   = 1 << 20
)

// NoKey as time_key or tag_key leaves the key out of the lines.
const NoKey = "-"

// maxKeptBuffer bounds the line buffer kept between batches; a batch that
// grew it beyond this leaves it to the garbage collector.
const maxKeptBuffer = 8 << 20

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("file sink: closed")

// ErrCorrupt means a record could not be converted. Ingest validates
// records, so the record is damaged; retrying will not help: it is reported
// as a permanent failure of that record.
var ErrCorrupt = errors.New("file sink: corrupt entry")

// Config configures a file sink.
type Config struct {
	// Path is the directory of the files, created if missing.
	Path string `yaml:"path"`
	// Prefix starts each file name.
	Prefix string `yaml:"prefix"`
	// MaxFileBytes is the size above which the sink moves to a new file.
	MaxFileBytes units.ByteSize `yaml:"max_file_bytes"`
	// TimeKey names the event time in each line; "-" leaves it out.
	TimeKey string `yaml:"time_key"`
	// TagKey names the tag in each line; "-" leaves it out.
	TagKey string `yaml:"tag_key"`
	// Sync fsyncs the file after every batch.
	Sync bool `yaml:"sync"`
	// KeepPageCache leaves written pages in the page cache instead of
	// dropping them behind the writes.
	KeepPageCache bool `yaml:"keep_page_cache"`
}

// SetDefaults fills the zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = DefaultMaxFileBytes
	}
	if c.TimeKey == "" {
		c.TimeKey = jsonl.DefaultTimeKey
	}
	if c.TagKey == "" {
		c.TagKey = jsonl.DefaultTagKey
	}
}

// Validate reports the first field that is not usable, as "field: problem"
// with the field's YAML name; the caller prefixes the path of the config.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("path: must not be empty")
	case c.Prefix == "":
		return errors.New("prefix: must not be empty")
	case !fileNamePart(c.Prefix):
		return fmt.Errorf("prefix: %q must not contain a path separator or NUL", c.Prefix)
	case c.MaxFileBytes <= 0:
		return errors.New("max_file_bytes: must be positive")
	case c.TimeKey == "":
		return errors.New(`time_key: must not be empty (use "-" to leave the key out)`)
	case c.TagKey == "":
		return errors.New(`tag_key: must not be empty (use "-" to leave the key out)`)
	case c.TagKey == c.TimeKey && c.TagKey != NoKey:
		return fmt.Errorf("tag_key: must differ from time_key %q", c.TimeKey)
	}
	return nil
}

// fileNamePart reports whether s can be part of a file name.
func fileNamePart(s string) bool {
	return !strings.ContainsAny(s, "/\\\x00") && s != "." && s != ".."
}

// Sink writes batches to files. It serves one caller at a time: a mutex
// serialises Write and Close, so concurrent calls are safe but not parallel.
type Sink struct {
	cfg  Config
	name string
	log  *slog.Logger
	now  func() time.Time
	enc  *jsonl.Encoder // guarded by mu

	mu     sync.Mutex
	closed bool
	buf    []byte
	// The open file, nil before the first write and after a failed one.
	f    *os.File
	path string
	hour time.Time // hour of the file, UTC
	size int64     // bytes of whole batches in the file
	pc   pageCache
}

var _ sinks.Sink = (*Sink)(nil)

// New returns a file sink named name (a part of each file name) and creates
// its directory. Zero fields of cfg take their defaults. now is the wall
// clock that names files; nil means time.Now. log may be nil.
func New(cfg Config, name string, log *slog.Logger, now func() time.Time) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if name == "" || !fileNamePart(name) {
		return nil, fmt.Errorf("file sink: name %q must be non-empty and must not contain a path separator or NUL", name)
	}
	if err := os.MkdirAll(cfg.Path, 0o755); err != nil {
		return nil, fmt.Errorf("file sink %s: %w", name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	opts := jsonl.Options{TimeKey: cfg.TimeKey, TagKey: cfg.TagKey}
	if opts.TimeKey == NoKey {
		opts.TimeKey = ""
	}
	if opts.TagKey == NoKey {
		opts.TagKey = ""
	}
	return &Sink{cfg: cfg, name: name, log: log.With("sink", name), now: now, enc: jsonl.NewEncoder(opts)}, nil
}

// Write appends one line per entry of the batch to the current file. It
// blocks until the whole batch has been written to the operating system in
// one write (and fsynced, with sync), then returns nil. On error nothing of
// the batch counts as written and the caller may retry it whole; errors
// wrapping ErrCorrupt will fail again. ctx is checked before the write
// starts; the write itself is not interrupted. The sink does not keep the
// chunks.
func (s *Sink) Write(ctx context.Context, batch []sinks.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	buf, bad := s.encode(s.buf[:0], batch)
	if cap(buf) > maxKeptBuffer {
		s.buf = nil
	} else {
		s.buf = buf[:0]
	}
	if len(buf) > 0 {
		if err := s.writeFile(buf); err != nil {
			return err
		}
	}
	if len(bad) > 0 {
		return &sinks.PartialError{Failed: bad}
	}
	return nil
}

// writeFile writes buf whole to the current file, rolling first if needed.
func (s *Sink) writeFile(buf []byte) error {
	hour := s.now().UTC().Truncate(time.Hour)
	if s.f != nil && (!hour.Equal(s.hour) || s.size > 0 && s.size+int64(len(buf)) > int64(s.cfg.MaxFileBytes)) {
		s.closeFile()
	}
	if s.f == nil {
		if err := s.openFile(hour); err != nil {
			return err
		}
	}
	_, err := s.f.Write(buf)
	if err == nil && s.cfg.Sync {
		err = s.f.Sync()
	}
	if err == nil && !s.cfg.KeepPageCache {
		if s.cfg.Sync {
			s.pc.synced(s.f)
		} else {
			s.pc.wrote(s.f, s.size+int64(len(buf)))
		}
	}
	if err != nil {
		// Cut off what part of the batch got in, and leave the file.
		if terr := s.f.Truncate(s.size); terr != nil {
			s.log.Error("file sink could not truncate a failed write", "path", s.path, "err", terr)
		}
		s.closeFile()
		return fmt.Errorf("file sink %s: %w", s.name, err)
	}
	s.size += int64(len(buf))
	return nil
}

// encode appends the lines of the batch to buf. A record that cannot be
// converted (a damaged record: ingest validated it) is left out and reported
// as a permanent failure by its index.
func (s *Sink) encode(buf []byte, batch []sinks.Record) ([]byte, map[int]error) {
	// JSON takes a little more room than msgpack, and each line adds the
	// time and the tag.
	want := 0
	for i := range batch {
		want += len(batch[i].Record)*5/4 + len(batch[i].Tag) + 64
	}
	buf = slices.Grow(buf, want)
	var bad map[int]error
	for i := range batch {
		r := &batch[i]
		var err error
		if buf, err = s.enc.AppendLine(buf, r.Tag, r.Entry); err != nil {
			if bad == nil {
				bad = make(map[int]error)
			}
			bad[i] = sinks.Permanent(fmt.Errorf("%w: sink %s, record %s (tag %q): %w", ErrCorrupt, s.name, r.ID(), r.Tag, err))
		}
	}
	return buf, bad
}

// openFile creates the next file of the hour.
func (s *Sink) openFile(hour time.Time) error {
	base := s.cfg.Prefix + "-" + s.name + "-" + hour.Format("20060102-15") + "-"
	seq, err := nextSeq(s.cfg.Path, base)
	if err != nil {
		return fmt.Errorf("file sink %s: %w", s.name, err)
	}
	// Another process may take a name between the scan and the create.
	for tries := 0; ; tries++ {
		path := filepath.Join(s.cfg.Path, fmt.Sprintf("%s%06d.ndjson", base, seq))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && tries < 100 {
			seq++
			continue
		}
		if err != nil {
			return fmt.Errorf("file sink %s: %w", s.name, err)
		}
		if s.cfg.Sync {
			if err := syncDir(s.cfg.Path); err != nil {
				f.Close()
				return fmt.Errorf("file sink %s: %w", s.name, err)
			}
		}
		s.f, s.path, s.hour, s.size = f, path, hour, 0
		s.log.Info("file sink opened a file", "path", path)
		return nil
	}
}

// nextSeq returns one more than the highest sequence number of the files in
// dir named base, digits, ".ndjson"; 0 if there are none.
func nextSeq(dir, base string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	next := 0
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), base)
		if !ok {
			continue
		}
		digits, ok := strings.CutSuffix(rest, ".ndjson")
		if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
			continue
		}
		if n, err := strconv.Atoi(digits); err == nil && n >= next {
			next = n + 1
		}
	}
	return next, nil
}

// syncDir fsyncs a directory so that a file created in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// closeFile fsyncs and closes the open file. The batches in it were
// reported written already, so errors are logged and returned only for
// Close.
func (s *Sink) closeFile() error {
	if s.f == nil {
		return nil
	}
	s.pc.settle() // its calls on the file hold it open
	err := s.f.Sync()
	if err == nil && !s.cfg.KeepPageCache {
		s.pc.synced(s.f)
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.log.Error("file sink could not close a file", "path", s.path, "err", err)
		err = fmt.Errorf("file sink %s: %w", s.name, err)
	}
	s.f = nil
	return err
}

// Close fsyncs and closes the current file. It is safe to call more than
// once; later calls return nil. ctx is not used: closing a file does not
// wait on anything but the disk.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.buf = nil
	return s.closeFile()
}
