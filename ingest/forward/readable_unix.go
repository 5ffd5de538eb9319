//go:build unix

package forward

import (
	"errors"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// readWhenReady waits until conn has bytes to read, without holding a
// buffer, then reads them into one taken with get: a connection that sends
// a small chunk a second spends nearly all its time waiting, and its read
// buffer waits in the shared pool meanwhile. It costs the same system calls
// as a plain read that finds nothing: a look (a one-byte peek) and the read
// once the poller says the bytes are there.
//
// get may return nil (the server is closing): readWhenReady then returns
// net.ErrClosed. It reads at most limit bytes. It honours the read deadline, and returns io.EOF at the end of the
// stream. ok is false for a connection that is not a socket (TLS, which
// buffers on its own, or a pipe): the caller then reads as usual.
func readWhenReady(conn net.Conn, limit int, get func() []byte) (buf []byte, n int, err error, ok bool) {
	sc, isSocket := conn.(syscall.Conn)
	if !isSocket {
		return nil, 0, nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, 0, nil, false
	}
	looked := false
	werr := rc.Read(func(fd uintptr) bool {
		if !looked {
			looked = true
			var b [1]byte
			if _, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT); errors.Is(err, unix.EAGAIN) {
				return false // nothing yet: wait for the poller
			}
		}
		if buf == nil {
			if buf = get(); buf == nil {
				err = net.ErrClosed
				return true
			}
		}
		for {
			n, err = unix.Read(int(fd), buf[:min(cap(buf), limit)])
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if errors.Is(err, unix.EAGAIN) {
			n, err = 0, nil
			return false
		}
		return true
	})
	if n < 0 {
		n = 0
	}
	switch {
	case werr != nil:
		err = werr
	case err == nil && n == 0:
		err = io.EOF
	case err != nil:
		err = &net.OpError{Op: "read", Net: conn.LocalAddr().Network(), Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: err}
	}
	return buf, n, err, true
}
