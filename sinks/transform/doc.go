package transform

import (
	"bytes"

	"github.com/sluicelog/sluice/internal/msgp"
)

// node is one field of a record being edited. A map value is opened (its
// fields become child nodes) only when a step reaches into it; everything
// else stays the encoded bytes it came as, or that a step made.
type node struct {
	key   []byte // the field name
	val   []byte // the encoded value; nil while the node is an opened map
	first int32  // first child of an opened map, or -1
	next  int32  // next sibling, or -1
	dead  bool
}

// doc is a msgpack record under edit: a tree of nodes over the record's
// bytes and a scratch buffer for new values. A doc is reused from record to
// record; in steady state editing allocates nothing.
type doc struct {
	nodes   []node
	scratch []byte // values made by steps (slices into it stay valid as it grows)
	out     []byte // the record encoded, for steps that read the whole record
	text    []byte // a template's text, before it is encoded into scratch
	// whole holds the record after a redact step rewrote every string;
	// spare is the other buffer for the next such step.
	whole, spare []byte
	tag          string
	changed      bool
}

const root = 0

// reset makes the doc the record rec (a msgpack map).
func (d *doc) reset(tag string, rec []byte) bool {
	d.nodes = append(d.nodes[:0], node{val: rec, first: -1, next: -1})
	d.scratch = d.scratch[:0]
	d.tag, d.changed = tag, false
	return d.open(root)
}

// open turns a map value into child nodes; false when it is not a map.
func (d *doc) open(i int32) bool {
	if d.nodes[i].val == nil {
		return true
	}
	b := d.nodes[i].val
	n, off, err := msgp.ReadMapHeader(b, 0)
	if err != nil {
		return false
	}
	start := int32(len(d.nodes))
	for j := 0; j < n; j++ {
		k, v, err := msgp.ReadBytes(b, off)
		if err != nil {
			d.nodes = d.nodes[:start]
			return false
		}
		end, err := msgp.Skip(b, v)
		if err != nil {
			d.nodes = d.nodes[:start]
			return false
		}
		d.nodes = append(d.nodes, node{key: k, val: b[v:end], first: -1, next: int32(len(d.nodes)) + 1})
		off = end
	}
	first := int32(-1)
	if last := int32(len(d.nodes)) - 1; last >= start {
		d.nodes[last].next = -1
		first = start
	}
	d.nodes[i].val, d.nodes[i].first = nil, first
	return true
}

// child returns the live child of map node i named name, or -1.
func (d *doc) child(i int32, name []byte) int32 {
	for c := d.nodes[i].first; c >= 0; c = d.nodes[c].next {
		if !d.nodes[c].dead && bytes.Equal(d.nodes[c].key, name) {
			return c
		}
	}
	return -1
}

// add appends a child to map node i (which must be open) and returns it.
func (d *doc) add(i int32, name []byte, val []byte) int32 {
	n := int32(len(d.nodes))
	d.nodes = append(d.nodes, node{key: name, val: val, first: -1, next: -1})
	last := d.nodes[i].first
	if last < 0 {
		d.nodes[i].first = n
		return n
	}
	for d.nodes[last].next >= 0 {
		last = d.nodes[last].next
	}
	d.nodes[last].next = n
	return n
}

// find returns the node at path, or -1. With create, missing maps on the
// way and the last field are made (the field with a nil value and no
// children: the caller sets it); a value on the way that is not a map makes
// it fail (-1).
func (d *doc) find(path [][]byte, create bool) int32 {
	at := int32(root)
	for k, name := range path {
		c := d.child(at, name)
		if c < 0 {
			if !create {
				return -1
			}
			d.changed = true
			if k == len(path)-1 {
				return d.add(at, name, nil)
			}
			at = d.add(at, name, nil) // an empty opened map
			continue
		}
		if k < len(path)-1 && !d.open(c) {
			return -1
		}
		at = c
	}
	return at
}

// parentOf returns the map node that holds path's last field, or -1.
func (d *doc) parentOf(path [][]byte, create bool) int32 {
	if len(path) == 1 {
		return root
	}
	p := d.find(path[:len(path)-1], create)
	if p < 0 || !d.open(p) {
		return -1
	}
	return p
}

// set gives node i the encoded value val.
func (d *doc) set(i int32, val []byte) {
	d.nodes[i].val, d.nodes[i].first = val, -1
	d.changed = true
}

// remove drops node i.
func (d *doc) remove(i int32) {
	d.nodes[i].dead = true
	d.changed = true
}

// value returns node i's encoded value, encoding an opened map into scratch.
func (d *doc) value(i int32) []byte {
	if v := d.nodes[i].val; v != nil {
		return v
	}
	start := len(d.scratch)
	d.scratch = d.encode(d.scratch, i)
	return d.scratch[start:]
}

// live counts node i's live children.
func (d *doc) live(i int32) int {
	n := 0
	for c := d.nodes[i].first; c >= 0; c = d.nodes[c].next {
		if !d.nodes[c].dead {
			n++
		}
	}
	return n
}

// encode appends node i (an opened map or a value) as msgpack.
func (d *doc) encode(dst []byte, i int32) []byte {
	if v := d.nodes[i].val; v != nil {
		return append(dst, v...)
	}
	dst = msgp.AppendMapHeader(dst, d.live(i))
	for c := d.nodes[i].first; c >= 0; c = d.nodes[c].next {
		if d.nodes[c].dead {
			continue
		}
		dst = msgp.AppendStrBytes(dst, d.nodes[c].key)
		dst = d.encode(dst, c)
	}
	return dst
}

// record returns the record as it is now, for steps that read it whole
// (templates, expressions). The bytes are valid until the next call.
func (d *doc) record() []byte {
	d.out = d.encode(d.out[:0], root)
	return d.out
}
