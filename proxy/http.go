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

	"github.com/devstack/devstack/proxy/fault"
	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// ServeHTTP runs the pipeline for a request net/http's server read (h2c,
// gRPC): link the hop, decide its fault, stamp headers, forward, record.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := rt.s
	cfg := rt.cfg.Load()
	start := time.Now()
	ci, _ := r.Context().Value(connKey{}).(*connInfo)

	sp, tc := s.begin(nil, propagate.Extract(r.Header), func([]trace.Header) []trace.Header { return s.redact.Headers(r.Header) }, ci, cfg.Service, protocolOf(r), r.Method, requestTarget(r), start)
	var d *fault.Decision
	if s.faultActive(cfg.Service) {
		d = new(fault.Decision)
		if !s.decide(sp, ci, httpHeaders(r.Header), d) {
			d = nil
		}
	}
	if d != nil {
		f := &httpFault{s: s, w: w, r: r}
		if inject(sp, d, f) {
			s.finishHop(sp, ci)
			if f.abort {
				// Ends the stream (HTTP/2: RST_STREAM) without an answer.
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
	propagate.Inject(r.Header, tc, s.opts.Formats)

	body := &countingBody{rc: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	var abort bool // a fault on the response ends the stream unanswered
	rw := &recordingWriter{ResponseWriter: w, start: start}
	if d != nil {
		rw.pace = newThrottle(d)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = cfg.Upstream
			pr.Out.Host = pr.In.Host
		},
		Transport: s.h1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, errFaultOnResponse) {
				f := &httpFault{s: s, w: w, r: r}
				stop(sp, d, f)
				abort = f.abort
				return
			}
			rt.upstreamError(w, r, err, sp)
		},
		ModifyResponse: func(resp *http.Response) error {
			if d != nil {
				s.hold(r.Context(), d.RespDelay)
				if d.StopOnResponse && d.Stop != fault.KindNone {
					resp.Body.Close()
					return errFaultOnResponse // ErrorHandler carries it out
				}
			}
			s.respond(sp, resp.StatusCode, r.Method, resp.Header.Get("Content-Type"),
				func([]trace.Header) []trace.Header { return s.redact.Headers(resp.Header) })
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// The upgrade is written on the hijacked connection, never
				// through WriteHeader.
				rw.status, rw.ttfb = resp.StatusCode, time.Since(start)
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
	if abort {
		panic(http.ErrAbortHandler)
	}
}

// errFaultOnResponse hands a terminal fault on the response to the
// reverse proxy's ErrorHandler, which carries it out.
var errFaultOnResponse = errors.New("fault on the response")

// upstreamError answers a request the service could not take, naming the
// service and why, and records it on the span.
func (rt *route) upstreamError(w http.ResponseWriter, r *http.Request, err error, sp *trace.Span) {
	cfg := rt.cfg.Load()
	status, msg := failure(cfg, err)
	switch {
	case strings.Contains(msg, "connection reset"):
		msg = "connection reset by " + cfg.Service
	case isRefused(err):
		status, msg = dialFailure(cfg, err)
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

// httpFault is the net/http path's part in carrying out a Decision.
type httpFault struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	abort bool // end the stream without an answer, once the hop is recorded
}

func (f *httpFault) wait(d time.Duration) bool { return f.s.hold(f.r.Context(), d) }

func (f *httpFault) answer(status int, body string, grpc int) {
	h := f.w.Header()
	h.Set("X-Devstack-Fault", "injected")
	if grpc > 0 {
		// A trailers-only gRPC answer: the status in the headers.
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpc))
		h.Set("Grpc-Message", body)
		f.w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	f.w.WriteHeader(status)
	io.WriteString(f.w, body)
}

func (f *httpFault) reset() { f.abort = true }

func (f *httpFault) hang(d time.Duration) {
	if d <= 0 {
		<-f.r.Context().Done()
	} else {
		f.wait(d)
	}
	f.abort = true
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
	pace     *throttle // an injected bandwidth limit, or nil
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
	if w.pace != nil {
		return w.pacedWrite(p)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes.Add(int64(n))
	return n, err
}

// pacedWrite writes p a chunk at a time, each flushed to the client and
// held back to the injected rate.
func (w *recordingWriter) pacedWrite(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		k := w.pace.chunk(len(p) - done)
		n, err := w.ResponseWriter.Write(p[done : done+k])
		w.bytes.Add(int64(n))
		done += n
		if err != nil {
			return done, err
		}
		w.Flush()
		if w.pace.exhausted() {
			panic(http.ErrAbortHandler) // limit-data: the stream ends here
		}
		w.pace.pace(n)
	}
	return done, nil
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
