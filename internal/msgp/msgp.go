// Package msgp reads msgpack values in place: it walks the bytes of a buffer
// without building Go values, so that the hot path can validate, count and
// convert records with no allocations. Every function takes the buffer and an
// offset and returns the offset just past what it read.
//
// Functions return ErrShort when the buffer ends inside a value (more bytes
// may complete it), ErrMalformed for bytes that no msgpack value starts with,
// and a *TypeError when a valid value has another type than the caller needs.
package msgp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrShort means the buffer ends inside a value; more bytes may complete it.
var ErrShort = errors.New("msgpack: value is truncated")

// ErrMalformed means the bytes are not msgpack (the never-used byte 0xc1).
var ErrMalformed = errors.New("msgpack: malformed value")

// ErrTooDeep means a value nests arrays and maps beyond MaxDepth.
var ErrTooDeep = errors.New("msgpack: value nests too deeply")

// MaxDepth bounds how deeply arrays and maps may nest in one value.
const MaxDepth = 256

// Type is the family of a msgpack value.
type Type uint8

// The msgpack type families.
const (
	TypeInvalid Type = iota
	TypeNil
	TypeBool
	TypeInt
	TypeUint
	TypeFloat
	TypeStr
	TypeBin
	TypeArray
	TypeMap
	TypeExt
)

var typeNames = [...]string{"invalid", "nil", "bool", "int", "uint", "float", "str", "bin", "array", "map", "ext"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "unknown"
}

// TypeError reports a value of another type than the one wanted.
type TypeError struct {
	Want string
	Got  Type
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("msgpack: want %s, got %s", e.Want, e.Got)
}

// TypeOf returns the type family that the byte c starts.
func TypeOf(c byte) Type {
	switch {
	case c <= 0x7f:
		return TypeUint
	case c <= 0x8f:
		return TypeMap
	case c <= 0x9f:
		return TypeArray
	case c <= 0xbf:
		return TypeStr
	case c >= 0xe0:
		return TypeInt
	}
	switch c {
	case 0xc0:
		return TypeNil
	case 0xc2, 0xc3:
		return TypeBool
	case 0xc4, 0xc5, 0xc6:
		return TypeBin
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return TypeExt
	case 0xca, 0xcb:
		return TypeFloat
	case 0xcc, 0xcd, 0xce, 0xcf:
		return TypeUint
	case 0xd0, 0xd1, 0xd2, 0xd3:
		return TypeInt
	case 0xd9, 0xda, 0xdb:
		return TypeStr
	case 0xdc, 0xdd:
		return TypeArray
	case 0xde, 0xdf:
		return TypeMap
	}
	return TypeInvalid
}

// Peek returns the type of the value at off.
func Peek(b []byte, off int) (Type, error) {
	if off >= len(b) {
		return TypeInvalid, ErrShort
	}
	t := TypeOf(b[off])
	if t == TypeInvalid {
		return t, ErrMalformed
	}
	return t, nil
}

func be16(b []byte) int { return int(binary.BigEndian.Uint16(b)) }
func be32(b []byte) int { return int(binary.BigEndian.Uint32(b)) }

// header reads the header of the value at off. It returns the number of
// payload bytes that follow the header (for str, bin, ext and scalars), or the
// number of child values (for arrays: n, for maps: 2n), and the offset just
// past the header. ext payloads include their type byte.
func header(b []byte, off int) (t Type, size int, children int, next int, err error) {
	if off >= len(b) {
		return TypeInvalid, 0, 0, off, ErrShort
	}
	c := b[off]
	switch {
	case c <= 0x7f:
		return TypeUint, 0, 0, off + 1, nil
	case c <= 0x8f:
		return TypeMap, 0, 2 * int(c&0x0f), off + 1, nil
	case c <= 0x9f:
		return TypeArray, 0, int(c & 0x0f), off + 1, nil
	case c <= 0xbf:
		return TypeStr, int(c & 0x1f), 0, off + 1, nil
	case c >= 0xe0:
		return TypeInt, 0, 0, off + 1, nil
	}
	// need returns ErrShort unless n header bytes follow the type byte.
	need := func(n int) bool { return off+1+n <= len(b) }
	switch c {
	case 0xc0:
		return TypeNil, 0, 0, off + 1, nil
	case 0xc2, 0xc3:
		return TypeBool, 0, 0, off + 1, nil
	case 0xc4, 0xd9:
		if !need(1) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeOf(c), int(b[off+1]), 0, off + 2, nil
	case 0xc5, 0xda:
		if !need(2) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeOf(c), be16(b[off+1:]), 0, off + 3, nil
	case 0xc6, 0xdb:
		if !need(4) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeOf(c), be32(b[off+1:]), 0, off + 5, nil
	case 0xc7:
		if !need(1) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeExt, int(b[off+1]) + 1, 0, off + 2, nil
	case 0xc8:
		if !need(2) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeExt, be16(b[off+1:]) + 1, 0, off + 3, nil
	case 0xc9:
		if !need(4) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeExt, be32(b[off+1:]) + 1, 0, off + 5, nil
	case 0xca:
		return TypeFloat, 4, 0, off + 1, nil
	case 0xcb:
		return TypeFloat, 8, 0, off + 1, nil
	case 0xcc:
		return TypeUint, 1, 0, off + 1, nil
	case 0xcd:
		return TypeUint, 2, 0, off + 1, nil
	case 0xce:
		return TypeUint, 4, 0, off + 1, nil
	case 0xcf:
		return TypeUint, 8, 0, off + 1, nil
	case 0xd0:
		return TypeInt, 1, 0, off + 1, nil
	case 0xd1:
		return TypeInt, 2, 0, off + 1, nil
	case 0xd2:
		return TypeInt, 4, 0, off + 1, nil
	case 0xd3:
		return TypeInt, 8, 0, off + 1, nil
	case 0xd4:
		return TypeExt, 2, 0, off + 1, nil
	case 0xd5:
		return TypeExt, 3, 0, off + 1, nil
	case 0xd6:
		return TypeExt, 5, 0, off + 1, nil
	case 0xd7:
		return TypeExt, 9, 0, off + 1, nil
	case 0xd8:
		return TypeExt, 17, 0, off + 1, nil
	case 0xdc:
		if !need(2) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeArray, 0, be16(b[off+1:]), off + 3, nil
	case 0xdd:
		if !need(4) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeArray, 0, be32(b[off+1:]), off + 5, nil
	case 0xde:
		if !need(2) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeMap, 0, 2 * be16(b[off+1:]), off + 3, nil
	case 0xdf:
		if !need(4) {
			return 0, 0, 0, off, ErrShort
		}
		return TypeMap, 0, 2 * be32(b[off+1:]), off + 5, nil
	}
	return TypeInvalid, 0, 0, off, ErrMalformed
}

