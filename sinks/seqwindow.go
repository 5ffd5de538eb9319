package sinks

// seqWindow remembers which stream sequences were settled among the latest
// size ones (up to the highest added), a bit each. Older sequences are
// forgotten: has reports false for them.
type seqWindow struct {
	bits []uint64
	size uint64
	high uint64 // highest sequence added; 0 before the first
}

func newSeqWindow(size int) seqWindow {
	words := (size + 63) / 64
	return seqWindow{bits: make([]uint64, words), size: uint64(words) * 64}
}

// add marks seq settled, sliding the window forward when seq is above it.
func (w *seqWindow) add(seq uint64) {
	if seq > w.high {
		if seq-w.high >= w.size {
			clear(w.bits)
		} else {
			for s := w.high + 1; s < seq; s++ {
				w.set(s, false)
			}
		}
		w.high = seq
	} else if w.high-seq >= w.size {
		return // older than the window
	}
	w.set(seq, true)
}

// has reports whether seq is in the window and was added.
func (w *seqWindow) has(seq uint64) bool {
	if w.high == 0 || seq > w.high || w.high-seq >= w.size {
		return false
	}
	i := seq % w.size
	return w.bits[i/64]&(1<<(i%64)) != 0
}

func (w *seqWindow) set(seq uint64, on bool) {
	i := seq % w.size
	if on {
		w.bits[i/64] |= 1 << (i % 64)
	} else {
		w.bits[i/64] &^= 1 << (i % 64)
	}
}
