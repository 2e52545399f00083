// Package watch follows file trees for hot reload: recursively (including
// directories created later), ignoring .git and the patterns of
// .gitignore, .dockerignore and each rule's own ignore list, and
// debouncing bursts so that one save, or a checkout of hundreds of files,
// gives one Batch per service.
//
// It watches directories, never files: an editor that saves by writing a
// temporary file and renaming it over the original shows up as a create
// in the directory, which is seen like any write.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/moby/patternmatcher"
)

// Rule is one develop.watch entry of one service.
type Rule struct {
	Service string `json:"service"`
	// Path is the absolute file or directory watched.
	Path string `json:"path"`
	// Action is sync, rebuild, restart, sync+restart or sync+exec.
	Action string `json:"action"`
	// Target is where sync copies to (for a process: an absolute path on
	// the host; for a container: a path inside it).
	Target string `json:"target,omitempty"`
	// Exec is sync+exec's command, run in the service after the sync;
	// ExecDir (its working_dir), ExecEnv (KEY=VALUE) and ExecUser are
	// exec's other keys.
	Exec     []string `json:"exec,omitempty"`
	ExecDir  string   `json:"exec_dir,omitempty"`
	ExecEnv  []string `json:"exec_env,omitempty"`
	ExecUser string   `json:"exec_user,omitempty"`
	// Ignore and Include are patterns relative to Path (dockerignore
	// syntax); with Include, only matching files count.
	Ignore      []string `json:"ignore,omitempty"`
	Include     []string `json:"include,omitempty"`
	InitialSync bool     `json:"initial_sync,omitempty"`
	// DockerIgnore applies the .dockerignore files too (a container's
	// rules: what .dockerignore keeps out of its image is no change to
	// it). A process's rules leave them out: an image's ignore file often
	// ignores everything but a binary.
	DockerIgnore bool `json:"dockerignore,omitempty"`
}

// Actions, from compose's develop.watch.
const (
	Sync        = "sync"
	Rebuild     = "rebuild"
	Restart     = "restart"
	SyncRestart = "sync+restart"
	SyncExec    = "sync+exec"
)

// Change is one changed file and the rule it matched.
type Change struct {
	Rule *Rule
	// File is the changed file's absolute path; Rel is its path relative
	// to the rule's Path ("" when Path is the file itself).
	File, Rel string
	// Removed is set when the file is gone.
	Removed bool
}

// Batch is what a burst of changes asks of one service.
type Batch struct {
	Service string
	// Action is the strongest one asked: rebuild, then restart (with the
	// syncs done first when sync+restart asked), then sync+exec, sync.
	Action  string
	Changes []Change
	// Seen is when the burst's first change was seen.
	Seen time.Time
}

// Cause names the burst for a human: a file of it that is still there
// (an editor's temporary file, renamed over the real one, is not), as a
// path relative to root when it is under it, and how many more of those
// changed.
func (b Batch) Cause(root string) string {
	if len(b.Changes) == 0 {
		return ""
	}
	var there []Change
	for _, ch := range b.Changes {
		if _, err := os.Lstat(ch.File); err == nil && !ch.Removed {
			there = append(there, ch)
		}
	}
	c, what := b.Changes[0], " removed"
	if len(there) > 0 {
		c, what = there[0], " changed"
	}
	name := c.File
	if rel, err := filepath.Rel(root, c.File); err == nil && root != "" && !strings.HasPrefix(rel, "..") {
		name = rel
	}
	if n := len(there) - 1; n > 0 {
		return fmt.Sprintf("%s and %d more changed", name, n)
	}
	return name + what
}

// Options configure Run.
type Options struct {
	Rules []Rule
	// Root is the project's directory: its .gitignore and .dockerignore
	// apply to every rule, besides those at each rule's Path.
	Root string
	// Quiet is how long a burst must be quiet before its batch goes out
	// (default 30 ms; four times that once a burst has
	// burstChanges changes): a save reloads at once, a checkout of
	// hundreds of files gives one batch. MaxWait bounds a burst that never goes quiet
	// (default 2 s).
	Quiet, MaxWait time.Duration
	// OnBatch receives each batch, one at a time, in the order of bursts.
	OnBatch func(Batch)
	// OnError receives problems that do not stop the watch (a directory
	// that vanished while being added); may be nil.
	OnError func(error)
}

// Watcher follows the rules' trees.
type Watcher struct {
	o     Options
	fs    *fsnotify.Watcher
	rules []*matcher
}

