package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/logstore"
)

// reloadTimeout bounds one hot reload a plugin asked for (its build
// included).
const reloadTimeout = 10 * time.Minute

// reloadAction carries out a hot reload plugin's request: restart and
// rebuild replace each service's instance without downtime (Reload), sync
// copies files into a container, exec copies (if any) then runs commands
// in the running instance (sync+exec). It returns at once; the outcome goes to
// the log (and ps), as a reload's does.
func (s *Supervisor) reloadAction(plugin string, a sdk.Action) error {
	switch a.Kind {
	case sdk.Restart, sdk.Rebuild:
		files := runnerFiles(a.Files)
		for _, svc := range a.Services {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
				defer cancel()
				// A sync+restart's files go into the running instance
				// first: the new one gets them from there (Spec.Synced).
				if len(files) > 0 && !s.syncInto(ctx, svc, files, a) {
					return
				}
				// Reload logs its own failure, with the service.
				_, _ = s.Reload(ctx, svc, runner.ReplaceOptions{Rebuild: a.Kind == sdk.Rebuild, Cause: a.Reason, Seen: a.Seen})
			}()
		}
		return nil
	case sdk.Sync:
		files := runnerFiles(a.Files)
		for _, svc := range a.Services {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
				defer cancel()
				s.syncInto(ctx, svc, files, a)
			}()
		}
		return nil
	case sdk.Exec:
		files := runnerFiles(a.Files)
		cmds := make([]runner.Command, len(a.Exec))
		for i, c := range a.Exec {
			cmds[i] = runner.Command{Argv: c.Command, Dir: c.WorkingDir, Env: c.Env, User: c.User}
		}
		for _, svc := range a.Services {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
				defer cancel()
				t0 := time.Now()
				// The files first, then the commands that use them; each
				// logs its own failure.
				if len(files) > 0 {
					if err := s.run.Sync(ctx, svc, files); err != nil {
						return
					}
				}
				if err := s.run.RunIn(ctx, svc, cmds); err != nil {
					return
				}
				seen := a.Seen
				if seen.IsZero() {
					seen = t0
				}
				what := fmt.Sprintf("ran %d command(s)", len(cmds))
				if len(files) > 0 {
					what = fmt.Sprintf("synced %d file(s) and %s", len(files), what)
				}
				fmt.Fprintf(s.logs.Writer(svc, logstore.System), "%s in %s (%s)\n", what, time.Since(seen).Round(time.Millisecond), a.Reason)
			}()
		}
		return nil
	}
	return fmt.Errorf("plugin %s asked for action %q; devstack knows restart, rebuild, sync and exec", plugin, a.Kind)
}

func runnerFiles(fs []sdk.FileCopy) []runner.FileCopy {
	files := make([]runner.FileCopy, len(fs))
	for i, f := range fs {
		files[i] = runner.FileCopy{Src: f.Src, Dst: f.Dst, Removed: f.Removed}
	}
	return files
}

// syncInto copies files into the running instance of svc and says so in
// its log; a failure is logged by the runner. It reports success.
func (s *Supervisor) syncInto(ctx context.Context, svc string, files []runner.FileCopy, a sdk.Action) bool {
	t0 := time.Now()
	if err := s.run.Sync(ctx, svc, files); err != nil {
		return false
	}
	seen := a.Seen
	if seen.IsZero() {
		seen = t0
	}
	fmt.Fprintf(s.logs.Writer(svc, logstore.System), "synced %d file(s) in %s (%s)\n", len(files), time.Since(seen).Round(time.Millisecond), a.Reason)
	return true
}

// statusChanged hands a runner status change to the plugins, typed and
// with its intent (runner.Options.OnStatus).
func (s *Supervisor) statusChanged(ch runner.Change) {
	if s.plugins != nil {
		s.plugins.Event(statusEvent(ch))
	}
}

// Watch starts (on) or stops hot reload: the reload plugin watches the
// develop.watch trees. It returns the plugin's status (JSON).
func (s *Supervisor) Watch(ctx context.Context, on bool) ([]byte, error) {
	if err := s.waitPlugins(ctx); err != nil {
		return nil, err
	}
	if !s.hasPlugin(ReloadPlugin) {
		return nil, fmt.Errorf("nothing to watch in %s: no service has a develop.watch section (see README, Hot reload)", s.opts.Project.Name)
	}
	args, _ := json.Marshal(map[string]bool{"on": on})
	out, err := s.plugins.Command(ctx, ReloadPlugin, "watch", args)
	if err == nil && on {
		s.watchStarted()
	}
	return out, err
}

// watchStarted has the services that a rebuild or a restart reloads get
// their standby (runner.Standbyer) now, not after their first reload.
func (s *Supervisor) watchStarted() {
	var names []string
	for _, svc := range s.opts.Project.Services {
		if d := svc.Compose.Develop; d != nil && slices.ContainsFunc(d.Watch, func(w types.Trigger) bool {
			return w.Action != types.WatchActionSync && w.Action != types.WatchActionSyncExec
		}) {
			names = append(names, svc.Name)
		}
	}
	if len(names) > 0 {
		s.run.PrepareStandbys(names)
	}
}

func (s *Supervisor) hasPlugin(name string) bool {
	if s.plugins == nil {
		return false
	}
	for _, st := range s.plugins.Status() {
		if st.Name == name {
			return true
		}
	}
	return false
}

// statusEvent is a runner status change as plugins receive it.
func statusEvent(ch runner.Change) sdk.Event {
	msg := ""
	switch {
	case ch.Status.ReloadError != "":
		msg = ch.Status.ReloadError
	case ch.Status.Error != "":
		msg = ch.Status.Error
	}
	kind := string(ch.Status.State)
	if ch.Status.State == runner.StateRunning && ch.Status.Health != runner.HealthNone {
		kind += "/" + string(ch.Status.Health)
	}
	return sdk.Event{Service: ch.Service, Kind: kind, Message: msg, Time: ch.At, Intent: string(ch.Intent), Cause: ch.Cause}
}
