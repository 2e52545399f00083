package proxy

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// upstreamPool keeps idle upstream connections when their client
// connection ends, for the next client connection to the same upstream.
// Services under load open a connection for most calls (Go's client keeps
// two idle ones per host), and without the pool each of those would cost
// the service an accept and the machine a connection in TIME_WAIT, on top
// of the proxy's dial.
type upstreamPool struct {
	mu     sync.Mutex
	idle   map[string][]pooledConn // by upstream address, most recent last
	closed bool
	// kept, when set, is told each time a connection is kept (tests).
	kept chan<- string
}

type pooledConn struct {
	c  net.Conn
	at time.Time
}

const (
	maxIdlePerUpstream = 16
	// idleUpstreamTimeout is shorter than the shortest common server idle
	// timeout (Node's 5 s), so a pooled connection is rarely one the
	// service is closing.
	idleUpstreamTimeout = 4 * time.Second
)

// put keeps c, idle, for the next client of addr.
func (p *upstreamPool) put(addr string, c net.Conn) {
	p.mu.Lock()
	if p.idle == nil {
		p.idle = map[string][]pooledConn{}
	}
	p.expire(addr)
	if p.closed || len(p.idle[addr]) >= maxIdlePerUpstream {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], pooledConn{c, time.Now()})
	p.mu.Unlock()
	if p.kept != nil {
		p.kept <- addr
	}
}

// get returns an idle connection to addr that is still open, or nil.
func (p *upstreamPool) get(addr string) net.Conn {
	for {
		p.mu.Lock()
		p.expire(addr)
		list := p.idle[addr]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		pc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		p.mu.Unlock()
		if stillOpen(pc.c) {
			return pc.c
		}
		pc.c.Close()
	}
}

// expire closes addr's connections idle for too long. p.mu is held.
func (p *upstreamPool) expire(addr string) {
	list := p.idle[addr]
	n := 0
	for n < len(list) && time.Since(list[n].at) > idleUpstreamTimeout {
		list[n].c.Close()
		n++
	}
	if n > 0 {
		p.idle[addr] = append(list[:0], list[n:]...)
	}
}

func (p *upstreamPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, list := range p.idle {
		for _, pc := range list {
			pc.c.Close()
		}
	}
	p.idle = nil
}

// stillOpen reports whether an idle connection has neither been closed by
// its peer nor received anything (an idle HTTP/1 server sends nothing), by
// peeking without blocking.
func stillOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = errors.Is(err, syscall.EAGAIN)
		return true // never wait
	})
	return open
}
