package proc

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// PortFree reports whether a TCP listener could bind host:port now, by
// binding and closing one. The error wraps ErrPortInUse when the address is
// taken; pair it with PortHolder to name the holder. The answer can be stale
// by the time the service binds: it is a friendly early check, not a lock.
func PortFree(host string, port int) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: %w", ErrPortInUse, err)
		}
		return fmt.Errorf("probing %s: %w", addr, err)
	}
	if err := ln.Close(); err != nil {
		return fmt.Errorf("probing %s: closing: %w", addr, err)
	}
	return nil
}
