package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy/fault"
)

// Spec declares one plugin.
type Spec struct {
	Name string `json:"name"`
	// Path is an external plugin's executable; "" runs the built-in plugin
	// Name.
	Path string `json:"path,omitempty"`
	// SHA256 is the hex sha256 the executable must have (external only).
	SHA256 string `json:"sha256,omitempty"`
	// Options is the plugin's configuration, JSON.
	Options []byte `json:"-"`
}

// Options configure a Host.
type Options struct {
	// Project is the project's name, passed to plugins.
	Project string
	// Services lists the stack's services and ports when a plugin starts.
	Services func() []sdk.Service
	// Builtin returns the command that runs built-in plugin name; default
	// this executable with the arguments `plugin NAME`.
	Builtin func(name string) (*exec.Cmd, error)
	// Faults receives the compiled rules of every plugin.
	Faults *fault.Table
	// Act carries out a plugin's action request; nil refuses them.
	Act func(plugin string, a sdk.Action) error
	// Log receives the host's lines about plugins and the plugins' own
	// stderr.
	Log io.Writer
	// MinBackoff and MaxBackoff bound the wait before a restart (default
	// 100 ms and 30 s); it doubles per crash and resets after a plugin ran
	// for StableAfter (default 10 s).
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// PingEvery and PingTimeout: a plugin that misses PingMisses (default
	// 3) pings in a row is taken as hung and restarted (default every 1 s,
	// 2 s each).
	PingEvery, PingTimeout time.Duration
	PingMisses             int
}

// State is a plugin's state, as `devstack plugins` shows it.
type State string

const (
	Starting   State = "starting"
	Running    State = "running"
	Restarting State = "restarting"
	Failed     State = "failed" // will not be retried: missing binary, wrong checksum, wrong protocol
	Stopped    State = "stopped"
)

// Status is one plugin's status.
type Status struct {
	Name     string `json:"name"`
	Version  string `json:"version,omitempty"`
	State    State  `json:"state"`
	Builtin  bool   `json:"builtin"`
	Path     string `json:"path,omitempty"`
	Pid      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts"`
	// Rules is how many fault rules the plugin has in force.
	Rules int `json:"rules"`
	// LastError is why it last stopped or failed.
	LastError string `json:"last_error,omitempty"`
	// DroppedEvents counts runner events it did not keep up with.
	DroppedEvents int `json:"dropped_events,omitempty"`
}

// Host runs a project's plugins.
type Host struct {
	o  Options
	wg sync.WaitGroup

	mu      sync.Mutex
	plugins map[string]*running
	order   []string
	cancel  context.CancelFunc
	closed  bool
}

// running is one plugin and its supervising goroutine's state.
type running struct {
	spec   Spec
	events chan sdk.Event
	ready  chan struct{} // closed once the first session opened or the first launch failed

	mu       sync.Mutex
	st       Status
	conn     *sdk.Conn
	rules    sdk.RuleSet
	hasRules bool
}

// New returns a Host; Start runs its plugins.
func New(o Options) *Host {
	if o.MinBackoff == 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.StableAfter == 0 {
		o.StableAfter = 10 * time.Second
	}
	if o.PingEvery == 0 {
		o.PingEvery = time.Second
	}
	if o.PingTimeout == 0 {
		o.PingTimeout = 2 * time.Second
	}
	if o.PingMisses == 0 {
		o.PingMisses = 3
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Faults == nil {
		o.Faults = new(fault.Table)
	}
	if o.Services == nil {
		o.Services = func() []sdk.Service { return nil }
	}
	if o.Builtin == nil {
		o.Builtin = func(name string) (*exec.Cmd, error) {
			exe, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("finding the devstack executable to run plugin %s: %w", name, err)
			}
			return exec.Command(exe, "plugin", name), nil
		}
	}
	return &Host{o: o, plugins: map[string]*running{}}
}

