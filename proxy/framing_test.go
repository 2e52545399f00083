package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// framingCases are requests whose body length two readers could see
// differently (RFC 9112): the proxy answers them itself, and the service
// gets nothing of them. nginx is nginx 1.22's answer, for comparison
// (checked against a real nginx by TestFramingAsNginxAnswers).
var framingCases = []struct {
	name, req    string
	want, nginx  int
	reachService bool
}{
	{"Content-Length and Transfer-Encoding (CL.TE smuggling)",
		"POST /smuggle-clte HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n", 400, 400, false},
	{"two different Content-Lengths",
		"POST /smuggle-cl2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, 400, false},
	{"the same Content-Length twice",
		"POST /smuggle-cl2same HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, 400, false},
	{"Content-Length: +5",
		"POST /smuggle-plus HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400, 400, false},
	{"space before the colon",
		"POST /smuggle-space HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400, 400, false},
	{"tab before the colon",
		"POST /smuggle-tab HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\nhello", 400, 400, false},
	{"NUL in a value",
		"GET /smuggle-nul HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400, 400, false},
	{"bare CR in a value",
		"GET /smuggle-cr HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400, 400, false},
	{"chunked not last",
		"POST /smuggle-notlast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, 501, false},
	{"chunked twice",
		"POST /smuggle-twice HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 400, false},
	{"an unknown coding only",
		"POST /smuggle-foo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n", 400, 501, false},
	{"a coding besides chunked",
		"POST /smuggle-gzip HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, 501, false},
	// Controls: what is well framed goes through.
	{"chunked", "POST /ok-chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, 200, true},
	{"Content-Length", "POST /ok-cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 200, 200, true},
}

// recordingUpstream is a service that records every byte it is sent, and
// answers each request it reads with 200.
type recordingUpstream struct {
	addr string
	mu   sync.Mutex
	got  bytes.Buffer
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.addr = rawUpstream(t, func(c net.Conn, _ *bufio.Reader, _ int) {
		br := bufio.NewReader(io.TeeReader(c, writerFunc(func(p []byte) (int, error) {
			u.mu.Lock()
			defer u.mu.Unlock()
			return u.got.Write(p)
		})))
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, r.Body)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return u
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (u *recordingUpstream) saw(s string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return bytes.Contains(u.got.Bytes(), []byte(s))
}

// exchange sends raw on a new connection to addr (after a first, good
// request when warm, so that the event loop serves the second) and
// returns the status of the answer.
func exchange(t *testing.T, addr, raw string, warm bool) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if warm {
		io.WriteString(c, "GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the warm-up request: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// Ambiguous framing never reaches the service, on the goroutine path (a
// connection's first request) and in the event loop (the next ones):
// the client gets 400 or 501, never a 502, and the span-less refusal
// leaves the service's received bytes without the request.
func TestAmbiguousFramingNeverReachesTheService(t *testing.T) {
	up := newRecordingUpstream(t)
	s := New(Options{Recorder: newMemRecorder()})
	addr := front(t, s, Route{Service: "api", Upstream: up.addr, Protocol: ProtoHTTP})[0]
	for _, tc := range framingCases {
		for _, warm := range []bool{false, true} {
			if got := exchange(t, addr, tc.req, warm); got != tc.want {
				t.Errorf("%s (kept alive: %v): the proxy answered %d, want %d", tc.name, warm, got, tc.want)
			}
		}
		path := tc.req[strings.IndexByte(tc.req, ' ')+1:]
		path = path[:strings.IndexByte(path, ' ')]
		if saw := up.saw(path + " "); saw != tc.reachService {
			t.Errorf("%s: the service saw it: %v, want %v", tc.name, saw, tc.reachService)
		}
	}
	if up.saw("/admin") {
		t.Error("a request smuggled in a body reached the service")
	}
}

// nginx, in front of the same recording service, answers as the table
// says: the comparison stays true as nginx changes.
func TestFramingAsNginxAnswers(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nginx is not installed (apt-get install nginx-light): .ci/run installs it")
		}
		t.Skip("nginx is not installed (apt-get install nginx-light)")
	}
	up := newRecordingUpstream(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	conf := fmt.Sprintf(`daemon off;
master_process off;
error_log stderr crit;
pid %[1]s/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  server {
    listen %[2]s;
    location / { proxy_pass http://%[3]s; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`, dir, listen, up.addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %s", listen, stderr.String())
		}
	}
	for _, tc := range framingCases {
		if got := exchange(t, listen, tc.req, false); got != tc.nginx {
			t.Errorf("%s: nginx answered %d; the table says %d", tc.name, got, tc.nginx)
		}
	}
	if up.saw("/smuggle") || up.saw("/admin") {
		t.Error("nginx let an ambiguous request through")
	}
}
