package file

import (
	"context"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident returns how many of the first n bytes' pages of path are in the
// page cache, and how many pages that is.
func resident(t *testing.T, path string, n int64) (in, pages int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	ps := os.Getpagesize()
	vec := make([]byte, (len(m)+ps-1)/ps)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	for _, v := range vec {
		in += int(v & 1)
	}
	return in, len(vec)
}

// writeMiB writes batches of about 100 KiB until the sink's file holds at
// least mib MiB, and returns its path and size.
func writeMiB(t *testing.T, s *Sink, mib int) (string, int64) {
	t.Helper()
	msg := strings.Repeat("x", 1000)
	var batch []entry
	for i := range 100 {
		batch = append(batch, entry{sec: t0, nsec: uint32(i), record: om{{"log", msg}}})
	}
	c := newChunk(t, "app", batch...)
	for s.size < int64(mib)<<20 {
		write(t, s, c)
	}
	return s.path, s.size
}

func TestWrittenPagesAreDropped(t *testing.T) {
	var st unix.Statfs_t
	dir := t.TempDir()
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Skip("tmpfs keeps every page: it has no disk to write them back to")
	}
	s := newSink(t, Config{Path: dir}, "drop", newClock())
	path, size := writeMiB(t, s, 4*pageCacheWindow>>20)
	s.pc.settle()
	// Four windows written: the first two are written back and dropped,
	// the third is still there (dropping it waits for the next window, so
	// that the disk has taken it by then).
	first, pages := resident(t, path, pageCacheWindow)
	if first > pages/10 {
		t.Errorf("first %d MiB: %d of %d pages still cached, want them dropped", pageCacheWindow>>20, first, pages)
	}
	two, _ := resident(t, path, 2*pageCacheWindow)
	if three, _ := resident(t, path, 3*pageCacheWindow); three-two < pages/2 {
		t.Errorf("third %d MiB: %d of %d pages cached, want them kept until the next window", pageCacheWindow>>20, three-two, pages)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if in, pages := resident(t, path, size); in > pages/10 {
		t.Errorf("after close: %d of %d pages still cached, want them dropped", in, pages)
	}

	keep := newSink(t, Config{Path: t.TempDir(), KeepPageCache: true}, "keep", newClock())
	path, _ = writeMiB(t, keep, 3*pageCacheWindow>>20)
	if in, pages := resident(t, path, pageCacheWindow); in < pages/2 {
		t.Errorf("keep_page_cache: %d of %d pages cached, want the file's pages kept", in, pages)
	}
}