// Check validates specs without running anything: names unique, external
// plugins' paths executable, checksums well-formed and matching.
func Check(specs []Spec) error {
	seen := map[string]bool{}
	for _, s := range specs {
		if s.Name == "" {
			return errors.New("a plugin has no name")
		}
		if seen[s.Name] {
			return fmt.Errorf("plugin %q is declared twice", s.Name)
		}
		seen[s.Name] = true
		if s.Path == "" {
			if s.SHA256 != "" {
				return fmt.Errorf("plugin %q: sha256 is for external plugins; give its path too", s.Name)
			}
			continue
		}
		fi, err := os.Stat(s.Path)
		if err != nil {
			return fmt.Errorf("plugin %q: %w; build it, or fix its path", s.Name, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("plugin %q: %s is not an executable file", s.Name, s.Path)
		}
		if s.SHA256 != "" {
			want, err := hex.DecodeString(s.SHA256)
			if err != nil || len(want) != sha256.Size {
				return fmt.Errorf("plugin %q: sha256 %q is not 64 hex digits", s.Name, s.SHA256)
			}
			got, err := fileSHA256(s.Path)
			if err != nil {
				return fmt.Errorf("plugin %q: %w", s.Name, err)
			}
			if hex.EncodeToString(got) != hex.EncodeToString(want) {
				return fmt.Errorf("plugin %q: %s has sha256 %x, the project file says %s; rebuild it or update the checksum", s.Name, s.Path, got, s.SHA256)
			}
		}
	}
	return nil
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// Start checks specs, starts every plugin and returns once each has
// opened its session (or failed its first launch). It is called once.
func (h *Host) Start(ctx context.Context, specs []Spec) error {
	if err := Check(specs); err != nil {
		return err
	}
	h.mu.Lock()
	if h.closed || h.cancel != nil {
		h.mu.Unlock()
		return errors.New("plugin host already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	var rs []*running
	for _, s := range specs {
		r := &running{spec: s, events: make(chan sdk.Event, 256), ready: make(chan struct{}),
			st: Status{Name: s.Name, State: Starting, Builtin: s.Path == "", Path: s.Path}}
		h.plugins[s.Name] = r
		h.order = append(h.order, s.Name)
		rs = append(rs, r)
	}
	h.mu.Unlock()
	for _, r := range rs {
		h.wg.Add(1)
		go h.supervise(runCtx, r)
	}
	for _, r := range rs {
		select {
		case <-r.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close stops every plugin and waits for them.
func (h *Host) Close() {
	h.mu.Lock()
	h.closed = true
	cancel := h.cancel
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	h.wg.Wait()
}

// Status lists the plugins in the order they were declared.
func (h *Host) Status() []Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Status, 0, len(h.order))
	for _, n := range h.order {
		r := h.plugins[n]
		r.mu.Lock()
		out = append(out, r.st)
		r.mu.Unlock()
	}
	return out
}

// ErrNoPlugin means no plugin of that name is declared.
var ErrNoPlugin = errors.New("no such plugin")

// Command runs a plugin's command. A *sdk.CommandError is the plugin's
// own answer (the user's mistake); other errors mean the plugin is not
// there to answer.
func (h *Host) Command(ctx context.Context, plugin, name string, args []byte) ([]byte, error) {
	h.mu.Lock()
	r := h.plugins[plugin]
	h.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("plugin %s: %w; `devstack plugins` lists the loaded ones", plugin, ErrNoPlugin)
	}
	r.mu.Lock()
	conn, st := r.conn, r.st
	r.mu.Unlock()
	if conn == nil {
		msg := fmt.Sprintf("plugin %s is %s", plugin, st.State)
		if st.LastError != "" {
			msg += " (" + st.LastError + ")"
		}
		if st.State == Restarting || st.State == Starting {
			msg += "; try again in a moment"
		}
		return nil, errors.New(msg)
	}
	return conn.Command(ctx, name, args)
}

// Event hands a runner event to every plugin. It never blocks: a plugin
// whose queue is full misses the event, and its status counts it.
func (h *Host) Event(ev sdk.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.plugins {
		select {
		case r.events <- ev:
		default:
			r.mu.Lock()
			r.st.DroppedEvents++
			r.mu.Unlock()
		}
	}
}

// applyRules compiles every plugin's rules into one set for the proxy.
func (h *Host) applyRules() error {
	h.mu.Lock()
	var all []fault.Rule
	trigger := false
	for _, n := range h.order {
		r := h.plugins[n]
		r.mu.Lock()
		all = append(all, r.rules.Rules...)
		trigger = trigger || r.rules.HeaderTrigger
		r.mu.Unlock()
	}
	h.mu.Unlock()
	set, err := fault.Compile(all, fault.Options{HeaderTrigger: trigger, Previous: h.o.Faults.Load()})
	if err != nil {
		return err
	}
	h.o.Faults.Store(set)
	return nil
}

func (h *Host) logf(format string, args ...any) {
	fmt.Fprintf(h.o.Log, "plugins: "+format+"\n", args...)
}

// hclogger routes go-plugin's lines (and the plugin's stderr, a panic's
// stack included) to the host's log.
func (h *Host) hclogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "plugin." + name, Output: h.o.Log, Level: hclog.Info, DisableTime: true})
}

// snapshotRules returns the rules a restarted plugin starts from.
func (r *running) snapshotRules() (sdk.RuleSet, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sdk.RuleSet{Rules: slices.Clone(r.rules.Rules), HeaderTrigger: r.rules.HeaderTrigger}, r.hasRules
}

func (r *running) set(f func(*Status)) {
	r.mu.Lock()
	f(&r.st)
	r.mu.Unlock()
}
