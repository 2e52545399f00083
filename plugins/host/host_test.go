package host_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/plugins/host"
	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy/fault"
)

const pluginEnv = "DEVSTACK_HOST_TEST_PLUGIN"

// TestMain makes the test binary a plugin when the host runs it as one.
func TestMain(m *testing.M) {
	if os.Getenv(pluginEnv) != "" {
		sdk.Serve(&testPlugin{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testPlugin keeps a rule list like the fault plugin does: it starts from
// Config.Rules (one rule "boot" on a first start), and its commands add a
// rule, crash the process, or stop it dead.
type testPlugin struct {
	mu    sync.Mutex
	host  sdk.Host
	rules sdk.RuleSet
}

func (p *testPlugin) Info() sdk.Info { return sdk.Info{Name: "test", Version: "0.1.0"} }

func (p *testPlugin) Start(_ context.Context, cfg sdk.Config, h sdk.Host) error {
	p.mu.Lock()
	p.host, p.rules = h, cfg.Rules
	if !cfg.Restarted {
		p.rules.Rules = []fault.Rule{{ID: "boot", Service: "a", Fault: fault.Fault{Kind: fault.Reset}}}
	}
	defer p.mu.Unlock()
	return h.PushRules(p.rules)
}

func (p *testPlugin) HandleEvent(_ context.Context, ev sdk.Event) {
	if ev.Kind == "exited" {
		_ = p.host.Act(sdk.Action{Kind: sdk.Restart, Services: []string{ev.Service}})
	}
}

func (p *testPlugin) Command(_ context.Context, name string, args []byte) ([]byte, error) {
	switch name {
	case "add":
		p.mu.Lock()
		defer p.mu.Unlock()
		p.rules.Rules = append(p.rules.Rules, fault.Rule{ID: string(args), Service: "a", Fault: fault.Fault{Kind: fault.Reset}})
		return nil, p.host.PushRules(p.rules)
	case "ids":
		p.mu.Lock()
		defer p.mu.Unlock()
		var ids []string
		for _, r := range p.rules.Rules {
			ids = append(ids, r.ID)
		}
		return json.Marshal(ids)
	case "panic":
		go func() { panic("the test plugin panics on purpose") }()
		return nil, nil
	case "hang":
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		return nil, nil
	}
	return nil, fmt.Errorf("no command %q", name)
}

// syncBuf is a log the host and the test share.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHost(t *testing.T, o host.Options) (*host.Host, *fault.Table, *syncBuf) {
	t.Helper()
	tab := new(fault.Table)
	log := new(syncBuf)
	o.Faults, o.Log = tab, log
	if o.Builtin == nil {
		o.Builtin = func(name string) (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), pluginEnv+"="+name)
			return cmd, nil
		}
	}
	o.MinBackoff, o.PingEvery, o.PingTimeout, o.PingMisses = 20*time.Millisecond, 100*time.Millisecond, 300*time.Millisecond, 2
	h := host.New(o)
	t.Cleanup(h.Close)
	return h, tab, log
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ruleIDs(tab *fault.Table) string {
	var ids []string
	for _, r := range tab.Load().Rules() {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ",")
}

func status(h *host.Host) host.Status { return h.Status()[0] }

func TestBuiltinPushesRules(t *testing.T) {
	h, tab, _ := newHost(t, host.Options{})
	if err := h.Start(t.Context(), []host.Spec{{Name: "test"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the boot rule", func() bool { return ruleIDs(tab) == "boot" })
	st := status(h)
	if st.State != host.Running || st.Version != "0.1.0" || st.Pid == 0 || !st.Builtin || st.Rules != 1 {
		t.Errorf("status %+v", st)
	}
	if _, err := h.Command(t.Context(), "test", "add", []byte("x1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the added rule", func() bool { return ruleIDs(tab) == "boot,x1" })
	_, err := h.Command(t.Context(), "test", "bogus", nil)
	var ce *sdk.CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, `no command "bogus"`) {
		t.Errorf("command error %v", err)
	}
	if _, err := h.Command(t.Context(), "nope", "ls", nil); !errors.Is(err, host.ErrNoPlugin) {
		t.Errorf("unknown plugin: %v", err)
	}
	h.Close()
	if st := status(h); st.State != host.Stopped {
		t.Errorf("after Close: %+v", st)
	}
	if _, err := os.FindProcess(st.Pid); err == nil {
		waitFor(t, "the plugin process to go", func() bool { return syscall.Kill(st.Pid, 0) != nil })
	}
}

// A plugin that panics is logged and restarted; the proxy's rules stay in
// force meanwhile, and the new process carries on from them.
func TestPanickingPluginRestartsAndResyncs(t *testing.T) {
	h, tab, log := newHost(t, host.Options{})
	if err := h.Start(t.Context(), []host.Spec{{Name: "test"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Command(t.Context(), "test", "add", []byte("x1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both rules", func() bool { return ruleIDs(tab) == "boot,x1" })
	before := tab.Load()
	pid := status(h).Pid
	_, _ = h.Command(t.Context(), "test", "panic", nil) // it may die before it answers
	waitFor(t, "a restart", func() bool { st := status(h); return st.Restarts == 1 && st.State == host.Running && st.Pid != pid })
	if got := ruleIDs(tab); got != "boot,x1" {
		t.Errorf("rules after the restart: %s", got)
	}
	waitFor(t, "the restarted plugin to push its rules again", func() bool { return tab.Load() != before })
	if got := ruleIDs(tab); got != "boot,x1" {
		t.Errorf("rules pushed after the restart: %s", got)
	}
	out, err := h.Command(t.Context(), "test", "ids", nil)
	if err != nil || string(out) != `["boot","x1"]` {
		t.Errorf("the new process knows %s (%v)", out, err)
	}
	if l := log.String(); !strings.Contains(l, "panics on purpose") || !strings.Contains(l, "test stopped") {
		t.Errorf("log lacks the panic and the restart:\n%s", l)
	}
}

// A plugin that stops answering (SIGSTOP: alive, silent) is killed and
// restarted.
func TestHungPluginRestarts(t *testing.T) {
	h, tab, log := newHost(t, host.Options{})
	if err := h.Start(t.Context(), []host.Spec{{Name: "test"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the boot rule", func() bool { return ruleIDs(tab) == "boot" })
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, _ = h.Command(ctx, "test", "hang", nil) // it stops before it answers
	waitFor(t, "a restart", func() bool { st := status(h); return st.Restarts == 1 && st.State == host.Running })
	if !strings.Contains(log.String(), "did not answer 2 pings") {
		t.Errorf("log:\n%s", log.String())
	}
	if got := ruleIDs(tab); got != "boot" {
		t.Errorf("rules %s", got)
	}
}

func TestEventsBecomeActions(t *testing.T) {
	acts := make(chan sdk.Action, 1)
	h, _, _ := newHost(t, host.Options{Act: func(plugin string, a sdk.Action) error {
		if plugin == "test" {
			acts <- a
		}
		return nil
	}})
	if err := h.Start(t.Context(), []host.Spec{{Name: "test"}}); err != nil {
		t.Fatal(err)
	}
	h.Event(sdk.Event{Service: "payments", Kind: "exited", Time: time.Now()})
	select {
	case a := <-acts:
		if a.Kind != sdk.Restart || len(a.Services) != 1 || a.Services[0] != "payments" {
			t.Errorf("action %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no action")
	}
}

// An external plugin runs from its path; its checksum is checked.
func TestExternalPluginChecksum(t *testing.T) {
	t.Setenv(pluginEnv, "external") // the external plugin is this test binary
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	_, _ = io.Copy(sum, f)
	f.Close()
	good := hex.EncodeToString(sum.Sum(nil))
	bad := strings.Repeat("0", 64)

	err = host.Check([]host.Spec{{Name: "ext", Path: exe, SHA256: bad}})
	if err == nil || !strings.Contains(err.Error(), `plugin "ext"`) || !strings.Contains(err.Error(), "update the checksum") {
		t.Errorf("bad checksum: %v", err)
	}
	for _, tt := range []struct {
		spec host.Spec
		want string
	}{
		{host.Spec{Name: "ext", Path: "/nonexistent/plugin"}, "fix its path"},
		{host.Spec{Name: "ext", Path: exe, SHA256: "xyz"}, "not 64 hex digits"},
		{host.Spec{Name: "ext", SHA256: good}, "give its path too"},
		{host.Spec{Name: ""}, "no name"},
	} {
		if err := host.Check([]host.Spec{tt.spec}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.spec, err, tt.want)
		}
	}
	if err := host.Check([]host.Spec{{Name: "a"}, {Name: "a"}}); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Errorf("duplicate: %v", err)
	}

	h, tab, _ := newHost(t, host.Options{})
	if err := h.Start(t.Context(), []host.Spec{{Name: "ext", Path: exe, SHA256: good}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the external plugin's rules", func() bool { return ruleIDs(tab) == "boot" })
	if st := status(h); st.State != host.Running || st.Builtin || st.Path != exe {
		t.Errorf("status %+v", st)
	}
}

// The example external plugin builds against the sdk alone and runs as
// declared in a project file: path, checksum and options.
func TestExamplePlugin(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "flaky")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/plugins/flaky").CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}
	sum, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(sum)
	h, tab, log := newHost(t, host.Options{})
	spec := host.Spec{Name: "flaky", Path: bin, SHA256: hex.EncodeToString(digest[:]), Options: []byte(`{"service":"payments","probability":0.25}`)}
	if err := h.Start(t.Context(), []host.Spec{spec}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the example's rule", func() bool { return ruleIDs(tab) == "flaky" })
	r := tab.Load().Rules()[0]
	if r.Service != "payments" || r.Probability != 0.25 || r.Fault.Kind != fault.Abort || r.Fault.Status != 503 {
		t.Errorf("rule %+v", r)
	}
	if st := status(h); st.Version != "0.1.0" || st.State != host.Running {
		t.Errorf("status %+v", st)
	}
	h.Event(sdk.Event{Service: "payments", Kind: "exited", Message: "exit 1", Time: time.Now()})
	waitFor(t, "the example to log the event", func() bool { return strings.Contains(log.String(), "event: payments exited exit 1") })
}
