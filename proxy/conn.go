package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

type connKey struct{}

// connInfo is what the proxy knows of one client connection. The caller is
// resolved at most once per connection, and only when a hop needs it: it
// may read /proc.
type connInfo struct {
	remote, local netip.AddrPort
	once          sync.Once
	caller        string
	looked        atomic.Bool // the caller has been looked up
}

func newConnInfo(c net.Conn) *connInfo {
	ci := &connInfo{}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ci.remote = a.AddrPort()
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ci.local = a.AddrPort()
	}
	return ci
}

func (ci *connInfo) resolve(r CallerResolver) string {
	if ci == nil || r == nil {
		return ""
	}
	ci.once.Do(func() {
		ci.caller = r.Caller(ci.remote, ci.local)
		ci.looked.Store(true)
	})
	return ci.caller
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
