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

// Append appends the rewritten record to dst.
func (w *rewriter) Append(dst, rec []byte) ([]byte, error) {
	start := len(dst)
	dst, _, err := w.appendMap(dst, rec, 0, w.root, 0)
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

func (w *rewriter) appendMap(dst, b []byte, off int, n *node, depth int) ([]byte, int, error) {
	count, next, err := msgp.ReadMapHeader(b, off)
	if err != nil {
		return dst, off, err
	}
	kept := count
	if n != nil && n.hasRemove {
		if kept, err = keptKeys(b, next, count, n); err != nil {
			return dst, off, err
		}
	}
	dst = msgp.AppendMapHeader(dst, kept)
	off = next
	for i := 0; i < count; i++ {
		key, valueAt, err := msgp.ReadBytes(b, off)
		if err != nil {
			// A key that is not a string: copy the pair as it is.
			end, err := msgp.Skip(b, off)
			if err != nil {
				return dst, off, err
			}
			if end, err = msgp.Skip(b, end); err != nil {
				return dst, off, err
			}
			dst = append(dst, b[off:end]...)
			off = end
			continue
		}
		c := n.find(key)
		if c != nil && c.remove {
			if off, err = msgp.Skip(b, valueAt); err != nil {
				return dst, off, err
			}
			continue
		}
		if (w.all || (n != nil && n.dots)) && bytes.IndexByte(key, '.') >= 0 {
			dots := bytes.Count(key, []byte{'.'})
			dst = msgp.AppendStrHeader(dst, len(key)+dots*(len(w.with)-1))
			for _, ch := range key {
				if ch == '.' {
					dst = append(dst, w.with...)
				} else {
					dst = append(dst, ch)
				}
			}
		} else {
			dst = append(dst, b[off:valueAt]...)
		}
		descend := depth < maxRewriteDepth && (w.all || (c != nil && (c.children != nil || c.dots)))
		if descend {
			if dst, off, err = w.appendValue(dst, b, valueAt, c, depth+1); err != nil {
				return dst, off, err
			}
			continue
		}
		end, err := msgp.Skip(b, valueAt)
		if err != nil {
			return dst, off, err
		}
		dst = append(dst, b[valueAt:end]...)
		off = end
	}
	return dst, off, nil
}

// appendValue rewrites the maps in a value: a map itself, or the maps in an
// array when every key is rewritten. It returns the offset after the value.
func (w *rewriter) appendValue(dst, b []byte, off int, n *node, depth int) ([]byte, int, error) {
	t, err := msgp.Peek(b, off)
	if err != nil {
		return dst, off, err
	}
	switch {
	case t == msgp.TypeMap:
		return w.appendMap(dst, b, off, n, depth)
	case t == msgp.TypeArray && w.all:
		count, next, err := msgp.ReadArrayHeader(b, off)
		if err != nil {
			return dst, off, err
		}
		dst = msgp.AppendArrayHeader(dst, count)
		for i := 0; i < count; i++ {
			if dst, next, err = w.appendValue(dst, b, next, nil, depth+1); err != nil {
				return dst, off, err
			}
		}
		return dst, next, nil
	}
	end, err := msgp.Skip(b, off)
	if err != nil {
		return dst, off, err
	}
	return append(dst, b[off:end]...), end, nil
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
