package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/devstack/devstack/examples/shop/internal/tracectx"
)

// Failure is the JSON body of every non-2xx answer (except /healthz).
type Failure struct {
	// Service is the service that sent this answer.
	Service string `json:"service"`
	// Hop is the service where the failure started; it stays the same as the
	// failure travels up the chain.
	Hop string `json:"hop"`
	// Status is the status Hop answered with; 0 when Hop could not be reached.
	Status int `json:"status,omitempty"`
	// Message says what went wrong.
	Message string `json:"error"`

	code    int  // status of the immediate upstream answer; 0 for a transport error
	timeout bool // the call to the immediate upstream timed out
}

func (f *Failure) Error() string { return f.Hop + ": " + f.Message }

// maxBody bounds how much of an upstream answer is read.
const maxBody = 1 << 20

// call sends method path?q to the upstream service hop and returns its 2xx
// JSON body. Any other outcome is a *Failure.
func (s *server) call(r *http.Request, hop, method, path string, q url.Values) (json.RawMessage, error) {
	u := s.upstreams[hop] + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), method, u, nil)
	if err != nil {
		return nil, &Failure{Hop: hop, Message: fmt.Sprintf("building request to %s: %v", u, err)}
	}
	if span, ok := tracectx.FromContext(r.Context()); ok && s.propagate {
		span.Inject(req.Header)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, &Failure{Hop: hop, Message: fmt.Sprintf("calling %s: %v", hop, err), timeout: isTimeout(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, &Failure{Hop: hop, Message: fmt.Sprintf("reading answer from %s: %v", hop, err), code: resp.StatusCode, timeout: isTimeout(err)}
	}
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	f := &Failure{}
	if json.Unmarshal(body, f) != nil || f.Hop == "" {
		// Not one of ours (a proxy in between, say): blame the hop we called.
		f = &Failure{Hop: hop, Status: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	}
	f.code = resp.StatusCode
	return nil, f
}

// fail answers for an upstream error: 4xx answers pass through unchanged (the
// client asked for something wrong), timeouts (here or further down) become
// 504 and anything else 502, always naming the hop where the failure started.
func (s *server) fail(w http.ResponseWriter, err error) {
	var f *Failure
	if !errors.As(err, &f) {
		f = &Failure{Hop: s.name, Message: err.Error()}
	}
	status := http.StatusBadGateway
	switch {
	case f.code >= 400 && f.code < 500:
		status = f.code
	case f.timeout || f.code == http.StatusGatewayTimeout:
		status = http.StatusGatewayTimeout
	}
	s.writeFailure(w, status, f)
}

func (s *server) writeFailure(w http.ResponseWriter, status int, f *Failure) {
	out := *f
	out.Service = s.name
	writeJSON(w, status, &out)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
