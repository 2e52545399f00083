package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// The floors are not proxies: they relay bytes between each client
// connection and an upstream connection of its own, without reading a
// single header. No HTTP proxy can do less per request, so they bound
// what any proxy written in Go can reach on this machine, in each of
// the two ways Go programs do network I/O:
//
//   - relay-goroutines: two goroutines and io.Copy per connection pair,
//     the net package's model (and that of devstack's proxy);
//   - relay-epoll: one epoll loop per core over raw non-blocking sockets,
//     nginx's model, with no goroutine hand-off per request.
//
// Each runs in a process of its own (-serve-floor), as nginx does.

func serveFloor(kind, listen, upstream string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	switch kind {
	case "relay-goroutines":
		return relayGoroutines(l, upstream)
	case "relay-epoll":
		return relayEpoll(l, upstream)
	}
	return fmt.Errorf("unknown floor %q", kind)
}

func relayGoroutines(l net.Listener, upstream string) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				return
			}
			defer up.Close()
			var wg sync.WaitGroup
			wg.Go(func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() })
			io.Copy(c, up)
			c.(*net.TCPConn).CloseWrite()
			wg.Wait()
		}()
	}
}

// epollConn is one side of a relayed pair, in the loop that owns both.
type epollConn struct {
	fd      int
	peer    *epollConn
	pending []byte // bytes for fd that the kernel did not take yet
}

type epollLoop struct {
	ep    int
	wake  int // eventfd: a new client is waiting in add
	add   chan [2]int
	conns map[int]*epollConn
}

func relayEpoll(l net.Listener, upstream string) error {
	loops := make([]*epollLoop, runtime.GOMAXPROCS(0))
	for i := range loops {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return err
		}
		wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return err
		}
		lp := &epollLoop{ep: ep, wake: wake, add: make(chan [2]int, 1024), conns: map[int]*epollConn{}}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
			return err
		}
		loops[i] = lp
		go lp.run()
	}
	for i := 0; ; i++ {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			continue
		}
		// The loop takes copies of the two sockets; the net package's
		// are closed.
		cfd, err1 := dupNonblocking(c)
		ufd, err2 := dupNonblocking(up)
		c.Close()
		up.Close()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		lp := loops[i%len(loops)]
		lp.add <- [2]int{cfd, ufd}
		unix.Write(lp.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

func dupNonblocking(c net.Conn) (int, error) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	err = rc.Control(func(s uintptr) { fd, err = unix.Dup(int(s)) })
	if err != nil {
		return -1, err
	}
	return fd, unix.SetNonblock(fd, true)
}

func (lp *epollLoop) run() {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.EpollWait(lp.ep, events, -1)
		if err != nil {
			continue // EINTR
		}
		for _, e := range events[:n] {
			if int(e.Fd) == lp.wake {
				lp.accept()
				continue
			}
			c := lp.conns[int(e.Fd)]
			if c == nil {
				continue
			}
			if e.Events&unix.EPOLLOUT != 0 {
				lp.flush(c)
			}
			if e.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 && c.fd >= 0 && len(c.peer.pending) == 0 {
				lp.relay(c, buf)
			}
		}
	}
}

func (lp *epollLoop) accept() {
	var b [8]byte
	unix.Read(lp.wake, b[:])
	for {
		select {
		case p := <-lp.add:
			a, b := &epollConn{fd: p[0]}, &epollConn{fd: p[1]}
			a.peer, b.peer = b, a
			for _, c := range []*epollConn{a, b} {
				lp.conns[c.fd] = c
				unix.EpollCtl(lp.ep, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.fd)})
			}
		default:
			return
		}
	}
}

// relay moves what c has to read to its peer. When the peer cannot take
// it all, c stops being read until the peer drains (backpressure).
func (lp *epollLoop) relay(c *epollConn, buf []byte) {
	n, err := unix.Read(c.fd, buf)
	if err == unix.EAGAIN {
		return
	}
	if n <= 0 {
		lp.close(c)
		return
	}
	p := c.peer
	w, err := unix.Write(p.fd, buf[:n])
	if err != nil && err != unix.EAGAIN {
		lp.close(c)
		return
	}
	if w = max(w, 0); w < n {
		p.pending = append(p.pending[:0], buf[w:n]...)
		lp.watch(p, unix.EPOLLIN|unix.EPOLLOUT)
		lp.watch(c, 0)
	}
}

func (lp *epollLoop) flush(c *epollConn) {
	w, err := unix.Write(c.fd, c.pending)
	if err != nil && err != unix.EAGAIN {
		lp.close(c)
		return
	}
	c.pending = c.pending[max(w, 0):]
	if len(c.pending) == 0 {
		lp.watch(c, unix.EPOLLIN)
		lp.watch(c.peer, unix.EPOLLIN)
	}
}

func (lp *epollLoop) watch(c *epollConn, events uint32) {
	unix.EpollCtl(lp.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: events, Fd: int32(c.fd)})
}

func (lp *epollLoop) close(c *epollConn) {
	for _, x := range []*epollConn{c, c.peer} {
		if x.fd >= 0 {
			delete(lp.conns, x.fd)
			unix.Close(x.fd) // also leaves the epoll set
			x.fd = -1
		}
	}
}
