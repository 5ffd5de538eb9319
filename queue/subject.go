package queue

import "strings"

// Subject returns the NATS subject for a tag: prefix, a dot, then the tag's
// dot-separated parts, each escaped so that it is a valid literal subject
// token.
//
// Escaping: a byte outside [A-Za-z0-9_-] inside a part is written as %XX
// (upper-case hex, so '%' itself becomes %25, '*' %2A, '>' %3E, space %20);
// an empty part (a leading, trailing or doubled dot) is written as a lone
// "%". The escaping is reversible (UnescapeTag) and leaves the usual
// Kubernetes tags as they are, so `logs.kube.var.log.containers.>` works as a
// subject filter.
func Subject(prefix, tag string) string {
	var b strings.Builder
	b.Grow(len(prefix) + 1 + len(tag) + 8)
	b.WriteString(prefix)
	b.WriteByte('.')
	partStart := true
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if c == '.' {
			if partStart {
				b.WriteByte('%')
			}
			b.WriteByte('.')
			partStart = true
			continue
		}
		partStart = false
		if safe(c) {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	if partStart {
		b.WriteByte('%')
	}
	return b.String()
}

func safe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// UnescapeTag reverses Subject for a subject without its prefix and dot.
func UnescapeTag(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0 {
			b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
		}
		// a lone % is an empty part: write nothing
	}
	return b.String()
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
