//go:build !unix

package forward

import "net"

// readWhenReady is not available where sockets cannot be peeked at: the
// caller reads as usual, holding its buffer while it waits.
func readWhenReady(net.Conn, int, func() []byte) ([]byte, int, error, bool) {
	return nil, 0, nil, false
}