// Skip returns the offset just past the whole value at off, checking that it
// is well formed and complete. It does not recurse, so hostile nesting cannot
// exhaust the stack; nesting beyond MaxDepth is rejected with ErrTooDeep.
func Skip(b []byte, off int) (int, error) {
	// Scalars, the most common values, need no stack.
	if off < len(b) {
		switch t := b[off]; {
		case t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3:
			return off + 1, nil
		case t >= 0xa0 && t <= 0xbf:
			if end := off + 1 + int(t&0x1f); end <= len(b) {
				return end, nil
			}
			return off, ErrShort
		case t >= 0x80 && t <= 0x9f, t == 0xdc, t == 0xdd, t == 0xde, t == 0xdf:
			// a map or an array: below
		default:
			_, size, _, next, err := header(b, off)
			if err != nil {
				return off, err
			}
			if size > len(b)-next {
				return off, ErrShort
			}
			return next + size, nil
		}
	}
	return skipNested(b, off)
}

// skipNested skips a map or an array.
func skipNested(b []byte, off int) (int, error) {
	// stack[i] counts the child values still to read at depth i. Records
	// seldom nest more than a few levels, so the stack starts small on the
	// goroutine's stack and grows on the heap only for deeper values:
	// zeroing MaxDepth+1 counters on every call was 4% of sluice's CPU end
	// to end.
	var small [16]int
	stack := small[:]
	depth := 0
	stack[0] = 1
	for {
		c := b[off:]
		if len(c) == 0 {
			return off, ErrShort
		}
		// Fast paths for the most common one-byte values and short strings.
		switch t := c[0]; {
		case t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3:
			off++
		case t >= 0xa0 && t <= 0xbf:
			off += 1 + int(t&0x1f)
			if off > len(b) {
				return off, ErrShort
			}
		default:
			_, size, children, next, err := header(b, off)
			if err != nil {
				return off, err
			}
			if size > len(b)-next {
				return off, ErrShort
			}
			off = next + size
			if children > 0 {
				stack[depth]--
				if depth == MaxDepth {
					return off, ErrTooDeep
				}
				depth++
				if depth == len(stack) {
					stack = append(stack, 0)
				}
				stack[depth] = children
				continue
			}
		}
		stack[depth]--
		for stack[depth] == 0 {
			if depth == 0 {
				return off, nil
			}
			depth--
		}
	}
}

// ReadArrayHeader reads an array header and returns its length.
func ReadArrayHeader(b []byte, off int) (n int, next int, err error) {
	t, _, children, next, err := header(b, off)
	if err != nil {
		return 0, off, err
	}
	if t != TypeArray {
		return 0, off, &TypeError{Want: "array", Got: t}
	}
	return children, next, nil
}

// ReadMapHeader reads a map header and returns its number of pairs.
func ReadMapHeader(b []byte, off int) (n int, next int, err error) {
	t, _, children, next, err := header(b, off)
	if err != nil {
		return 0, off, err
	}
	if t != TypeMap {
		return 0, off, &TypeError{Want: "map", Got: t}
	}
	return children / 2, next, nil
}

