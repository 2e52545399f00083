package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/devstack/devstack/trace"
)

// tcp proxies an opaque connection and records it as one span: bytes each
// way, duration and how it ended.
func (rt *route) tcp(c net.Conn) {
	s := rt.s
	cfg := rt.cfg.Load()
	start := time.Now()
	ci := newConnInfo(c)
	sp := &trace.Span{
		TraceID: trace.NewTraceID(nil), SpanID: trace.NewSpanID(nil),
		Callee: cfg.Service, Protocol: "tcp", GRPCStatus: -1, Start: start,
		Caller: ci.resolve(s.opts.Callers),
	}
	defer c.Close()
	up, err := s.dial(context.Background(), "tcp", cfg.Upstream)
	if err != nil {
		sp.Error = dialFailure(cfg, err)
		sp.Duration = time.Since(start)
		s.opts.Recorder.Record(sp)
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	var errIn, errOut error
	wg.Add(2)
	go func() {
		defer wg.Done()
		sp.BytesIn, errIn = io.Copy(up, c)
		closeWrite(up)
	}()
	go func() {
		defer wg.Done()
		sp.BytesOut, errOut = io.Copy(c, up)
		closeWrite(c)
	}()
	wg.Wait()
	sp.Duration = time.Since(start)
	sp.Error = tcpEnding(errIn, errOut)
	s.opts.Recorder.Record(sp)
}

func closeWrite(c net.Conn) {
	type cw interface{ CloseWrite() error }
	if x, ok := c.(cw); ok {
		x.CloseWrite()
		return
	}
	switch p := c.(type) {
	case *peekedConn:
		closeWrite(p.Conn)
	case *relayedConn:
		closeWrite(p.Conn)
	}
}

// tcpEnding says how a proxied connection ended: "" for a clean close.
func tcpEnding(errs ...error) string {
	for _, err := range errs {
		switch {
		case err == nil, errors.Is(err, net.ErrClosed):
		case errors.Is(err, syscall.ECONNRESET):
			return "connection reset"
		default:
			return err.Error()
		}
	}
	return ""
}
