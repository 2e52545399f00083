package proxy

import (
	"errors"
	"net/http"
)

// away is why a service does not answer by itself: down (SetDown), or run
// by the user (SetExternal).
type away struct {
	why      string
	external bool
}

// SetExternal says that the user runs service outside devstack, and how
// to start it (why, to follow "<service> is"). A request that it refuses
// is held for ExternalHold, in case the user is starting it, then
// answered 502 with that text: the service exists and is expected, but
// nobody runs it. Why "" clears it, as SetDown's does.
func (s *Server) SetExternal(service, why string) {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	if why == "" {
		delete(s.down, service)
	} else {
		s.down[service] = away{why: why, external: true}
	}
}

// refusedStatus is the status of a request whose service refused it:
// 502 for a service the user runs and does not, else 503 (down,
// restarting, not listening yet).
func refusedStatus(err error) int {
	if down, ok := errors.AsType[*downError](err); ok && down.external {
		return http.StatusBadGateway
	}
	return http.StatusServiceUnavailable
}
