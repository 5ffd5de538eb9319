// Package fieldtpl expands names built from a record: an Elasticsearch
// index, a CloudWatch log group or stream, an object key.
//
// # Field templates
//
// A template is text with references in ${...}:
//
//	${kubernetes.namespace_name}   a field of the record, by dotted path
//	${tag}                         the chunk's tag
//	${tag[1]}                      one dot-separated part of the tag, from 0
//
// A field must hold a string, a number or a boolean; a missing field, a map,
// an array or nil makes the expansion fail, and the caller uses its fallback.
// "$$" is a literal "$". A path cannot name a key that itself contains a dot.
//
// # Time layouts
//
// Layout parses strftime-style time layouts (%Y.%m.%d) for names that carry
// a date, such as Logstash-style indices.
package fieldtpl

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicelog/sluice/internal/msgp"
)

type partKind uint8

const (
	literal partKind = iota
	field
	wholeTag
	tagPart
)

type part struct {
	kind partKind
	text string   // literal
	path []string // field
	n    int      // tagPart
}

// Template is a parsed field template; it is safe for concurrent use.
type Template struct {
	raw   string
	parts []part
}

// Parse parses a field template.
func Parse(s string) (*Template, error) {
	t := &Template{raw: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{kind: literal, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			lit.WriteByte(c)
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '$':
			lit.WriteByte('$')
			i++
			continue
		case i+1 >= len(s) || s[i+1] != '{':
			lit.WriteByte('$')
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return nil, fmt.Errorf("template %q: unterminated ${ at offset %d", s, i)
		}
		ref := strings.TrimSpace(s[i+2 : i+2+end])
		p, err := parseRef(ref)
		if err != nil {
			return nil, fmt.Errorf("template %q: %w", s, err)
		}
		flush()
		t.parts = append(t.parts, p)
		i += 2 + end
	}
	flush()
	return t, nil
}

func parseRef(ref string) (part, error) {
	switch {
	case ref == "":
		return part{}, errors.New("empty ${}")
	case ref == "tag":
		return part{kind: wholeTag}, nil
	case strings.HasPrefix(ref, "tag[") && strings.HasSuffix(ref, "]"):
		n, err := strconv.Atoi(ref[4 : len(ref)-1])
		if err != nil || n < 0 {
			return part{}, fmt.Errorf("${%s}: the tag part must be a number from 0", ref)
		}
		return part{kind: tagPart, n: n}, nil
	}
	path := strings.Split(ref, ".")
	for _, p := range path {
		if p == "" {
			return part{}, fmt.Errorf("${%s}: empty part in field path", ref)
		}
	}
	return part{kind: field, path: path}, nil
}

// MustParse is Parse for templates known to be valid; it panics otherwise.
func MustParse(s string) *Template {
	t, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template's text.
func (t *Template) String() string { return t.raw }

// Static returns the expansion of a template without references.
func (t *Template) Static() (string, bool) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.kind != literal {
			return "", false
		}
		b.WriteString(p.text)
	}
	return b.String(), true
}

// UsesRecord reports whether the template refers to record fields.
func (t *Template) UsesRecord() bool {
	for _, p := range t.parts {
		if p.kind == field {
			return true
		}
	}
	return false
}

// Append appends the expansion for a record (msgpack map) with its tag. ok
// is false, and dst returned unchanged, when a reference cannot be filled.
func (t *Template) Append(dst []byte, tag string, rec []byte) (_ []byte, ok bool) {
	start := len(dst)
	for _, p := range t.parts {
		switch p.kind {
		case literal:
			dst = append(dst, p.text...)
		case wholeTag:
			dst = append(dst, tag...)
		case tagPart:
			s, found := nthPart(tag, p.n)
			if !found {
				return dst[:start], false
			}
			dst = append(dst, s...)
		case field:
			var found bool
			if dst, found = AppendField(dst, rec, p.path); !found {
				return dst[:start], false
			}
		}
	}
	return dst, true
}

func nthPart(tag string, n int) (string, bool) {
	for i := 0; ; i++ {
		dot := strings.IndexByte(tag, '.')
		if i == n {
			if dot >= 0 {
				tag = tag[:dot]
			}
			return tag, tag != ""
		}
		if dot < 0 {
			return "", false
		}
		tag = tag[dot+1:]
	}
}

// Lookup returns the offset of the value at path in the msgpack map rec.
func Lookup(rec []byte, path []string) (int, bool) {
	off := 0
	for _, key := range path {
		n, next, err := msgp.ReadMapHeader(rec, off)
		if err != nil {
			return 0, false
		}
		off = next
		found := false
		for i := 0; i < n && !found; i++ {
			k, v, err := msgp.ReadBytes(rec, off)
			if err != nil { // not a string key: skip it
				if v, err = msgp.Skip(rec, off); err != nil {
					return 0, false
				}
				k = nil
			}
			if string(k) == key {
				off, found = v, true
			} else if off, err = msgp.Skip(rec, v); err != nil {
				return 0, false
			}
		}
		if !found {
			return 0, false
		}
	}
	return off, true
}

// AppendField appends the scalar at path in the msgpack map rec as text.
func AppendField(dst, rec []byte, path []string) ([]byte, bool) {
	off, ok := Lookup(rec, path)
	if !ok {
		return dst, false
	}
	return AppendScalar(dst, rec, off)
}

// AppendScalar appends the msgpack string, number or boolean at off as text.
func AppendScalar(dst, rec []byte, off int) ([]byte, bool) {
	t, err := msgp.Peek(rec, off)
	if err != nil {
		return dst, false
	}
	switch t {
	case msgp.TypeStr, msgp.TypeBin:
		v, _, err := msgp.ReadBytes(rec, off)
		return append(dst, v...), err == nil
	case msgp.TypeUint:
		u, _, err := msgp.ReadUint64(rec, off)
		return strconv.AppendUint(dst, u, 10), err == nil
	case msgp.TypeInt:
		v, _, err := msgp.ReadInt(rec, off)
		return strconv.AppendInt(dst, v, 10), err == nil
	case msgp.TypeFloat:
		f, _, err := msgp.ReadFloat(rec, off)
		return strconv.AppendFloat(dst, f, 'g', -1, 64), err == nil
	case msgp.TypeBool:
		v, _, err := msgp.ReadBool(rec, off)
		return strconv.AppendBool(dst, v), err == nil
	}
	return dst, false
}
