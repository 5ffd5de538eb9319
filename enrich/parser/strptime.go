package parser

import (
	"fmt"
	"time"
)

// A timeFormat is a compiled strptime-style format, the subset Fluent Bit's
// parsers use. Directives:
//
//	%Y year  %y two-digit year (69-99 → 19xx)  %m month  %d %e day  %j day of year
//	%H %k hour  %I %l hour (12h) with %p  %M minute  %S second
//	%L fraction of a second (any number of digits)  %s seconds since the epoch
//	%z +hh, +hhmm, +hh:mm or Z  %Z UTC, GMT or Z
//	%b %B %h month name  %a %A weekday name (checked, ignored)
//	%T = %H:%M:%S  %F = %Y-%m-%d  %D = %m/%d/%y  %R = %H:%M  %r = %I:%M:%S %p
//	%n %t and spaces match any run of white space  %% a percent sign
//
// Numeric fields skip leading spaces. A literal '.' or ',' just before %L
// is optional in the input (no fraction means zero). Text after the end of
// the format is ignored, as Fluent Bit does (the docker parser leaves the
// trailing Z of Docker's timestamps). A format without a year takes the
// year that puts the time closest to now, so that a December line read in
// January lands in the previous year. Without %z, %Z or %s times are UTC.
type timeFormat struct {
	ops     []timeOp
	hasYear bool
	// rfc3339 accepts 't' and ' ' for the 'T' literal, an absent offset,
	// and requires the whole input to be consumed.
	rfc3339 bool
}

type timeOp struct {
	verb byte // 0 for a literal, ' ' for white space, else the directive letter
	lit  byte
}

// rfc3339Format is used when a parser has a time key but no time format.
var rfc3339Format = func() *timeFormat {
	tf, _ := compileTimeFormat("%Y-%m-%dT%H:%M:%S.%L%z") // a constant; tested
	tf.rfc3339 = true
	return tf
}()

func compileTimeFormat(f string) (*timeFormat, error) {
	tf := &timeFormat{}
	if err := tf.compile(f, 0); err != nil {
		return nil, err
	}
	if len(tf.ops) == 0 {
		return nil, fmt.Errorf("empty format")
	}
	return tf, nil
}

func (tf *timeFormat) compile(f string, level int) error {
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c == ' ' || c == '\t' || c == '\n' {
			tf.ops = append(tf.ops, timeOp{verb: ' '})
			continue
		}
		if c != '%' {
			tf.ops = append(tf.ops, timeOp{lit: c})
			continue
		}
		i++
		if i == len(f) {
			return fmt.Errorf("%q ends with a lone %%", f)
		}
		v := f[i]
		if exp, ok := compositeVerbs[v]; ok && level == 0 {
			if err := tf.compile(exp, 1); err != nil {
				return err
			}
			continue
		}
		switch v {
		case 'Y', 'y', 's':
			tf.hasYear = true
		case 'm', 'd', 'e', 'j', 'H', 'k', 'I', 'l', 'M', 'S', 'L', 'z', 'Z', 'b', 'a', 'p':
		case 'B', 'h':
			v = 'b'
		case 'A':
			v = 'a'
		case 'n', 't':
			tf.ops = append(tf.ops, timeOp{verb: ' '})
			continue
		case '%':
			tf.ops = append(tf.ops, timeOp{lit: '%'})
			continue
		default:
			return fmt.Errorf("unsupported directive %%%c in %q", v, f)
		}
		tf.ops = append(tf.ops, timeOp{verb: v})
	}
	return nil
}

var compositeVerbs = map[byte]string{
	'T': "%H:%M:%S",
	'F': "%Y-%m-%d",
	'D': "%m/%d/%y",
	'R': "%H:%M",
	'r': "%I:%M:%S %p",
}

var monthNames = [...]string{"january", "february", "march", "april", "may", "june", "july",
	"august", "september", "october", "november", "december"}

