// Command w3ctc runs the real W3C trace-context test harness (test/test.py
// of github.com/w3c/trace-context) through devstack's proxy, from a clone
// of that repository outside this one (nothing is fetched):
//
//	git clone https://github.com/w3c/trace-context /tmp/trace-context
//	pip install aiohttp
//	go run ./bench/w3ctc -suite /tmp/trace-context/test
//
// (bench/w3c-trace-context.sh does the same.) The topology is the suite's
// with devstack in both places a vendor's tracer would be: the harness
// calls the service under test through a proxy route, and the service
// calls the harness back through another route, forwarding the
// traceparent and tracestate it received. STRICT_LEVEL is 2. The exit
// status is the harness's. proxy/w3c_test.go runs the same cases as a Go
// table in `go test`.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/trace"
)

type discard struct{}

func (discard) Record(*trace.Span) {}

func main() {
	suite := flag.String("suite", "", "the test/ directory of a w3c/trace-context clone")
	python := flag.String("python", "python3", "the Python interpreter (with aiohttp)")
	flag.Parse()
	if *suite == "" {
		fmt.Fprintln(os.Stderr, "w3ctc: -suite DIR is required: the test/ directory of a clone of https://github.com/w3c/trace-context")
		os.Exit(2)
	}
	if _, err := os.Stat(filepath.Join(*suite, "test.py")); err != nil {
		fmt.Fprintf(os.Stderr, "w3ctc: %s has no test.py: %v; give the test/ directory of the clone\n", *suite, err)
		os.Exit(2)
	}
	if err := run(*suite, *python); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "w3ctc:", err)
		os.Exit(1)
	}
}

func run(suite, python string) error {
	harnessBind, harnessFront, svcFront := free(), free(), free()
	// The service under test: POST /test with a list of actions; each is
	// POSTed to its url with its arguments and the context received.
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(svc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var actions []struct {
			URL       string          `json:"url"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := json.NewDecoder(r.Body).Decode(&actions); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range actions {
			args := a.Arguments
			if len(args) == 0 || string(args) == "null" {
				args = []byte("[]")
			}
			req, err := http.NewRequest("POST", a.URL, bytes.NewReader(args))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header["Traceparent"] = r.Header.Values("Traceparent")
			req.Header["Tracestate"] = r.Header.Values("Tracestate")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "null")
	}))
	s := proxy.New(proxy.Options{Recorder: discard{}})
	defer s.Close()
	if err := s.SetRoutes([]proxy.Route{
		{Service: "service", Listen: addr(svcFront), Upstream: svc.Addr().String()},
		{Service: "harness", Listen: addr(harnessFront), Upstream: addr(harnessBind)},
	}); err != nil {
		return err
	}
	cmd := exec.Command(python, "test.py", "http://"+addr(svcFront)+"/test")
	cmd.Dir = suite
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "STRICT_LEVEL=2", "HARNESS_HOST=127.0.0.1",
		"HARNESS_PORT="+strconv.Itoa(harnessFront), "HARNESS_BIND_HOST=127.0.0.1", "HARNESS_BIND_PORT="+strconv.Itoa(harnessBind))
	fmt.Printf("w3ctc: harness on :%d behind the proxy's :%d; service under test behind :%d\n", harnessBind, harnessFront, svcFront)
	return cmd.Run()
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// free is a port that was free on 127.0.0.1 a moment ago.
func free() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
