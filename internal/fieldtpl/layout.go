package fieldtpl

import (
	"fmt"
	"strconv"
	"time"
)

// Layout is a parsed strftime-style time layout. It knows these
// conversions: %Y (year), %y (two-digit year), %m (month), %d (day), %j (day
// of the year), %H (hour), %M (minute), %S (second), %s (Unix seconds) and
// %% (a percent sign); everything else is literal.
type Layout struct {
	raw   string
	parts []layoutPart
	// unit is the finest field the layout shows: an expansion holds for a
	// whole unit of time, so callers may cache it until the next one.
	unit time.Duration
}

type layoutPart struct {
	verb byte // 0 for literal text
	text string
}

// ParseLayout parses a strftime-style layout.
func ParseLayout(s string) (*Layout, error) {
	l := &Layout{raw: s, unit: 24 * time.Hour}
	lit := []byte{}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit = append(lit, s[i])
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("time layout %q: ends with %%", s)
		}
		i++
		v := s[i]
		switch v {
		case '%':
			lit = append(lit, '%')
			continue
		case 'Y', 'y', 'm', 'd', 'j':
		case 'H':
			l.unit = min(l.unit, time.Hour)
		case 'M':
			l.unit = min(l.unit, time.Minute)
		case 'S', 's':
			l.unit = min(l.unit, time.Second)
		default:
			return nil, fmt.Errorf("time layout %q: unknown conversion %%%c (known: %%Y %%y %%m %%d %%j %%H %%M %%S %%s %%%%)", s, v)
		}
		if len(lit) > 0 {
			l.parts = append(l.parts, layoutPart{text: string(lit)})
			lit = lit[:0]
		}
		l.parts = append(l.parts, layoutPart{verb: v})
	}
	if len(lit) > 0 {
		l.parts = append(l.parts, layoutPart{text: string(lit)})
	}
	return l, nil
}

// String returns the layout's text.
func (l *Layout) String() string { return l.raw }

// Append appends t formatted by the layout.
func (l *Layout) Append(dst []byte, t time.Time) []byte {
	for _, p := range l.parts {
		switch p.verb {
		case 0:
			dst = append(dst, p.text...)
		case 'Y':
			dst = appendPadded(dst, t.Year(), 4)
		case 'y':
			dst = appendPadded(dst, t.Year()%100, 2)
		case 'm':
			dst = appendPadded(dst, int(t.Month()), 2)
		case 'd':
			dst = appendPadded(dst, t.Day(), 2)
		case 'j':
			dst = appendPadded(dst, t.YearDay(), 3)
		case 'H':
			dst = appendPadded(dst, t.Hour(), 2)
		case 'M':
			dst = appendPadded(dst, t.Minute(), 2)
		case 'S':
			dst = appendPadded(dst, t.Second(), 2)
		case 's':
			dst = strconv.AppendInt(dst, t.Unix(), 10)
		}
	}
	return dst
}

func appendPadded(dst []byte, v, width int) []byte {
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	var buf [20]byte
	b := strconv.AppendInt(buf[:0], int64(v), 10)
	for i := len(b); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, b...)
}

// Cache formats times by a layout in a time zone and reuses the last
// expansion while times stay in the same unit of the layout (day, hour...).
// It is not safe for concurrent use; keep one per goroutine.
type Cache struct {
	l      *Layout
	loc    *time.Location
	lo, hi int64 // the cached expansion holds for Unix seconds in [lo, hi)
	text   []byte
}

// NewCache returns a formatting cache for the layout in loc.
func NewCache(l *Layout, loc *time.Location) *Cache {
	return &Cache{l: l, loc: loc, lo: 1, hi: 0}
}

// Format returns the expansion for the Unix time sec; the bytes are valid
// until the next call.
func (c *Cache) Format(sec int64) []byte {
	if sec >= c.lo && sec < c.hi {
		return c.text
	}
	t := time.Unix(sec, 0).In(c.loc)
	c.text = c.l.Append(c.text[:0], t)
	var start time.Time
	switch c.l.unit {
	case 24 * time.Hour:
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, c.loc)
		c.lo, c.hi = start.Unix(), start.AddDate(0, 0, 1).Unix()
	default:
		// Hours, minutes and seconds: zone offsets are whole minutes
		// almost everywhere, and a unit that crosses an offset change is
		// only recomputed.
		u := int64(c.l.unit / time.Second)
		c.lo = sec - ((sec%u)+u)%u
		c.hi = c.lo + u
		if c.l.unit == time.Hour {
			_, off := t.Zone()
			if off%3600 != 0 {
				c.lo, c.hi = sec, sec+1
			}
		}
	}
	return c.text
}