// ReadBytes reads a str or bin value and returns its bytes, which alias b.
func ReadBytes(b []byte, off int) (v []byte, next int, err error) {
	t, size, _, next, err := header(b, off)
	if err != nil {
		return nil, off, err
	}
	if t != TypeStr && t != TypeBin {
		return nil, off, &TypeError{Want: "str or bin", Got: t}
	}
	if size > len(b)-next {
		return nil, off, ErrShort
	}
	return b[next : next+size], next + size, nil
}

// ReadStr reads a str value and returns its bytes, which alias b.
func ReadStr(b []byte, off int) (v []byte, next int, err error) {
	t, size, _, next, err := header(b, off)
	if err != nil {
		return nil, off, err
	}
	if t != TypeStr {
		return nil, off, &TypeError{Want: "str", Got: t}
	}
	if size > len(b)-next {
		return nil, off, ErrShort
	}
	return b[next : next+size], next + size, nil
}

// ReadExt reads an ext value and returns its type and data, which alias b.
func ReadExt(b []byte, off int) (typ int8, data []byte, next int, err error) {
	t, size, _, next, err := header(b, off)
	if err != nil {
		return 0, nil, off, err
	}
	if t != TypeExt {
		return 0, nil, off, &TypeError{Want: "ext", Got: t}
	}
	if size > len(b)-next {
		return 0, nil, off, ErrShort
	}
	return int8(b[next]), b[next+1 : next+size], next + size, nil
}

// ReadInt reads a signed or unsigned integer. Unsigned values above
// math.MaxInt64 are a *TypeError.
func ReadInt(b []byte, off int) (v int64, next int, err error) {
	t, size, _, next, err := header(b, off)
	if err != nil {
		return 0, off, err
	}
	if t != TypeInt && t != TypeUint {
		return 0, off, &TypeError{Want: "integer", Got: t}
	}
	if size > len(b)-next {
		return 0, off, ErrShort
	}
	c := b[off]
	p := b[next : next+size]
	switch {
	case size == 0 && c <= 0x7f:
		v = int64(c)
	case size == 0:
		v = int64(int8(c))
	case c == 0xcc:
		v = int64(p[0])
	case c == 0xcd:
		v = int64(binary.BigEndian.Uint16(p))
	case c == 0xce:
		v = int64(binary.BigEndian.Uint32(p))
	case c == 0xcf:
		u := binary.BigEndian.Uint64(p)
		if u > math.MaxInt64 {
			return 0, off, &TypeError{Want: "int64", Got: t}
		}
		v = int64(u)
	case c == 0xd0:
		v = int64(int8(p[0]))
	case c == 0xd1:
		v = int64(int16(binary.BigEndian.Uint16(p)))
	case c == 0xd2:
		v = int64(int32(binary.BigEndian.Uint32(p)))
	case c == 0xd3:
		v = int64(binary.BigEndian.Uint64(p))
	}
	return v, next + size, nil
}

// ReadUint64 reads a non-negative integer, including values above MaxInt64.
func ReadUint64(b []byte, off int) (uint64, int, error) {
	if off < len(b) && b[off] == 0xcf {
		if off+9 > len(b) {
			return 0, off, ErrShort
		}
		return binary.BigEndian.Uint64(b[off+1:]), off + 9, nil
	}
	v, next, err := ReadInt(b, off)
	if err == nil && v < 0 {
		return 0, off, &TypeError{Want: "unsigned integer", Got: TypeInt}
	}
	return uint64(v), next, err
}

// ReadFloat reads a float32 or float64 value.
func ReadFloat(b []byte, off int) (float64, int, error) {
	if off >= len(b) {
		return 0, off, ErrShort
	}
	switch b[off] {
	case 0xca:
		if off+5 > len(b) {
			return 0, off, ErrShort
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b[off+1:]))), off + 5, nil
	case 0xcb:
		if off+9 > len(b) {
			return 0, off, ErrShort
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b[off+1:])), off + 9, nil
	}
	return 0, off, &TypeError{Want: "float", Got: TypeOf(b[off])}
}

// ReadBool reads a boolean.
func ReadBool(b []byte, off int) (bool, int, error) {
	if off >= len(b) {
		return false, off, ErrShort
	}
	switch b[off] {
	case 0xc2:
		return false, off + 1, nil
	case 0xc3:
		return true, off + 1, nil
	}
	return false, off, &TypeError{Want: "bool", Got: TypeOf(b[off])}
}

// AppendArrayHeader appends an array header for n elements.
func AppendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	}
	return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendMapHeader appends a map header for n pairs.
func AppendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xde, byte(n>>8), byte(n))
	}
	return append(b, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendStr appends s as a msgpack str.
func AppendStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

// AppendBin appends p as a msgpack bin.
func AppendBin(b []byte, p []byte) []byte {
	n := len(p)
	switch {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xc5, byte(n>>8), byte(n))
	default:
		b = append(b, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, p...)
}

// AppendEventTime appends a Fluentd EventTime (ext type 0, fixext8).
func AppendEventTime(b []byte, sec, nsec uint32) []byte {
	return append(b, 0xd7, 0x00,
		byte(sec>>24), byte(sec>>16), byte(sec>>8), byte(sec),
		byte(nsec>>24), byte(nsec>>16), byte(nsec>>8), byte(nsec))
}
