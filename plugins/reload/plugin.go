// Package reload is devstack's hot reload plugin (built in, run as
// `devstack plugin reload`). It watches the trees of the project's
// develop.watch rules (package watch) and, per debounced burst of changes,
// does what the rule says:
//
//	sync          copy the changed files to the target (a process's: here,
//	              in its workdir; a container's: Act(Sync), and devstack
//	              copies through the engine)
//	restart       Act(Restart): devstack starts a new instance beside the
//	              old, switches the proxy, drains and stops the old
//	rebuild       Act(Rebuild): the build runs while the old one serves
//	sync+restart  sync, then restart
//	sync+exec     sync, then Act(Exec): devstack runs the rule's exec
//	              command in the service (a process's workdir and
//	              environment; a container, through the engine)
//
// Each action carries the time the burst's first change was seen, so
// devstack measures a reload from the file's write to the new code
// answering. Watching starts at once when the options say so (up
// --watch), else with the "watch" command (devstack watch).
package reload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/devstack/devstack/plugins/reload/watch"
	"github.com/devstack/devstack/plugins/sdk"
)

// Name is the plugin's name.
const Name = "reload"

// Options is the plugin's configuration, as devstack passes it.
type Options struct {
	// Root is the project's directory.
	Root  string       `json:"root"`
	Rules []watch.Rule `json:"rules"`
	// Services say how each watched service takes a sync.
	Services map[string]Service `json:"services,omitempty"`
	// Watch starts watching at once.
	Watch bool `json:"watch,omitempty"`
}

// Service is how a sync reaches one service.
type Service struct {
	// Container: files go in through the engine (Act(Sync)); else the
	// plugin copies them itself, Rule.Target being a host path.
	Container bool `json:"container,omitempty"`
}

// Plugin is the hot reload plugin.
type Plugin struct {
	// Log receives the plugin's own lines (default stderr, which devstack
	// puts in its log).
	Log io.Writer

	mu       sync.Mutex
	ctx      context.Context
	host     sdk.Host
	opts     Options
	stop     context.CancelFunc // ends the running watch; nil when none
	done     chan struct{}
	states   map[string]string // each service's last state, from events
	errs     map[string]string // each service's error, while its events carry one
	batches  int
	lastErr  string
	lastSeen time.Time
}

// Serve runs the plugin in this process, for the devstack that started it
// (`devstack plugin reload`).
func Serve() { sdk.Serve(New()) }

// New returns the plugin.
func New() *Plugin { return &Plugin{Log: os.Stderr} }

var (
	_ sdk.Plugin       = (*Plugin)(nil)
	_ sdk.EventHandler = (*Plugin)(nil)
	_ sdk.Commander    = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info() sdk.Info { return sdk.Info{Name: Name, Version: "1"} }

// Start implements sdk.Plugin.
func (p *Plugin) Start(ctx context.Context, cfg sdk.Config, host sdk.Host) error {
	var o Options
	if len(cfg.Options) > 0 {
		if err := json.Unmarshal(cfg.Options, &o); err != nil {
			return fmt.Errorf("reload plugin options: %w", err)
		}
	}
	p.mu.Lock()
	p.ctx, p.host, p.opts, p.states, p.errs = ctx, host, o, map[string]string{}, map[string]string{}
	p.mu.Unlock()
	if o.Watch {
		return p.setWatch(true)
	}
	return nil
}

// HandleEvent implements sdk.EventHandler: it follows each service's
// state for the status command; a service on its way back (a reload) is
// shown as such rather than as down, and one whose last reload failed
// (the old instance serving on) with devstack's reason.
func (p *Plugin) HandleEvent(_ context.Context, ev sdk.Event) {
	st := ev.Kind
	if ev.Intent != "" {
		st += " (" + ev.Intent + ")"
	}
	p.mu.Lock()
	p.states[ev.Service] = st
	if ev.Message != "" {
		p.errs[ev.Service] = ev.Message
	} else {
		delete(p.errs, ev.Service)
	}
	p.mu.Unlock()
}

// Status is the status command's answer.
type Status struct {
	Watching bool              `json:"watching"`
	Rules    int               `json:"rules"`
	Batches  int               `json:"batches"`
	LastErr  string            `json:"last_error,omitempty"`
	States   map[string]string `json:"states,omitempty"`
	// Errors are the services' errors, as their last events say: a
	// failed reload's reason while the old instance serves on.
	Errors map[string]string `json:"errors,omitempty"`
}

// Command implements sdk.Commander: "watch" with {"on": bool} starts or
// stops watching; "status" reports.
func (p *Plugin) Command(_ context.Context, name string, args []byte) ([]byte, error) {
	switch name {
	case "watch":
		var a struct {
			On bool `json:"on"`
		}
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, fmt.Errorf(`watch takes {"on": true|false}: %w`, err)
		}
		if err := p.setWatch(a.On); err != nil {
			return nil, err
		}
	case "status":
	default:
		return nil, fmt.Errorf("the reload plugin has no command %q; it has watch and status", name)
	}
	p.mu.Lock()
	st := Status{Watching: p.stop != nil, Rules: len(p.opts.Rules), Batches: p.batches, LastErr: p.lastErr, States: p.states, Errors: p.errs}
	b, err := json.Marshal(st)
	p.mu.Unlock()
	return b, err
}

