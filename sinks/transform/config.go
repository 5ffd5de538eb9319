package transform

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Step is one transform step: exactly one operation, and an optional
// condition (an expr expression, as in routing) that must be true for the
// step to apply.
type Step struct {
	// Set gives fields a value, replacing what is there; Add only where the
	// field is missing. Values are literals, text with ${...} field
	// template references, or {expr: "..."} computed per record.
	Set Fields `yaml:"set"`
	Add Fields `yaml:"add"`
	// Rename and Copy move or copy fields (from: to); "a.*": "b.*" does it
	// for every key of map a, "a.*": "*" to the top level.
	Rename Pairs `yaml:"rename"`
	Copy   Pairs `yaml:"copy"`
	// Remove drops fields; "a.*" empties map a.
	Remove []string `yaml:"remove"`
	// Keep drops every field but these (and the maps on their way).
	Keep []string `yaml:"keep"`
	// Lift moves the keys of a nested map to the top level.
	Lift *Lift `yaml:"lift"`
	// Nest moves top-level fields under one key.
	Nest *Nest `yaml:"nest"`
	// Drop drops the record when Condition is true.
	Drop bool `yaml:"drop"`
	// Redact replaces secrets in strings.
	Redact *Redact `yaml:"redact"`
	// Condition limits the step to the records for which it is true.
	Condition string `yaml:"condition"`
}

// Lift is Fluent Bit's nest filter, operation lift.
type Lift struct {
	// Field is the map to lift (a dotted path).
	Field string `yaml:"field"`
	// Prefix is put before each lifted key.
	Prefix string `yaml:"prefix"`
}

// Nest is Fluent Bit's nest filter, operation nest.
type Nest struct {
	// Fields are top-level field names; "*" matches any run of characters
	// (kubernetes_*).
	Fields []string `yaml:"fields"`
	// Under is the key of the map they move into (made when missing).
	Under string `yaml:"under"`
	// RemovePrefix is cut from the front of each nested key.
	RemovePrefix string `yaml:"remove_prefix"`
}

// Redact replaces what its rules match in strings.
type Redact struct {
	// Fields are the dotted paths to look in; empty means every string of
	// the record (map keys excepted).
	Fields []string `yaml:"fields"`
	// Patterns are built-in rules: credit_card (with a Luhn check), email,
	// bearer_token, aws_access_key_id.
	Patterns []string `yaml:"patterns"`
	// Rules are regular expressions by name; with a capture group only the
	// group is replaced.
	Rules []Rule `yaml:"rules"`
	// With is "mask" (the default: Mask replaces the secret) or "hash" (a
	// keyed HMAC-SHA256 of the secret, so equal secrets stay comparable).
	With string `yaml:"with"`
	// Mask replaces a secret; default "[REDACTED]".
	Mask string `yaml:"mask"`
	// HashKey keys the hash; required with with: hash (use ${ENV}).
	HashKey string `yaml:"hash_key"`
}

// Rule is a named regular expression.
type Rule struct {
	Name  string `yaml:"name"`
	Regex string `yaml:"regex"`
}

// Field is one name and the YAML of its value, in the order written.
type Field struct {
	Name  string
	Value yaml.Node
}

// Fields is a YAML map kept in order.
type Fields []Field

// UnmarshalYAML keeps the map's order.
func (f *Fields) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a map of field: value", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		*f = append(*f, Field{Name: n.Content[i].Value, Value: *n.Content[i+1]})
	}
	return nil
}

// Pair is one from: to.
type Pair struct{ From, To string }

// Pairs is a YAML map of from: to, kept in order.
type Pairs []Pair

// UnmarshalYAML keeps the map's order.
func (p *Pairs) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a map of from: to", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i+1].Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s: want a field path", n.Content[i+1].Line, n.Content[i].Value)
		}
		*p = append(*p, Pair{From: n.Content[i].Value, To: n.Content[i+1].Value})
	}
	return nil
}

// op names the step's operation; an error when it has none or several.
func (s *Step) op() (string, error) {
	var ops []string
	add := func(on bool, name string) {
		if on {
			ops = append(ops, name)
		}
	}
	add(s.Set != nil, "set")
	add(s.Add != nil, "add")
	add(s.Rename != nil, "rename")
	add(s.Copy != nil, "copy")
	add(s.Remove != nil, "remove")
	add(s.Keep != nil, "keep")
	add(s.Lift != nil, "lift")
	add(s.Nest != nil, "nest")
	add(s.Drop, "drop")
	add(s.Redact != nil, "redact")
	switch len(ops) {
	case 0:
		return "", errors.New("no operation: want one of set, add, rename, copy, remove, keep, lift, nest, drop, redact")
	case 1:
		return ops[0], nil
	}
	return "", fmt.Errorf("several operations (%s): one per step", strings.Join(ops, ", "))
}

// splitPath splits a dotted path; the parts must not be empty.
func splitPath(p string) ([][]byte, error) {
	if p == "" {
		return nil, errors.New("empty path")
	}
	parts := strings.Split(p, ".")
	out := make([][]byte, len(parts))
	for i, s := range parts {
		if s == "" {
			return nil, fmt.Errorf("path %q has an empty part", p)
		}
		out[i] = []byte(s)
	}
	return out, nil
}
