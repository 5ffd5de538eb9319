package parser

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicelog/sluice/internal/msgp"
)

// valueKind is the type a field is converted to.
type valueKind uint8

const (
	kindString valueKind = iota
	kindInteger
	kindFloat
	kindBool
	kindHex
)

var kindNames = map[string]valueKind{
	"string":  kindString,
	"integer": kindInteger,
	"float":   kindFloat,
	"bool":    kindBool,
	"hex":     kindHex,
}

type typeRule struct {
	field string
	kind  valueKind
}

// parseTypes parses "code:integer size:integer ratio:float".
func parseTypes(s string) ([]typeRule, error) {
	var rules []typeRule
	for _, f := range strings.Fields(s) {
		name, typ, ok := strings.Cut(f, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("%q is not field:type", f)
		}
		kind, ok := kindNames[typ]
		if !ok {
			return nil, fmt.Errorf("unknown type %q for field %q (want string, integer, float, bool or hex)", typ, name)
		}
		rules = append(rules, typeRule{field: name, kind: kind})
	}
	return rules, nil
}

// kindOf returns the type configured for a field; the last rule wins.
func (p *Parser) kindOf(name []byte) valueKind {
	kind := kindString
	for _, r := range p.types {
		if r.field == string(name) {
			kind = r.kind
		}
	}
	return kind
}

// convert appends v converted to kind, or reports that it does not convert.
func convert(dst, v []byte, kind valueKind) ([]byte, bool) {
	switch kind {
	case kindInteger:
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return msgp.AppendInt(dst, n), true
		}
	case kindFloat:
		if f, err := strconv.ParseFloat(string(v), 64); err == nil {
			return msgp.AppendFloat(dst, f), true
		}
	case kindBool:
		switch {
		case equalFold(v, "true"):
			return msgp.AppendBool(dst, true), true
		case equalFold(v, "false"):
			return msgp.AppendBool(dst, false), true
		}
	case kindHex:
		h := v
		if len(h) > 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X') {
			h = h[2:]
		}
		if n, err := strconv.ParseUint(string(h), 16, 64); err == nil {
			return msgp.AppendUint(dst, n), true
		}
	}
	return dst, false
}

// appendValue appends v converted to kind, or as a str when it does not
// convert.
func appendValue(dst, v []byte, kind valueKind) []byte {
	if kind != kindString {
		if out, ok := convert(dst, v, kind); ok {
			return out
		}
	}
	return msgp.AppendStrBytes(dst, v)
}
