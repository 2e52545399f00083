package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/devstack/devstack/proxy/fault"
)

// FaultPlugin is the name of the plugin that owns fault rules.
const FaultPlugin = "faultinject"

// Plugins is the supervisor's plugin host as the API sees it.
type Plugins interface {
	Status() []PluginStatus
	// Command runs a plugin command; a *PluginError says whose fault a
	// failure is.
	Command(ctx context.Context, plugin, name string, args []byte) ([]byte, error)
}

// PluginStatus is one plugin's line in `devstack plugins`.
type PluginStatus struct {
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	State     string `json:"state"`
	Builtin   bool   `json:"builtin"`
	Path      string `json:"path,omitempty"`
	Pid       int    `json:"pid,omitempty"`
	Restarts  int    `json:"restarts"`
	Rules     int    `json:"rules"`
	LastError string `json:"last_error,omitempty"`
}

// PluginError is a failed plugin command: the plugin's own answer to a
// bad request (400), or no plugin there to answer (503).
type PluginError struct {
	Unavailable bool
	Msg         string
}

func (e *PluginError) Error() string { return e.Msg }

// FaultList is what GET /v1/faults answers.
type FaultList struct {
	Rules         []fault.Rule `json:"rules"`
	HeaderTrigger bool         `json:"header_trigger"`
}

// GET    /v1/plugins         []PluginStatus
// GET    /v1/faults          FaultList
// POST   /v1/faults          fault.Spec → the fault.Rule added
// PUT    /v1/faults          fault.Scenario → FaultList (replaces every rule)
// DELETE /v1/faults/{id}     the fault.Rule removed
// DELETE /v1/faults          {"removed": N}
func (s *Server) pluginRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/plugins", func(w http.ResponseWriter, r *http.Request) {
		var st []PluginStatus
		if s.Plugins != nil {
			st = s.Plugins.Status()
		}
		if st == nil {
			st = []PluginStatus{}
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		s.faultCommand(w, r, "ls", nil)
	})
	body := func(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeError(w, &apiError{http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err)})
			return nil, false
		}
		return b, true
	}
	mux.Handle("POST /v1/faults", s.auth(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := body(w, r); ok {
			s.faultCommand(w, r, "add", b)
		}
	}))
	mux.Handle("PUT /v1/faults", s.auth(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := body(w, r); ok {
			s.faultCommand(w, r, "apply", b)
		}
	}))
	mux.Handle("DELETE /v1/faults/{id}", s.auth(func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.Marshal(map[string]string{"id": r.PathValue("id")})
		s.faultCommand(w, r, "rm", b)
	}))
	mux.Handle("DELETE /v1/faults", s.auth(func(w http.ResponseWriter, r *http.Request) {
		s.faultCommand(w, r, "clear", nil)
	}))
}

func (s *Server) faultCommand(w http.ResponseWriter, r *http.Request, name string, args []byte) {
	if s.Plugins == nil {
		writeError(w, &apiError{http.StatusServiceUnavailable, "this supervisor runs no plugins, so no faults"})
		return
	}
	s.pluginCommand(w, r, FaultPlugin, name, args)
}

// pluginCommand runs a plugin's command and answers with its JSON result:
// a plugin that is not running is 503, its own refusal 400.
func (s *Server) pluginCommand(w http.ResponseWriter, r *http.Request, plugin, name string, args []byte) {
	out, err := s.Plugins.Command(r.Context(), plugin, name, args)
	var pe *PluginError
	switch {
	case errors.As(err, &pe) && pe.Unavailable:
		writeError(w, &apiError{http.StatusServiceUnavailable, pe.Msg})
	case errors.As(err, &pe):
		writeError(w, &apiError{http.StatusBadRequest, pe.Msg})
	case err != nil:
		writeError(w, err)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	}
}

// Plugins lists the supervisor's plugins.
func (c *Client) Plugins(ctx context.Context) ([]PluginStatus, error) {
	var out []PluginStatus
	return out, c.getJSON(ctx, "/v1/plugins", &out)
}

// Faults lists the fault rules in force.
func (c *Client) Faults(ctx context.Context) (FaultList, error) {
	var out FaultList
	return out, c.getJSON(ctx, "/v1/faults", &out)
}

// AddFault adds a fault and returns its rule, id filled in.
func (c *Client) AddFault(ctx context.Context, s fault.Spec) (fault.Rule, error) {
	var out fault.Rule
	return out, c.call(ctx, http.MethodPost, "/v1/faults", s, &out)
}

// ApplyFaults replaces every fault with a scenario's.
func (c *Client) ApplyFaults(ctx context.Context, sc fault.Scenario) (FaultList, error) {
	var out FaultList
	return out, c.call(ctx, http.MethodPut, "/v1/faults", sc, &out)
}

// RemoveFault removes one fault by id and returns it.
func (c *Client) RemoveFault(ctx context.Context, id string) (fault.Rule, error) {
	var out fault.Rule
	return out, c.call(ctx, http.MethodDelete, "/v1/faults/"+url.PathEscape(id), nil, &out)
}

// ClearFaults removes every fault and returns how many there were.
func (c *Client) ClearFaults(ctx context.Context) (int, error) {
	var out struct {
		Removed int `json:"removed"`
	}
	return out.Removed, c.call(ctx, http.MethodDelete, "/v1/faults", nil, &out)
}

// call makes an authorized request with body as JSON (none when nil) and
// decodes the JSON answer into out.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("calling the supervisor: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the answer to %s %s: %w", method, path, err)
	}
	return nil
}
