package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// ReloadPlugin is the name of the plugin that watches files for hot
// reload.
const ReloadPlugin = "reload"

// WatchStatus is the hot reload plugin's answer to POST /v1/watch.
type WatchStatus struct {
	Watching bool `json:"watching"`
	Rules    int  `json:"rules"`
	Batches  int  `json:"batches"`
	// LastError is the last action that failed (a sync, an exec).
	LastError string `json:"last_error,omitempty"`
}

// POST /v1/watch {"on": true|false} starts or stops hot reload.
func (s *Server) watchRoutes(mux *http.ServeMux) {
	mux.Handle("POST /v1/watch", s.auth(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
		var req struct {
			On *bool `json:"on"`
		}
		if err == nil {
			err = json.Unmarshal(b, &req)
		}
		if err != nil || req.On == nil {
			writeError(w, &apiError{http.StatusBadRequest, `POST /v1/watch takes {"on": true} or {"on": false}`})
			return
		}
		if !s.hasPlugin(ReloadPlugin) {
			writeError(w, &apiError{http.StatusConflict, "nothing to watch: no service of this project has a develop.watch section (see README, Hot reload)"})
			return
		}
		s.pluginCommand(w, r, ReloadPlugin, "watch", b)
	}))
}

func (s *Server) hasPlugin(name string) bool {
	if s.Plugins == nil {
		return false
	}
	for _, st := range s.Plugins.Status() {
		if st.Name == name {
			return true
		}
	}
	return false
}

// Watch starts (on) or stops hot reload in the supervisor.
func (c *Client) Watch(ctx context.Context, on bool) (WatchStatus, error) {
	var out WatchStatus
	if err := c.call(ctx, http.MethodPost, "/v1/watch", map[string]bool{"on": on}, &out); err != nil {
		return out, fmt.Errorf("watch: %w", err)
	}
	return out, nil
}
