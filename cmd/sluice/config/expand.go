package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// templateNames are references of field templates, not variables.
var templateNames = map[string]bool{"tag": true, "uuid": true, "hostname": true}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expand replaces, in every scalar of the parsed document (comments are not
// scalars), ${VAR} with the variable's value and ${VAR:-default} with the
// value or, when VAR is unset or empty, the default; $$ is a literal $. A
// variable's value is taken as it is: whatever its characters (a password
// with # or : or quotes), it is the scalar's text and never YAML syntax. An
// unquoted scalar that is one reference is typed by its value (${PORT} may
// be a number, ${ON} a boolean). A ${VAR} that is unset is an error naming
// the line, so that a typo does not silently become an empty setting. Other
// $ signs are left alone, and so are the references of sinks' field
// templates: ${a.b} (not a variable name), ${tag[1]} and the lowercase
// ${tag}, ${uuid} and ${hostname}.
func expand(n *yaml.Node, lookup func(string) (string, bool)) error {
	var errs []error
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		for _, c := range n.Content {
			walk(c)
		}
		if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "$") {
			return
		}
		v := envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			if m == "$$" {
				return "$"
			}
			sub := envRef.FindStringSubmatch(m)
			name, hasDefault := sub[1], strings.HasPrefix(m[2+len(sub[1]):], ":-")
			if templateNames[name] && !hasDefault {
				return m
			}
			v, ok := lookup(name)
			if hasDefault && v == "" {
				return sub[3]
			}
			if !ok {
				errs = append(errs, fmt.Errorf("config: line %d: environment variable %s is not set (write ${%s:-default} for a default)", n.Line, name, name))
			}
			return v
		})
		if v != n.Value {
			n.Value = v
			if n.Style == 0 {
				n.Tag = "" // typed by the new value when decoded
			}
		}
	}
	walk(n)
	return errors.Join(errs...)
}

var (
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// knownFields reports the mapping keys no field of the target type takes,
// with their lines, as a yaml.Decoder with KnownFields does for text
// (yaml.Node.Decode has no such option).
func knownFields(n *yaml.Node, t reflect.Type) error {
	for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) == 1 {
			n = n.Content[0]
		} else {
			return nil
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(yamlUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // the decoder says what is wrong
		}
		fields := map[string]reflect.Type{}
		yamlFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			if key.Value == "<<" && key.Tag == "!!merge" {
				errs = append(errs, knownFields(value, t))
				continue
			}
			ft, ok := fields[key.Value]
			if !ok {
				errs = append(errs, fmt.Errorf("line %d: field %s not found in type %s", key.Line, key.Value, t))
				continue
			}
			errs = append(errs, knownFields(value, ft))
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for _, item := range n.Content {
				errs = append(errs, knownFields(item, t.Elem()))
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 1; i < len(n.Content); i += 2 {
				errs = append(errs, knownFields(n.Content[i], t.Elem()))
			}
		}
	}
	return errors.Join(errs...)
}

// yamlFields collects a struct's YAML keys, with inline structs' keys.
func yamlFields(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			yamlFields(ft, into)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = f.Type
	}
}