// setWatch starts or stops the watch.
func (p *Plugin) setWatch(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !on {
		if stop, done := p.stop, p.done; stop != nil {
			p.stop, p.done = nil, nil
			// A batch under way takes the lock: wait without it.
			p.mu.Unlock()
			stop()
			<-done
			p.mu.Lock()
		}
		return nil
	}
	if p.stop != nil {
		return nil
	}
	if len(p.opts.Rules) == 0 {
		return errors.New("no service of this project has a develop.watch section; add one (see README, Hot reload)")
	}
	w, err := watch.New(watch.Options{Rules: p.opts.Rules, Root: p.opts.Root, OnBatch: p.batch,
		OnError: func(err error) { fmt.Fprintf(p.Log, "reload: %v\n", err) }})
	if err != nil {
		return err
	}
	for i := range p.opts.Rules {
		r := &p.opts.Rules[i]
		if r.InitialSync && isSync(r.Action) {
			var changes []watch.Change
			for _, f := range w.Files(r) {
				rel, _ := filepath.Rel(r.Path, f)
				if f == r.Path {
					rel = ""
				}
				changes = append(changes, watch.Change{Rule: r, File: f, Rel: rel})
			}
			if err := p.sync(watch.Batch{Service: r.Service, Changes: changes, Seen: time.Now()}); err != nil {
				fmt.Fprintf(p.Log, "reload: initial sync of %s: %v\n", r.Service, err)
			}
		}
	}
	ctx, cancel := context.WithCancel(p.ctx)
	p.stop, p.done = cancel, make(chan struct{})
	done := p.done
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			fmt.Fprintf(p.Log, "reload: watch stopped: %v\n", err)
		}
	}()
	return nil
}

func isSync(action string) bool {
	return action == watch.Sync || action == watch.SyncRestart || action == watch.SyncExec
}

// batch carries out one burst's action.
func (p *Plugin) batch(b watch.Batch) {
	p.mu.Lock()
	host := p.host
	p.batches++
	p.mu.Unlock()
	var err error
	switch b.Action {
	case watch.Rebuild:
		err = host.Act(sdk.Action{Kind: sdk.Rebuild, Services: []string{b.Service}, Reason: b.Cause(p.opts.Root), Seen: b.Seen})
	case watch.Restart:
		err = host.Act(sdk.Action{Kind: sdk.Restart, Services: []string{b.Service}, Reason: b.Cause(p.opts.Root), Seen: b.Seen})
	case watch.SyncRestart:
		// A container's files go with the restart, so that devstack copies
		// them in before it starts the new instance (which then has them).
		a := sdk.Action{Kind: sdk.Restart, Services: []string{b.Service}, Reason: b.Cause(p.opts.Root), Seen: b.Seen}
		if files := syncFiles(b); p.opts.Services[b.Service].Container {
			a.Files = files
		} else if len(files) > 0 {
			err = p.copyHere(b, files)
		}
		if err == nil {
			err = host.Act(a)
		}
	case watch.SyncExec:
		err = p.syncExec(b)
	case watch.Sync:
		err = p.sync(b)
	}
	if err != nil {
		fmt.Fprintf(p.Log, "reload: %s (%s): %v\n", b.Service, b.Cause(p.opts.Root), err)
		p.mu.Lock()
		p.lastErr = err.Error()
		p.mu.Unlock()
	}
}

