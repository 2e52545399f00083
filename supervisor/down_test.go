package supervisor

import (
	"strings"
	"testing"

	"github.com/devstack/devstack/runner"
)

// Only a service that will not come back by itself is down for the proxy:
// one coming up, running or about to restart keeps its requests held.
func TestWhyDown(t *testing.T) {
	cases := []struct {
		st   runner.ServiceStatus
		want string // "" for not down
	}{
		{runner.ServiceStatus{Name: "orders", State: runner.StateStopped}, "stopped; `devstack start orders` starts it again"},
		{runner.ServiceStatus{Name: "orders", State: runner.StateStopping}, "stopped; `devstack start orders` starts it again"},
		{runner.ServiceStatus{Name: "orders", State: runner.StateExited, LastExit: &runner.ExitInfo{Code: 3}},
			"not running (exit code 3), and its restart policy does not restart it"},
		// Signal is Go's description of it.
		{runner.ServiceStatus{Name: "orders", State: runner.StateExited, LastExit: &runner.ExitInfo{Code: -1, Signal: "killed"}},
			"not running (signal: killed), and its restart policy does not restart it"},
		{runner.ServiceStatus{Name: "orders", State: runner.StateCompleted, LastExit: &runner.ExitInfo{}}, "not running (exit code 0, completed), and it is not restarted"},
		{runner.ServiceStatus{Name: "orders", State: runner.StateFailed, Error: "exec: \"ordersd\": not found"}, "not running: it could not start: exec: \"ordersd\": not found"},
		{runner.ServiceStatus{Name: "orders", State: runner.StateRunning}, ""},
		{runner.ServiceStatus{Name: "orders", State: runner.StateRestarting, LastExit: &runner.ExitInfo{Code: 1}}, ""},
		{runner.ServiceStatus{Name: "orders", State: runner.StateWaiting}, ""},
		{runner.ServiceStatus{Name: "orders", State: runner.StateBuilding}, ""},
		{runner.ServiceStatus{Name: "orders", State: runner.StateCreated}, ""},
	}
	for _, tc := range cases {
		got := whyDown(tc.st)
		if tc.want == "" && got != "" || tc.want != "" && !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: whyDown = %q, want %q", tc.st.State, got, tc.want)
		}
	}
}
