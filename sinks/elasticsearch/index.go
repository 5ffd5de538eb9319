package elasticsearch

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/sluicelog/sluice/internal/fieldtpl"
	"github.com/sluicelog/sluice/sinks"
)

// indexNamer names the index of each record.
type indexNamer struct {
	static   []byte             // the whole name, when it depends on nothing
	tpl      *fieldtpl.Template // otherwise the name, or the logstash prefix
	fallback []byte             // when a field of tpl is missing
	layout   *fieldtpl.Layout   // logstash: the date part
	loc      *time.Location
}

func newIndexNamer(cfg Config) (indexNamer, error) {
	var n indexNamer
	src, fallback := cfg.Index, DefaultIndex
	if cfg.LogstashFormat {
		src, fallback = cfg.LogstashPrefix, DefaultLogstashPrefix
		var err error
		if n.layout, err = fieldtpl.ParseLayout(cfg.LogstashDateFormat); err != nil {
			return n, fmt.Errorf("logstash_date_format: %w", err)
		}
		if n.loc, err = time.LoadLocation(cfg.TimeZone); err != nil {
			return n, fmt.Errorf("time_zone: %w", err)
		}
	}
	if cfg.IndexFallback != "" {
		fallback = cfg.IndexFallback
	}
	n.fallback = []byte(fallback)
	tpl, err := fieldtpl.Parse(src)
	if err != nil {
		return n, err
	}
	if s, ok := tpl.Static(); ok && !cfg.LogstashFormat {
		n.static = []byte(s)
	} else {
		n.tpl = tpl
	}
	return n, nil
}

// namerCache is one goroutine's cache of the date part.
type namerCache struct{ dates *fieldtpl.Cache }

func (n *indexNamer) cache() *namerCache {
	if n.layout == nil {
		return &namerCache{}
	}
	return &namerCache{dates: fieldtpl.NewCache(n.layout, n.loc)}
}

// append appends the index of rec. The name is safe inside a JSON string.
func (n *indexNamer) append(dst []byte, rec *sinks.Record, c *namerCache) []byte {
	if n.static != nil {
		return append(dst, n.static...)
	}
	start := len(dst)
	dst, ok := n.tpl.Append(dst, rec.Tag, rec.Record)
	if ok {
		dst = sanitizeIndex(dst, start)
	}
	if !ok || len(dst) == start {
		dst = append(dst[:start], n.fallback...)
	}
	if c.dates != nil {
		dst = append(dst, '-')
		dst = append(dst, c.dates.Format(rec.Sec)...)
	}
	return dst
}

// sanitizeIndex makes dst[start:] a valid index name the way users expect
// from names built of namespaces and tags: lowercase, with each character
// Elasticsearch refuses (\ / * ? " < > | space , # :, control characters)
// replaced by "_", without leading - _ +, at most 255 bytes. Invalid UTF-8
// bytes become "_" too.
func sanitizeIndex(dst []byte, start int) []byte {
	name := dst[start:]
	valid := utf8.Valid(name)
	for i, c := range name {
		switch {
		case c >= 'A' && c <= 'Z':
			name[i] = c + 'a' - 'A'
		case c < 0x20 || c == 0x7f || (c >= 0x80 && !valid):
			name[i] = '_'
		case c == '\\' || c == '/' || c == '*' || c == '?' || c == '"' || c == '<' || c == '>' ||
			c == '|' || c == ' ' || c == ',' || c == '#' || c == ':':
			name[i] = '_'
		}
	}
	skip := 0
	for skip < len(name) && (name[skip] == '-' || name[skip] == '_' || name[skip] == '+') {
		skip++
	}
	if skip > 0 {
		n := copy(name, name[skip:])
		dst = dst[:start+n]
		name = dst[start:]
	}
	if len(name) > 255 {
		cut := 255
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		dst = dst[:start+cut]
	}
	if s := string(dst[start:]); s == "." || s == ".." {
		dst = dst[:start]
	}
	return dst
}