type matcher struct {
	rule            *Rule
	file            bool // Path is a file
	ignore, include *patternmatcher.PatternMatcher
}

// New checks the rules and starts watching their trees; Run delivers the
// batches. Errors name the service and path at fault.
func New(o Options) (*Watcher, error) {
	if o.Quiet == 0 {
		o.Quiet = 30 * time.Millisecond
	}
	if o.MaxWait == 0 {
		o.MaxWait = 2 * time.Second
	}
	if o.OnError == nil {
		o.OnError = func(error) {}
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("starting the file watcher: %w", err)
	}
	w := &Watcher{o: o, fs: fw}
	for i := range o.Rules {
		r := &o.Rules[i]
		switch r.Action {
		case Sync, Rebuild, Restart, SyncRestart, SyncExec:
		default:
			fw.Close()
			return nil, fmt.Errorf("service %q: develop.watch action %q is not one of sync, rebuild, restart, sync+restart, sync+exec", r.Service, r.Action)
		}
		fi, err := os.Stat(r.Path)
		if err != nil {
			fw.Close()
			return nil, fmt.Errorf("service %q: develop.watch path: %w; create it or correct the path", r.Service, err)
		}
		m := &matcher{rule: r, file: !fi.IsDir()}
		pats := append(gitPatterns(readIgnores(o.Root, r.DockerIgnore), o.Root, r.Path), r.Ignore...)
		if !m.file {
			pats = append(pats, gitPatterns(readIgnores(r.Path, r.DockerIgnore), r.Path, r.Path)...)
		}
		if m.ignore, err = patternmatcher.New(pats); err != nil {
			fw.Close()
			return nil, fmt.Errorf("service %q: develop.watch ignore: %w", r.Service, err)
		}
		if len(r.Include) > 0 {
			if m.include, err = patternmatcher.New(r.Include); err != nil {
				fw.Close()
				return nil, fmt.Errorf("service %q: develop.watch include: %w", r.Service, err)
			}
		}
		w.rules = append(w.rules, m)
		if m.file {
			err = fw.Add(filepath.Dir(r.Path))
		} else {
			_, err = w.addTree(r.Path)
		}
		if err != nil {
			fw.Close()
			return nil, fmt.Errorf("service %q: watching %s: %w", r.Service, r.Path, err)
		}
	}
	return w, nil
}

// Close stops watching.
func (w *Watcher) Close() error { return w.fs.Close() }

