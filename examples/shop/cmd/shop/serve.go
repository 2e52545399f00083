package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/devstack/devstack/examples/shop/internal/service"
)

// shutdownTimeout is how long in-flight requests get to finish on SIGTERM.
const shutdownTimeout = 3 * time.Second

func runServe(ctx context.Context, e env, args []string) error {
	if len(args) != 1 {
		return &usageError{"serve takes exactly one service name"}
	}
	name := args[0]
	port, ok := service.DefaultPort(name)
	if !ok {
		return &usageError{fmt.Sprintf("unknown service %q", name)}
	}
	addr := listenAddr(e.getenv, port)
	log := slog.New(slog.NewTextHandler(e.stdout, nil)).With("service", name)
	h, err := service.New(service.Config{
		Name:         name,
		OrdersURL:    e.getenv("ORDERS_URL"),
		InventoryURL: e.getenv("INVENTORY_URL"),
		PaymentsURL:  e.getenv("PAYMENTS_URL"),
		FraudURL:     e.getenv("FRAUD_URL"),
		Logger:       log,
	})
	if err != nil {
		return fmt.Errorf("configuring %s: %w", name, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// err names the address already ("listen tcp 127.0.0.1:18080: bind: ...").
		return fmt.Errorf("serving %s: %w (set PORT or LISTEN_ADDR to pick another address)", name, err)
	}
	return serve(ctx, ln, h, log)
}

// listenAddr is LISTEN_ADDR if set, else $LISTEN_HOST:$PORT, where
// LISTEN_HOST defaults to 127.0.0.1 and PORT to defaultPort.
func listenAddr(getenv func(string) string, defaultPort int) string {
	if a := getenv("LISTEN_ADDR"); a != "" {
		return a
	}
	port := getenv("PORT")
	if port == "" {
		port = strconv.Itoa(defaultPort)
	}
	return net.JoinHostPort(listenHost(getenv), port)
}

// listenHost is LISTEN_HOST, else 127.0.0.1. The image sets 0.0.0.0, so
// that a container is reachable on the port PORT names, as a process is
// on loopback.
func listenHost(getenv func(string) string) string {
	if h := getenv("LISTEN_HOST"); h != "" {
		return h
	}
	return "127.0.0.1"
}

// serve runs h on ln until ctx is done, then shuts down gracefully, giving
// in-flight requests shutdownTimeout to finish before dropping them.
func serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still running after the shutdown timeout; dropping them", "timeout", shutdownTimeout)
		_ = srv.Close() // returns the listener's close error, already reported by Shutdown
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	}
	return nil
}
