package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/devstack/devstack/examples/shop/internal/service"
)

func envOf(vars map[string]string) env {
	return env{stdout: io.Discard, getenv: func(k string) string { return vars[k] }}
}

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "sick", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		name string
		args []string
		vars map[string]string
		want int
	}{
		{"PORT", nil, map[string]string{"PORT": port}, 0},
		{"LISTEN_ADDR wins", nil, map[string]string{"PORT": "1", "LISTEN_ADDR": ":" + port}, 0},
		{"wildcard LISTEN_HOST", nil, map[string]string{"PORT": port, "LISTEN_HOST": "0.0.0.0"}, 0},
		{"full URL", []string{srv.URL + "/healthz"}, nil, 0},
		{"unhealthy path", []string{"/ready"}, map[string]string{"PORT": port}, 1},
		{"nobody listening", []string{closed.URL + "/healthz"}, nil, 1},
		{"no port", nil, nil, 1},
		{"too many args", []string{"/a", "/b"}, map[string]string{"PORT": port}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(t.Context(), append([]string{"probe"}, tt.args...), envOf(tt.vars))
			if got := exitCode(err); got != tt.want {
				t.Errorf("exit code %d (err %v), want %d", got, err, tt.want)
			}
		})
	}
}

func TestProbeURL(t *testing.T) {
	tests := []struct{ arg, port, host, listen, want string }{
		{"", "18080", "", "", "http://127.0.0.1:18080/healthz"},
		{"ready", "18080", "", "", "http://127.0.0.1:18080/ready"},
		{"/healthz", "", "", ":8080", "http://127.0.0.1:8080/healthz"},
		{"", "", "", "0.0.0.0:8080", "http://127.0.0.1:8080/healthz"},
		{"", "", "", "[::1]:8080", "http://[::1]:8080/healthz"},
		{"", "18082", "0.0.0.0", "", "http://127.0.0.1:18082/healthz"},
		{"", "18082", "::1", "", "http://[::1]:18082/healthz"},
		{"", "18082", "0.0.0.0", "127.0.0.2:9000", "http://127.0.0.2:9000/healthz"},
		{"http://svc:9/h", "", "", "", "http://svc:9/h"},
	}
	for _, tt := range tests {
		got, err := probeURL(tt.arg, tt.port, tt.host, tt.listen)
		if err != nil || got != tt.want {
			t.Errorf("probeURL(%q, %q, %q, %q) = %q, %v; want %q", tt.arg, tt.port, tt.host, tt.listen, got, err, tt.want)
		}
	}
}

func TestListenAddr(t *testing.T) {
	tests := []struct {
		vars map[string]string
		want string
	}{
		{nil, "127.0.0.1:18083"},
		{map[string]string{"PORT": "9000"}, "127.0.0.1:9000"},
		{map[string]string{"PORT": "9000", "LISTEN_ADDR": ":8080"}, ":8080"},
		{map[string]string{"PORT": "9000", "LISTEN_HOST": "0.0.0.0"}, "0.0.0.0:9000"},
		{map[string]string{"LISTEN_HOST": "0.0.0.0"}, "0.0.0.0:18083"},
		{map[string]string{"LISTEN_HOST": "::", "LISTEN_ADDR": "127.0.0.1:1"}, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		if got := listenAddr(envOf(tt.vars).getenv, 18083); got != tt.want {
			t.Errorf("listenAddr(%v) = %q, want %q", tt.vars, got, tt.want)
		}
	}
}

func TestServeNamesTheAddressItCannotBind(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	err = run(t.Context(), []string{"serve", "fraud"}, envOf(map[string]string{"LISTEN_ADDR": addr}))
	if err == nil || !strings.Contains(err.Error(), addr) || exitCode(err) != 1 {
		t.Errorf("serve on a taken address: err %v (exit %d), want exit 1 naming %s", err, exitCode(err), addr)
	}
}

func TestServeShutsDownWhenCanceled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, err := service.New(service.Config{Name: service.Inventory})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, ln, h, slog.New(slog.DiscardHandler)) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz = %s, want 200", resp.Status)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("serve after cancel = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts connections after shutdown")
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"deploy"}, {"serve"}, {"serve", "billing"}} {
		if err := run(t.Context(), args, envOf(nil)); exitCode(err) != 2 {
			t.Errorf("run(%q) = %v (exit %d), want a usage error (exit 2)", args, err, exitCode(err))
		}
	}
}
