package control

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/proxy/fault"
	"github.com/devstack/devstack/runner"
)

// fakePlugins answers fault commands as the fault plugin would, and
// records them.
type fakePlugins struct {
	calls []string
	down  bool
}

func (f *fakePlugins) Status() []PluginStatus {
	return []PluginStatus{{Name: FaultPlugin, Version: "1.0.0", State: "running", Builtin: true, Restarts: 2}}
}

func (f *fakePlugins) Command(_ context.Context, plugin, name string, args []byte) ([]byte, error) {
	f.calls = append(f.calls, plugin+" "+name+" "+string(args))
	if f.down {
		return nil, &PluginError{Unavailable: true, Msg: "plugin faultinject is restarting; try again in a moment"}
	}
	switch name {
	case "add":
		var s fault.Spec
		if err := json.Unmarshal(args, &s); err != nil {
			return nil, err
		}
		if s.Service != "payments" {
			return nil, &PluginError{Msg: "no service " + s.Service}
		}
		r, _ := s.Rule(time.Now())
		r.ID = "f1"
		return json.Marshal(r)
	case "ls", "apply":
		return json.Marshal(FaultList{Rules: []fault.Rule{{ID: "f1", Service: "payments", Fault: fault.Fault{Kind: fault.Reset}}}, HeaderTrigger: true})
	case "rm":
		return json.Marshal(fault.Rule{ID: "f1", Service: "payments", Fault: fault.Fault{Kind: fault.Reset}})
	case "clear":
		return []byte(`{"removed":3}`), nil
	}
	return nil, &PluginError{Msg: "no command " + name}
}

func serveAPI(t *testing.T, s *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestFaultAPI(t *testing.T) {
	fp := &fakePlugins{}
	sock := serveAPI(t, &Server{Stack: noStack{}, Token: "tok", Plugins: fp})
	ctx := t.Context()
	c, err := Dial(ctx, sock, "tok")
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Plugins(ctx)
	if err != nil || len(st) != 1 || st[0].Restarts != 2 || st[0].Version != "1.0.0" {
		t.Fatalf("plugins %+v %v", st, err)
	}
	r, err := c.AddFault(ctx, fault.Spec{Service: "payments", Latency: "200ms"})
	if err != nil || r.ID != "f1" || r.Fault.Duration != 200*time.Millisecond {
		t.Fatalf("add %+v %v", r, err)
	}
	if _, err := c.AddFault(ctx, fault.Spec{Service: "nope", Latency: "1s"}); err == nil || err.Error() != "no service nope" {
		t.Errorf("add error: %v", err)
	}
	l, err := c.Faults(ctx)
	if err != nil || len(l.Rules) != 1 || !l.HeaderTrigger {
		t.Errorf("ls %+v %v", l, err)
	}
	if _, err := c.ApplyFaults(ctx, fault.Scenario{Rules: []fault.Spec{{Service: "payments", Reset: true}}}); err != nil {
		t.Error(err)
	}
	if r, err := c.RemoveFault(ctx, "f1"); err != nil || r.ID != "f1" {
		t.Errorf("rm %+v %v", r, err)
	}
	if n, err := c.ClearFaults(ctx); err != nil || n != 3 {
		t.Errorf("clear %d %v", n, err)
	}
	want := []string{`add {"service":"payments","latency":"200ms"}`, "add", "ls", "apply", `rm {"id":"f1"}`, "clear"}
	for i, w := range want {
		if i >= len(fp.calls) || !strings.HasPrefix(fp.calls[i], FaultPlugin+" "+w) {
			t.Errorf("call %d: %q, want prefix %q", i, fp.calls, w)
		}
	}

	// Mutations need the token; reads do not.
	bad, err := Dial(ctx, sock, "wrong")
	if err != nil {
		t.Fatal(err)
	}
	n := len(fp.calls)
	if _, err := bad.AddFault(ctx, fault.Spec{Service: "payments", Reset: true}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("add without token: %v", err)
	}
	if _, err := bad.ClearFaults(ctx); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("clear without token: %v", err)
	}
	if _, err := bad.RemoveFault(ctx, "f1"); err == nil {
		t.Error("rm without token worked")
	}
	if len(fp.calls) != n {
		t.Errorf("a call without the token reached the plugin: %q", fp.calls[n:])
	}
	if _, err := bad.Faults(ctx); err != nil {
		t.Errorf("ls without token: %v", err)
	}

	fp.down = true
	_, err = c.Faults(ctx)
	if err == nil || !strings.Contains(err.Error(), "try again") {
		t.Errorf("plugin down: %v", err)
	}
}

func TestFaultAPIWithoutPlugins(t *testing.T) {
	sock := serveAPI(t, &Server{Stack: noStack{}, Token: "tok"})
	c, err := Dial(t.Context(), sock, "tok")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Plugins(t.Context()); err != nil || len(st) != 0 {
		t.Errorf("plugins %+v %v", st, err)
	}
	if _, err := c.Faults(t.Context()); err == nil || !strings.Contains(err.Error(), "runs no plugins") {
		t.Errorf("faults: %v", err)
	}
}

// noStack is a Stack with no services, for API tests that need none.
type noStack struct{}

func (noStack) Status() []runner.ServiceStatus                              { return nil }
func (noStack) Up(context.Context, []string) error                          { return nil }
func (noStack) Start(context.Context, []string) error                       { return nil }
func (noStack) Stop(context.Context, []string, runner.StopOptions) error    { return nil }
func (noStack) Restart(context.Context, []string, runner.StopOptions) error { return nil }
