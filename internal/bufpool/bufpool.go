// Package bufpool recycles byte buffers by size class (powers of two from
// 4 KiB to 64 MiB), so that a buffer grown for a big value goes back to be
// shared instead of staying with whoever grew it.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 12 // 4 KiB
	maxShift = 26 // 64 MiB
)

var pools [maxShift - minShift + 1]sync.Pool

// class returns the index of the smallest class holding n bytes, or -1
// when n is above the largest.
func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	s := bits.Len(uint(n - 1))
	if s > maxShift {
		return -1
	}
	return s - minShift
}

// Get returns an empty buffer with room for at least n bytes: a class size,
// recycled when one is free; above the largest class, exactly n.
func Get(n int) []byte {
	c := class(n)
	if c < 0 {
		return make([]byte, 0, n)
	}
	if b, ok := pools[c].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 1<<(c+minShift))
}

// Put gives a buffer back for reuse; the caller must not touch it after.
// Buffers whose capacity is not a class size are left to the collector.
func Put(b []byte) {
	c := class(cap(b))
	if c < 0 || cap(b) != 1<<(c+minShift) {
		return
	}
	b = b[:0]
	pools[c].Put(&b)
}

// GetPtr is Get for callers that keep the buffer behind a pointer (and so
// hand it back without an allocation with PutPtr).
func GetPtr(n int) *[]byte {
	c := class(n)
	if c < 0 {
		b := make([]byte, 0, n)
		return &b
	}
	if b, ok := pools[c].Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 1<<(c+minShift))
	return &b
}

// PutPtr is Put for a buffer from GetPtr (or any pointer to a buffer).
func PutPtr(b *[]byte) {
	if b == nil {
		return
	}
	c := class(cap(*b))
	if c < 0 || cap(*b) != 1<<(c+minShift) {
		return
	}
	*b = (*b)[:0]
	pools[c].Put(b)
}

// Append appends p to the buffer behind b, moving it to a larger pooled
// buffer when it does not fit.
func Append(b *[]byte, p []byte) {
	if len(*b)+len(p) > cap(*b) {
		nb := GetPtr(max(2*cap(*b), len(*b)+len(p)))
		*nb = append(*nb, *b...)
		old := *b
		*b = *nb
		*nb = old
		PutPtr(nb)
	}
	*b = append(*b, p...)
}
