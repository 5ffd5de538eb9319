package enrich

import (
	"bytes"
	"errors"
	"slices"
	"strings"

	"github.com/sluicelog/sluice/internal/msgp"
)

// field is one key/value pair of a msgpack map, as offsets: key starts the
// encoded key, val starts the encoded value, end is past it.
type field struct{ key, val, end int }

type fieldList []field

var errNotMap = errors.New("enrich: record is not a map")

// scan appends the top-level fields of a msgpack map to fields.
func scan(record []byte, fields fieldList) (fieldList, error) {
	n, off, err := msgp.ReadMapHeader(record, 0)
	if err != nil {
		return nil, errNotMap
	}
	for i := 0; i < n; i++ {
		k := off
		v, err := msgp.Skip(record, k)
		if err != nil {
			return nil, err
		}
		end, err := msgp.Skip(record, v)
		if err != nil {
			return nil, err
		}
		fields = append(fields, field{k, v, end})
		off = end
	}
	return fields, nil
}

// keyHdr returns the length of the str/bin header of an encoded key.
func keyHdr(key []byte) int {
	if len(key) == 0 {
		return 0
	}
	switch c := key[0]; {
	case c >= 0xa0 && c <= 0xbf:
		return 1
	case c == 0xd9 || c == 0xc4:
		return 2
	case c == 0xda || c == 0xc5:
		return 3
	case c == 0xdb || c == 0xc6:
		return 5
	}
	return 0
}

// keyIs reports whether the encoded key at f is name.
func (f field) keyIs(record []byte, name []byte) bool {
	k, _, err := msgp.ReadBytes(record, f.key)
	return err == nil && bytes.Equal(k, name)
}

// get returns the field named name.
func (fl fieldList) get(record []byte, name []byte) (field, bool) {
	for _, f := range fl {
		if f.keyIs(record, name) {
			return f, true
		}
	}
	return field{}, false
}

// has reports whether a field has the same key as the encoded key ek.
func (fl fieldList) has(record []byte, ek []byte) bool {
	name, _, err := msgp.ReadBytes(ek, 0)
	if err != nil {
		return false
	}
	_, ok := fl.get(record, name)
	return ok
}

// str returns the value of a str or bin field.
func (fl fieldList) str(record []byte, name []byte) ([]byte, bool) {
	f, ok := fl.get(record, name)
	if !ok {
		return nil, false
	}
	v, _, err := msgp.ReadBytes(record, f.val)
	return v, err == nil
}

// strOr returns the value of a str field, or def.
func (fl fieldList) strOr(record []byte, name string, def string) []byte {
	if v, ok := fl.str(record, []byte(name)); ok {
		return v
	}
	return []byte(def)
}

// path returns the str value at a dotted path: the whole path as one key
// first, then through nested maps ("kubernetes.pod_name").
func (fl fieldList) path(record []byte, path string) ([]byte, bool) {
	if v, ok := fl.str(record, []byte(path)); ok {
		return v, true
	}
	head, rest, nested := strings.Cut(path, ".")
	if !nested {
		return nil, false
	}
	f, ok := fl.get(record, []byte(head))
	if !ok {
		return nil, false
	}
	inner, err := scan(record[f.val:f.end], nil)
	if err != nil {
		return nil, false
	}
	return inner.path(record[f.val:f.end], rest)
}

func sortStrings(s []string) { slices.Sort(s) }
