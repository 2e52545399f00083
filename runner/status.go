package runner

import (
	"fmt"
	"time"
)

// State is where a service is in its lifecycle.
type State string

// States a service goes through. Waiting → Building → Starting → Running →
// (Exited | Restarting | Stopped | Completed | Failed).
const (
	StateCreated    State = "created"    // known, not asked to start
	StateWaiting    State = "waiting"    // waiting on depends_on conditions
	StateBuilding   State = "building"   // running its build step
	StateRunning    State = "running"    // instance alive
	StateRestarting State = "restarting" // exited, restart scheduled
	StateExited     State = "exited"     // exited, no restart by policy
	StateCompleted  State = "completed"  // exited 0 and is not restarted
	StateStopping   State = "stopping"   // stop requested, waiting for exit
	StateStopped    State = "stopped"    // stopped on request
	StateFailed     State = "failed"     // could not start (build, deps, backend)
	StateExternal   State = "external"   // the user runs it, outside devstack (external.go)
)

// Health is a service's healthcheck verdict.
type Health string

// Health values; HealthNone means the service declares no healthcheck.
const (
	HealthNone      Health = ""
	HealthStarting  Health = "starting"
	HealthHealthy   Health = "healthy"
	HealthUnhealthy Health = "unhealthy"
	// An external service's: whether its port answers (the supervisor
	// looks when asked for statuses).
	HealthUp   Health = "up"
	HealthDown Health = "down"
)

// ServiceStatus is a snapshot of one service, as `ps` shows it.
type ServiceStatus struct {
	Name      string     `json:"name"`
	Backend   string     `json:"backend"`
	State     State      `json:"state"`
	Health    Health     `json:"health,omitempty"`
	ID        string     `json:"id,omitempty"` // pid or container id
	Ports     []string   `json:"ports,omitempty"`
	Restarts  int        `json:"restarts"`
	LastExit  *ExitInfo  `json:"last_exit,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	Error     string     `json:"error,omitempty"`
	// Warnings are findings about the service, e.g. that it does not
	// propagate trace context.
	Warnings []string `json:"warnings,omitempty"`
	// Reloads counts the service's hot reloads (Replace) that went
	// through; ReloadP50 is their median time, from the change seen to
	// the new instance answering; ReloadError says why the last one
	// failed (the old instance kept serving), cleared by the next success.
	Reloads     int           `json:"reloads,omitempty"`
	ReloadP50   time.Duration `json:"reload_p50_ns,omitempty"`
	ReloadError string        `json:"reload_error,omitempty"`
}

// Intent says why a service's status changes, for those who follow the
// stream of changes (plugins): whether a service going away comes back.
type Intent string

const (
	// IntentNone: the change is what it says.
	IntentNone Intent = ""
	// IntentComingBack: the service is being replaced or restarted on
	// request; an instance that stops now is followed by a new one.
	IntentComingBack Intent = "coming back"
)

// Change is one status change of a service (Options.OnStatus).
type Change struct {
	Service string
	Status  ServiceStatus
	Intent  Intent
	// Cause is what the change is for ("main.go changed"), if known.
	Cause string
	At    time.Time
}

// ExitInfo is the JSON form of the last Exit.
type ExitInfo struct {
	Code   int       `json:"code"`
	Signal string    `json:"signal,omitempty"`
	At     time.Time `json:"at"`
	Error  string    `json:"error,omitempty"`
	// OOM: the kernel's OOM killer ended it, at MemoryLimit (bytes).
	OOM         bool  `json:"oom,omitempty"`
	MemoryLimit int64 `json:"memory_limit,omitempty"`
}

// String says how the instance ended: "exit code 1", "signal: killed"
// (as Go words it), or the error waiting on it. A nil ExitInfo is "no
// exit recorded".
func (e *ExitInfo) String() string {
	switch {
	case e == nil:
		return "no exit recorded"
	case e.OOM:
		return oomText(e.MemoryLimit)
	case e.Error != "":
		return e.Error
	case e.Signal != "":
		return "signal: " + e.Signal
	}
	return fmt.Sprintf("exit code %d", e.Code)
}

func exitInfo(e Exit) *ExitInfo {
	ei := &ExitInfo{Code: e.Code, Signal: e.Signal, At: e.At, OOM: e.OOM, MemoryLimit: e.MemLimit}
	if e.Err != nil {
		ei.Error = e.Err.Error()
	}
	return ei
}

// Ready reports whether the service counts as up: running and healthy (or
// without healthcheck), or completed.
func (s ServiceStatus) Ready() bool {
	switch s.State {
	case StateCompleted, StateExternal:
		return true
	case StateRunning:
		return s.Health == HealthNone || s.Health == HealthHealthy
	}
	return false
}