// syncFiles are the copies the batch's synced files make.
func syncFiles(b watch.Batch) []sdk.FileCopy {
	var files []sdk.FileCopy
	for _, c := range b.Changes {
		if !isSync(c.Rule.Action) || c.Rule.Target == "" {
			continue
		}
		dst := c.Rule.Target
		if c.Rel != "" {
			dst = filepath.Join(dst, c.Rel)
		}
		files = append(files, sdk.FileCopy{Src: c.File, Dst: dst, Removed: c.Removed})
	}
	return files
}

// sync copies the batch's synced files to their targets.
func (p *Plugin) sync(b watch.Batch) error {
	files := syncFiles(b)
	if len(files) == 0 {
		return nil
	}
	if p.opts.Services[b.Service].Container {
		return p.host.Act(sdk.Action{Kind: sdk.Sync, Services: []string{b.Service}, Reason: b.Cause(p.opts.Root), Seen: b.Seen, Files: files})
	}
	return p.copyHere(b, files)
}

// copyHere makes a process service's copies, on this host.
func (p *Plugin) copyHere(b watch.Batch, files []sdk.FileCopy) error {
	var errs []error
	for _, f := range files {
		errs = append(errs, copyFile(f))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(p.Log, "reload: %s: synced %d file(s) in %s (%s)\n", b.Service, len(files), time.Since(b.Seen).Round(time.Millisecond), b.Cause(p.opts.Root))
	return nil
}

// copyFile copies (or removes) one synced file on this host. The copy
// is written beside its destination and renamed over it, so the service
// never reads half a file.
func copyFile(f sdk.FileCopy) error {
	if f.Removed {
		if err := os.RemoveAll(f.Dst); err != nil {
			return fmt.Errorf("sync: removing %s: %w", f.Dst, err)
		}
		return nil
	}
	src, err := os.Open(f.Src)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // gone again since the change
		}
		return fmt.Errorf("sync: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(f.Dst), 0o755); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Dst), ".devstack-sync-*")
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	_, err = io.Copy(tmp, src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), fi.Mode().Perm())
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.Dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("sync: copying %s to %s: %w", f.Src, f.Dst, err)
	}
	return nil
}

// syncExec syncs, then asks devstack to run each sync+exec rule's command
// (once per rule) in the service: a process's in its workdir and
// environment, a container's through the engine. A container's files go
// with the commands, so they are copied in before the commands run.
func (p *Plugin) syncExec(b watch.Batch) error {
	var cmds []sdk.Command
	ran := map[*watch.Rule]bool{}
	for _, c := range b.Changes {
		r := c.Rule
		if r.Action != watch.SyncExec || len(r.Exec) == 0 || ran[r] {
			continue
		}
		ran[r] = true
		cmds = append(cmds, sdk.Command{Command: r.Exec, WorkingDir: r.ExecDir, Env: r.ExecEnv, User: r.ExecUser})
	}
	files := syncFiles(b)
	a := sdk.Action{Kind: sdk.Exec, Services: []string{b.Service}, Reason: b.Cause(p.opts.Root), Seen: b.Seen, Exec: cmds}
	if p.opts.Services[b.Service].Container {
		a.Files = files
	} else if len(files) > 0 {
		if err := p.copyHere(b, files); err != nil {
			return err
		}
	}
	if len(cmds) == 0 {
		if len(a.Files) == 0 {
			return nil
		}
		a.Kind = sdk.Sync
	}
	return p.host.Act(a)
}
