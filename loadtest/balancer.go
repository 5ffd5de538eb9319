package loadtest

import (
	"io"
	"net"
	"sync"
	"time"
)

// Balancer is a round-robin TCP balancer in front of several Forward
// listeners, as kube-proxy is in front of a Service: it spreads new
// connections only, and skips a backend that refuses.
type Balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	next     int
	wg       sync.WaitGroup
}

// NewBalancer listens on a loopback port and serves until Close.
func NewBalancer() (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{ln: ln}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

// Addr is where clients connect.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

// Set replaces the backends that new connections go to.
func (b *Balancer) Set(backends ...string) {
	b.mu.Lock()
	b.backends = append([]string(nil), backends...)
	b.mu.Unlock()
}

// Close stops accepting and waits for the connections to end.
func (b *Balancer) Close() {
	b.ln.Close()
	b.wg.Wait()
}

func (b *Balancer) pick() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.backends) == 0 {
		return ""
	}
	addr := b.backends[b.next%len(b.backends)]
	b.next++
	return addr
}

func (b *Balancer) serve() {
	defer b.wg.Done()
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer in.Close()
			b.mu.Lock()
			n := len(b.backends)
			b.mu.Unlock()
			var out net.Conn
			for range n {
				if out, err = net.DialTimeout("tcp", b.pick(), time.Second); err == nil {
					break
				}
			}
			if out == nil {
				return
			}
			defer out.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(out, in)
			go pipe(in, out)
			<-done
			<-done
		}()
	}
}