// Files lists every file a rule covers now (for initial_sync).
func (w *Watcher) Files(r *Rule) []string {
	for _, m := range w.rules {
		if m.rule != r {
			continue
		}
		if m.file {
			return []string{r.Path}
		}
		var out []string
		filepath.WalkDir(r.Path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				if p != r.Path && m.skipDir(p) {
					return filepath.SkipDir
				}
				return nil
			}
			if _, ok := m.match(p); ok {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	return nil
}

// addTree watches dir and every directory under it that no rule ignores
// for good, and returns the files found in it.
func (w *Watcher) addTree(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // gone meanwhile
		}
		if !d.IsDir() {
			files = append(files, p)
			return nil
		}
		if p != dir && w.ignoredDir(p) {
			return filepath.SkipDir
		}
		if err := w.fs.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	return files, err
}

// ignoredDir reports whether no rule wants anything under dir.
func (w *Watcher) ignoredDir(dir string) bool {
	if filepath.Base(dir) == ".git" {
		return true
	}
	for _, m := range w.rules {
		if !m.file && within(m.rule.Path, dir) && !m.skipDir(dir) {
			return false
		}
	}
	return true
}

func (m *matcher) skipDir(dir string) bool {
	if filepath.Base(dir) == ".git" {
		return true
	}
	rel, err := filepath.Rel(m.rule.Path, dir)
	if err != nil {
		return true
	}
	// A directory is skipped only when it is ignored and no exclusion
	// (!pattern) could bring a file under it back.
	ign, _ := m.ignore.MatchesOrParentMatches(filepath.ToSlash(rel))
	return ign && !m.ignore.Exclusions()
}

// match reports whether file counts for m, and its path relative to the
// rule's.
func (m *matcher) match(file string) (string, bool) {
	if m.file {
		return "", file == m.rule.Path
	}
	if !within(m.rule.Path, file) || file == m.rule.Path {
		return "", false
	}
	rel, err := filepath.Rel(m.rule.Path, file)
	if err != nil {
		return "", false
	}
	slash := filepath.ToSlash(rel)
	if slices.Contains(strings.Split(slash, "/"), ".git") {
		return "", false
	}
	if ign, _ := m.ignore.MatchesOrParentMatches(slash); ign {
		return "", false
	}
	if m.include != nil {
		if inc, _ := m.include.MatchesOrParentMatches(slash); !inc {
			return "", false
		}
	}
	return rel, true
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

// Run delivers batches until ctx ends or the watcher fails.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fs.Close()
	var (
		pending = map[string]*Batch{} // by service
		order   []string
		first   time.Time
		quiet   = time.NewTimer(time.Hour)
	)
	quiet.Stop()
	flush := func() {
		for _, svc := range order {
			b := pending[svc]
			if w.o.OnBatch != nil {
				w.o.OnBatch(*b)
			}
		}
		pending, order, first = map[string]*Batch{}, nil, time.Time{}
	}
	add := func(file string, removed bool, at time.Time) {
		for _, m := range w.rules {
			rel, ok := m.match(file)
			if !ok {
				continue
			}
			svc := m.rule.Service
			b := pending[svc]
			if b == nil {
				b = &Batch{Service: svc, Seen: at}
				pending[svc] = b
				order = append(order, svc)
			}
			if !slices.ContainsFunc(b.Changes, func(c Change) bool { return c.File == file && c.Rule == m.rule }) {
				b.Changes = append(b.Changes, Change{Rule: m.rule, File: file, Rel: rel, Removed: removed})
			}
			b.Action = stronger(b.Action, m.rule.Action)
			if first.IsZero() {
				first = at
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-w.fs.Errors:
			if !ok {
				return nil
			}
			w.o.OnError(fmt.Errorf("file watcher: %w", err))
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil
			}
			now := time.Now()
			if ev.Op == fsnotify.Chmod {
				continue // touch, chmod: the content is the same
			}
			w.event(ev, now, add)
			if len(pending) > 0 {
				// A burst of many changes (a checkout, a code generator) is
				// given longer to end than a save is.
				wait := w.o.Quiet
				if n := len(pending[order[0]].Changes); n >= burstChanges {
					wait *= 4
				}
				if left := w.o.MaxWait - now.Sub(first); left < wait {
					wait = max(left, 0)
				}
				quiet.Reset(wait)
			}
		case <-quiet.C:
			flush()
		}
	}
}

// burstChanges is how many changes make a burst look like more than a
// save.
const burstChanges = 8

// event takes one file system event to add.
func (w *Watcher) event(ev fsnotify.Event, now time.Time, add func(file string, removed bool, at time.Time)) {
	removed := ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			if w.ignoredDir(ev.Name) {
				return
			}
			// A new directory: watch it, and count what was written into
			// it before the watch was in place.
			files, err := w.addTree(ev.Name)
			if err != nil {
				w.o.OnError(fmt.Errorf("watching new directory %s: %w", ev.Name, err))
			}
			for _, f := range files {
				add(f, false, now)
			}
			return
		}
	}
	if removed {
		if _, err := os.Lstat(ev.Name); err == nil {
			removed = false // renamed over, or made again
		}
	}
	add(ev.Name, removed, now)
}

// stronger is the action that covers both a and b.
func stronger(a, b string) string {
	rank := map[string]int{"": 0, Sync: 1, SyncExec: 2, Restart: 3, SyncRestart: 4, Rebuild: 5}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// readIgnores reads dir's .gitignore patterns, and its .dockerignore's
// with docker.
func readIgnores(dir string, docker bool) []string {
	if dir == "" {
		return nil
	}
	names := []string{".gitignore"}
	if docker {
		names = append(names, ".dockerignore")
	}
	var out []string
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			out = append(out, line)
		}
	}
	return out
}

// gitPatterns turns ignore-file patterns written at dir into patterns
// relative to a rule's path (dockerignore syntax): a pattern without a
// slash (but a trailing one) matches at any depth, as in git; one with a
// slash is anchored at dir. Patterns anchored outside the rule's path are
// dropped.
func gitPatterns(pats []string, dir, rulePath string) []string {
	var out []string
	for _, p := range pats {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		p = strings.TrimSuffix(p, "/")
		if p == "" {
			continue
		}
		if !strings.Contains(p, "/") {
			p = "**/" + p
		} else {
			abs := filepath.Join(dir, strings.TrimPrefix(p, "/"))
			rel, err := filepath.Rel(rulePath, abs)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			p = filepath.ToSlash(rel)
		}
		if neg {
			p = "!" + p
		}
		out = append(out, p)
	}
	return out
}
