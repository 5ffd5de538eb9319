package elasticsearch

import (
	"bytes"
	"strings"

	"github.com/sluicelog/sluice/internal/msgp"
)

// maxRewriteDepth bounds the nesting the rewriter descends into; deeper
// values are copied as they are.
const maxRewriteDepth = 64

// rewriter changes a msgpack record before it becomes a document: it removes
// keys and replaces dots in keys, so that "app.kubernetes.io/name" and "app"
// do not fight over whether labels.app is an object or a string.
type rewriter struct {
	root *node
	all  bool   // replace dots in every key at every depth
	with []byte // the replacement for a dot
}

// node is a key path the rewriter acts on.
type node struct {
	children  []child // few: a linear search beats hashing
	remove    bool    // leave this key out
	dots      bool    // replace dots in the keys of this map
	hasRemove bool    // some child is removed
}

type child struct {
	key  string
	node *node
}

// child returns the child for key, added when missing.
func (n *node) child(key string) *node {
	if c := n.find([]byte(key)); c != nil {
		return c
	}
	c := &node{}
	n.children = append(n.children, child{key, c})
	return c
}

// find returns the child for key, nil when there is none.
func (n *node) find(key []byte) *node {
	if n == nil {
		return nil
	}
	for _, c := range n.children {
		if c.key == string(key) {
			return c.node
		}
	}
	return nil
}

// newRewriter returns nil when the configuration changes nothing.
func newRewriter(cfg Config) *rewriter {
	w := &rewriter{root: &node{}, all: cfg.ReplaceDots == DotsAll, with: []byte(cfg.ReplaceDotsWith)}
	if cfg.ReplaceDots == DotsKubernetes {
		k := w.root.child("kubernetes")
		k.child("labels").dots = true
		k.child("annotations").dots = true
	}
	for _, path := range cfg.RemoveKeys {
		n := w.root
		parts := strings.Split(path, ".")
		for _, p := range parts[:len(parts)-1] {
			n = n.child(p)
		}
		n.hasRemove = true
		n.child(parts[len(parts)-1]).remove = true
	}
	if !w.all && w.root.children == nil {
		return nil
	}
	return w
}

// Append appends the rewritten record to dst. A record with nothing to
// rewrite is not copied: Append returns dst as it is and changed false, and
// the record is used as it is.
func (w *rewriter) Append(dst, rec []byte) (out []byte, changed bool, err error) {
	e := edits{dst: dst, src: rec}
	end, err := w.walkMap(&e, 0, w.root, 0)
	if err != nil || !e.changed {
		return dst, false, err
	}
	e.cut(end, end)
	return e.dst, true, nil
}

// edits writes a rewritten record as runs of the original's bytes between
// the changes: a key replaced, a pair left out, a map header with fewer
// pairs.
type edits struct {
	dst, src []byte
	copied   int // src before this is in dst
	changed  bool
}

// cut appends the original bytes up to from and leaves out those up to to:
// what the caller appends next stands for src[from:to].
func (e *edits) cut(from, to int) {
	e.dst = append(e.dst, e.src[e.copied:from]...)
	e.copied = to
	e.changed = true
}

// walkMap finds the changes in the map at off and returns the offset after it.
func (w *rewriter) walkMap(e *edits, off int, n *node, depth int) (int, error) {
	b := e.src
	count, next, err := msgp.ReadMapHeader(b, off)
	if err != nil {
		return off, err
	}
	if n != nil && n.hasRemove {
		kept, err := keptKeys(b, next, count, n)
		if err != nil {
			return off, err
		}
		if kept != count {
			e.cut(off, next)
			e.dst = msgp.AppendMapHeader(e.dst, kept)
		}
	}
	off = next
	for i := 0; i < count; i++ {
		key, valueAt, err := msgp.ReadBytes(b, off)
		if err != nil {
			// A key that is not a string: kept as it is.
			if off, err = msgp.Skip(b, off); err != nil {
				return off, err
			}
			if off, err = msgp.Skip(b, off); err != nil {
				return off, err
			}
			continue
		}
		c := n.find(key)
		if c != nil && c.remove {
			end, err := msgp.Skip(b, valueAt)
			if err != nil {
				return off, err
			}
			e.cut(off, end)
			off = end
			continue
		}
		if (w.all || (n != nil && n.dots)) && bytes.IndexByte(key, '.') >= 0 {
			e.cut(off, valueAt)
			e.dst = w.appendKey(e.dst, key)
		}
		descend := depth < maxRewriteDepth && (w.all || (c != nil && (c.children != nil || c.dots)))
		if descend {
			off, err = w.walkValue(e, valueAt, c, depth+1)
		} else {
			off, err = msgp.Skip(b, valueAt)
		}
		if err != nil {
			return off, err
		}
	}
	return off, nil
}

// appendKey appends key with its dots replaced.
func (w *rewriter) appendKey(dst, key []byte) []byte {
	dots := bytes.Count(key, []byte{'.'})
	dst = msgp.AppendStrHeader(dst, len(key)+dots*(len(w.with)-1))
	for _, ch := range key {
		if ch == '.' {
			dst = append(dst, w.with...)
		} else {
			dst = append(dst, ch)
		}
	}
	return dst
}

// walkValue finds the changes in the maps of a value: a map itself, or the
// maps in an array when every key is rewritten. It returns the offset after
// the value.
func (w *rewriter) walkValue(e *edits, off int, n *node, depth int) (int, error) {
	t, err := msgp.Peek(e.src, off)
	if err != nil {
		return off, err
	}
	switch {
	case t == msgp.TypeMap:
		return w.walkMap(e, off, n, depth)
	case t == msgp.TypeArray && w.all:
		count, next, err := msgp.ReadArrayHeader(e.src, off)
		if err != nil {
			return off, err
		}
		for i := 0; i < count; i++ {
			if next, err = w.walkValue(e, next, nil, depth+1); err != nil {
				return next, err
			}
		}
		return next, nil
	}
	return msgp.Skip(e.src, off)
}

// keptKeys counts the pairs of a map that are not removed.
func keptKeys(b []byte, off, count int, n *node) (int, error) {
	kept := count
	for i := 0; i < count; i++ {
		key, valueAt, err := msgp.ReadBytes(b, off)
		if err != nil {
			if valueAt, err = msgp.Skip(b, off); err != nil {
				return 0, err
			}
			key = nil
		}
		if c := n.find(key); c != nil && c.remove && key != nil {
			kept--
		}
		if off, err = msgp.Skip(b, valueAt); err != nil {
			return 0, err
		}
	}
	return kept, nil
}
