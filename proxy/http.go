package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// ServeHTTP is the per-request hot path: link the hop, stamp headers,
// forward, record.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := rt.s
	cfg := rt.cfg.Load()
	start := time.Now()
	ci, _ := r.Context().Value(connKey{}).(*connInfo)

	sp, tc := s.startHop(nil, propagate.Extract(r.Header), func([]trace.Header) []trace.Header { return s.redact.Headers(r.Header) }, ci, cfg.Service, protocolOf(r), r.Method, requestTarget(r), start)
	propagate.Inject(r.Header, tc, s.opts.Formats)

	body := &countingBody{rc: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	rw := &recordingWriter{ResponseWriter: w, start: start}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = cfg.Upstream
			pr.Out.Host = pr.In.Host
		},
		Transport:    s.h1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { rt.upstreamError(w, r, err, sp) },
		ModifyResponse: func(resp *http.Response) error {
			sp.RespHeaders = s.redact.Headers(resp.Header)
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// The upgrade is written on the hijacked connection, never
				// through WriteHeader.
				rw.status, rw.ttfb = resp.StatusCode, time.Since(start)
			}
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				sp.Protocol = "sse"
			}
			return nil
		},
		ErrorLog: nil,
	}
	if sp.Protocol == "grpc" {
		// gRPC needs HTTP/2 end to end; other h2c clients are served by an
		// HTTP/1.1 upstream.
		rp.Transport = s.h2
	}
	rp.ServeHTTP(rw, r)

	sp.Status = rw.status
	sp.TTFB = rw.ttfb
	sp.BytesIn = body.n.Load()
	sp.BytesOut = rw.bytes.Load()
	if rw.hijacked != nil {
		sp.BytesIn += rw.hijacked.in.Load()
		sp.BytesOut += rw.hijacked.out.Load()
	}
	sp.GRPCStatus = grpcStatus(w.Header())
	if sp.Error == "" && r.Context().Err() != nil && rw.status == 0 {
		sp.Error = "client went away"
	}
	s.finishHop(sp, ci)
}

// upstreamError answers a request the service could not take, naming the
// service and why, and records it on the span.
func (rt *route) upstreamError(w http.ResponseWriter, r *http.Request, err error, sp *trace.Span) {
	cfg := rt.cfg.Load()
	msg := err.Error()
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset"):
		msg = "connection reset by " + cfg.Service
	case isRefused(err):
		msg = refusal(cfg, err)
		status = http.StatusServiceUnavailable
	case r.Context().Err() != nil:
		msg = "client went away"
	}
	sp.Error = msg
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Devstack-Error", "upstream")
	w.WriteHeader(status)
	fmt.Fprintf(w, "devstack proxy: %s\n", msg)
}

func protocolOf(r *http.Request) string {
	switch {
	case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		return "websocket"
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc"):
		return "grpc"
	case r.ProtoMajor == 2:
		return "h2c"
	}
	return "http"
}

// grpcStatus reads grpc-status from the trailers (or a trailers-only
// response's headers) that the reverse proxy copied into h.
func grpcStatus(h http.Header) int {
	v := h.Get("Grpc-Status")
	if v == "" {
		v = h.Get(http.TrailerPrefix + "Grpc-Status")
	}
	if v == "" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// countingBody counts request body bytes.
type countingBody struct {
	rc io.ReadCloser
	n  atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

// recordingWriter notes the status, time to first byte and bytes of the
// response, and keeps Flush and Hijack working through Unwrap.
type recordingWriter struct {
	http.ResponseWriter
	start    time.Time
	status   int
	ttfb     time.Duration
	bytes    atomic.Int64
	hijacked *countingConn
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		w.status = code
		w.ttfb = time.Since(w.start)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
		w.ttfb = time.Since(w.start)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes.Add(int64(n))
	return n, err
}

func (w *recordingWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands over the client connection for an upgrade (WebSocket),
// counting the bytes that then flow through it.
func (w *recordingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = &countingConn{Conn: c}
	return w.hijacked, brw, nil
}

// countingConn counts bytes in (read from the client) and out.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}
