package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// probeTimeout bounds a whole probe, connection included.
const probeTimeout = 2 * time.Second

func runProbe(ctx context.Context, e env, args []string) error {
	if len(args) > 1 {
		return &usageError{"probe takes at most one PATH or URL"}
	}
	arg := ""
	if len(args) == 1 {
		arg = args[0]
	}
	target, err := probeURL(arg, e.getenv("PORT"), e.getenv("LISTEN_HOST"), e.getenv("LISTEN_ADDR"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("probing %s: %w", target, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probing: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // lets the connection close cleanly
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("probing %s: got %s, want 2xx", target, resp.Status)
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", target, resp.Status)
	return nil
}

// probeURL turns the probe argument into a URL: a full http(s):// URL is
// used as is; otherwise arg is a path (default /healthz) on the local
// address the server listens on: LISTEN_ADDR if set, else LISTEN_HOST and
// PORT. A wildcard host (0.0.0.0, ::, empty) is probed on 127.0.0.1.
func probeURL(arg, port, listenHost, listenAddr string) (string, error) {
	if strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		return arg, nil
	}
	path := arg
	if path == "" {
		path = "/healthz"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	h := listenHost
	if listenAddr != "" {
		var err error
		if h, port, err = net.SplitHostPort(listenAddr); err != nil {
			return "", fmt.Errorf("probing: LISTEN_ADDR %q: %w", listenAddr, err)
		}
	}
	host := "127.0.0.1"
	if h != "" && h != "0.0.0.0" && h != "::" {
		host = h
	}
	if port == "" {
		return "", errors.New("probing: PORT is not set: set PORT or LISTEN_ADDR to the server's, or pass a full http:// URL")
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