var dayNames = [...]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// parse parses s; now is called only for formats without a year.
func (tf *timeFormat) parse(s []byte, now func() time.Time) (time.Time, bool) {
	var (
		year, yday, hour, minute, sec, nsec, offset int
		month, day                                  = -1, -1
		hour12, pm, hasPM, hasEpoch                 bool
		epoch                                       int64
	)
	p := 0
	ops := tf.ops
	for i := 0; i < len(ops); i++ {
		op := ops[i]
		switch op.verb {
		case 0:
			if p < len(s) && (s[p] == op.lit || tf.rfc3339 && op.lit == 'T' && (s[p] == 't' || s[p] == ' ')) {
				p++
				continue
			}
			if (op.lit == '.' || op.lit == ',') && i+1 < len(ops) && ops[i+1].verb == 'L' {
				i++ // no fraction
				continue
			}
			return time.Time{}, false
		case ' ':
			for p < len(s) && isSpace(s[p]) {
				p++
			}
			continue
		case 'L':
			q := p
			scale := 100000000
			for p < len(s) && s[p] >= '0' && s[p] <= '9' {
				nsec += int(s[p]-'0') * scale
				scale /= 10
				p++
			}
			if p == q {
				return time.Time{}, false
			}
			continue
		case 'z':
			if tf.rfc3339 && p == len(s) {
				continue
			}
			var ok bool
			if offset, p, ok = parseOffset(s, p); !ok {
				return time.Time{}, false
			}
			continue
		case 'Z':
			q := p
			for p < len(s) && (s[p] >= 'A' && s[p] <= 'Z' || s[p] >= 'a' && s[p] <= 'z') {
				p++
			}
			switch string(s[q:p]) {
			case "UTC", "GMT", "UT", "Z", "utc", "gmt", "z":
				offset = 0
			default:
				return time.Time{}, false
			}
			continue
		case 'b', 'a', 'p':
			q := p
			for p < len(s) && (s[p] >= 'A' && s[p] <= 'Z' || s[p] >= 'a' && s[p] <= 'z') {
				p++
			}
			word := s[q:p]
			switch op.verb {
			case 'b':
				if month = nameIndex(word, monthNames[:]) + 1; month == 0 {
					return time.Time{}, false
				}
			case 'a':
				if nameIndex(word, dayNames[:]) < 0 {
					return time.Time{}, false
				}
			case 'p':
				switch {
				case equalFold(word, "am"):
					pm = false
				case equalFold(word, "pm"):
					pm = true
				default:
					return time.Time{}, false
				}
				hasPM = true
			}
			continue
		case 's':
			neg := false
			if p < len(s) && s[p] == '-' {
				neg = true
				p++
			}
			var v int
			var ok bool
			if v, p, ok = readNum(s, p, 19); !ok {
				return time.Time{}, false
			}
			epoch = int64(v)
			if neg {
				epoch = -epoch
			}
			hasEpoch = true
			continue
		}
		// Numeric fields.
		for p < len(s) && s[p] == ' ' {
			p++
		}
		width := 2
		switch op.verb {
		case 'Y':
			width = 4
		case 'j':
			width = 3
		}
		v, np, ok := readNum(s, p, width)
		if !ok {
			return time.Time{}, false
		}
		p = np
		switch op.verb {
		case 'Y':
			year = v
		case 'y':
			if v < 69 {
				year = 2000 + v
			} else {
				year = 1900 + v
			}
		case 'm':
			month = v
		case 'd', 'e':
			day = v
		case 'j':
			yday = v
		case 'H', 'k':
			hour = v
		case 'I', 'l':
			hour, hour12 = v, true
		case 'M':
			minute = v
		case 'S':
			sec = v
		}
	}
	if tf.rfc3339 && p != len(s) {
		return time.Time{}, false
	}
	if hasEpoch {
		return time.Unix(epoch, int64(nsec)).UTC(), true
	}
	if hour12 {
		if hour < 1 || hour > 12 {
			return time.Time{}, false
		}
		hour %= 12
	}
	if hasPM && pm {
		if !hour12 && hour >= 12 {
			return time.Time{}, false
		}
		hour += 12
	}
	if hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	if tf.hasYear {
		return buildTime(year, month, day, yday, hour, minute, sec, nsec, offset)
	}
	// No year: take the one closest to now.
	n := now().UTC()
	var best time.Time
	found := false
	for y := n.Year() - 1; y <= n.Year()+1; y++ {
		t, ok := buildTime(y, month, day, yday, hour, minute, sec, nsec, offset)
		if !ok {
			continue
		}
		if !found || absDur(t.Sub(n)) < absDur(best.Sub(n)) {
			best, found = t, true
		}
	}
	return best, found
}

func buildTime(year, month, day, yday, hour, minute, sec, nsec, offset int) (time.Time, bool) {
	if month < 0 && day < 0 && yday > 0 {
		if yday > 366 {
			return time.Time{}, false
		}
		t := time.Date(year, 1, yday, hour, minute, sec, nsec, time.UTC)
		if t.Year() != year {
			return time.Time{}, false
		}
		return t.Add(-time.Duration(offset) * time.Second), true
	}
	if month < 0 {
		month = 1
	}
	if day < 0 {
		day = 1
	}
	if month < 1 || month > 12 || day < 1 || day > 31 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day && sec != 60 {
		return time.Time{}, false // 31 April and the like
	}
	return t.Add(-time.Duration(offset) * time.Second), true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// readNum reads 1 to width decimal digits.
func readNum(s []byte, p, width int) (int, int, bool) {
	v, q := 0, p
	for p < len(s) && p-q < width && s[p] >= '0' && s[p] <= '9' {
		v = v*10 + int(s[p]-'0')
		p++
	}
	return v, p, p > q
}

// parseOffset reads Z, +hh, +hhmm or +hh:mm and returns seconds east of UTC.
func parseOffset(s []byte, p int) (int, int, bool) {
	if p >= len(s) {
		return 0, p, false
	}
	if s[p] == 'Z' || s[p] == 'z' {
		return 0, p + 1, true
	}
	sign := 1
	switch s[p] {
	case '+':
	case '-':
		sign = -1
	default:
		return 0, p, false
	}
	p++
	digits := func(p int) (int, bool) {
		if p+2 > len(s) || s[p] < '0' || s[p] > '9' || s[p+1] < '0' || s[p+1] > '9' {
			return 0, false
		}
		return int(s[p]-'0')*10 + int(s[p+1]-'0'), true
	}
	h, ok := digits(p)
	if !ok || h > 23 {
		return 0, p, false
	}
	p += 2
	m := 0
	if p < len(s) && s[p] == ':' {
		if m, ok = digits(p + 1); !ok {
			return 0, p, false
		}
		p += 3
	} else if mm, ok := digits(p); ok {
		m = mm
		p += 2
	}
	if m > 59 {
		return 0, p, false
	}
	return sign * (h*3600 + m*60), p, true
}

// nameIndex matches word against names, in full or by its first three
// letters, case-insensitively.
func nameIndex(word []byte, names []string) int {
	for i, n := range names {
		if len(word) == 3 && equalFold(word, n[:3]) || len(word) == len(n) && equalFold(word, n) {
			return i
		}
	}
	return -1
}

// equalFold compares ASCII letters case-insensitively with lower-case s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if b[i]|0x20 != s[i] {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
