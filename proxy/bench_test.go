package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
)

// discardRecorder drops spans: it isolates the proxy's own per-request cost.
type discardRecorder struct{}

func (discardRecorder) Record(*trace.Span) {}

// BenchmarkHop measures one HTTP/1.1 request through the proxy's fast path
// on a kept-alive connection, against the same request sent directly, so
// the difference is the proxy's cost:
//
//	go test -run '^$' -bench Hop -benchmem ./proxy/
func BenchmarkHop(b *testing.B) {
	body := strings.Repeat("x", 64)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer up.Close()
	s := New(Options{Recorder: discardRecorder{}})
	defer s.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if err := s.SetRoutes([]Route{{Service: "up", Listen: addr, Upstream: hostOf(up.URL)}}); err != nil {
		b.Fatal(err)
	}
	req := "GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
	run := func(b *testing.B, target string) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			c, err := net.Dial("tcp", target)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for pb.Next() {
				if _, err := io.WriteString(c, req); err != nil {
					b.Error(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, hostOf(up.URL)) })
	b.Run("proxy", func(b *testing.B) { run(b, addr) })
}

// BenchmarkServeOneCPU is the proxy's own work per request without the
// sockets: parse, link, stamp, write the head to go upstream, record.
func BenchmarkServeOneCPU(b *testing.B) {
	s := New(Options{Recorder: discardRecorder{}})
	raw := "GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
	b.ReportAllocs()
	var h head
	th := &hopHeaders{}
	var out bytes.Buffer
	sr := strings.NewReader(raw)
	br := bufio.NewReader(sr)
	for b.Loop() {
		sr.Reset(raw)
		br.Reset(sr)
		if err := readHead(br, &h); err != nil {
			b.Fatal(err)
		}
		sp, _ := s.requestHop(nil, &h, th, th.extract(&h, nil), nil, "x", time.Now())
		out.Reset()
		writeRequestHead(&out, &h, th.lines, s.opts.Formats, false)
		s.finishHop(sp, nil)
	}
}
