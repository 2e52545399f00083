package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner/logstore"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/supervisor"
)

type logsOptions struct {
	follow     bool
	since      string
	tail       string
	noColor    bool
	timestamps bool
	noPrefix   bool
}

func newLogsCmd(g *globalOptions) *cobra.Command {
	o := &logsOptions{}
	cmd := &cobra.Command{
		Use:   "logs [SERVICE...]",
		Short: "Show service logs (kept on disk, so they work after the stack stopped too)",
		Long: `logs prints the merged logs of the named services (all when none), oldest
first. Lines marked by devstack itself (starts, exits, restarts, health)
are included. Logs live in the project's state directory, bounded in size
per service, so they can be read from another terminal and after down.`,
		ValidArgsFunction: g.serviceNames,
		RunE: func(cmd *cobra.Command, names []string) error {
			ctx := cmd.Context()
			q := control.LogQuery{Services: names, Follow: o.follow}
			var err error
			if q.Since, err = parseSince(o.since, time.Now()); err != nil {
				return err
			}
			if o.tail != "all" {
				if q.Tail, err = strconv.Atoi(o.tail); err != nil || q.Tail < 0 {
					return fmt.Errorf("--tail %q: want a number of lines or \"all\"", o.tail)
				}
				if q.Tail == 0 {
					// No line from before now: the store's Tail 0 means all,
					// so the bound is by time.
					q.Since = time.Now()
				}
			}
			name, services, err := g.logsProject(ctx, names)
			if err != nil {
				return err
			}
			pr := newPrinter(g.stdout, o.noColor, o.timestamps, services)
			pr.noPrefix = o.noPrefix
			dir := supervisor.StateDir(name)
			c, err := dialState(ctx, dir)
			if errors.Is(err, control.ErrNotRunning) {
				// No supervisor: read the files it left.
				lines, err := logstore.Read(supervisor.Paths{Dir: dir}.Logs(), logstore.Query{Services: names, Since: q.Since, Tail: q.Tail})
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("no logs recorded for %s yet (looked in %s); run `devstack up` first", name, dir)
				}
				if err != nil {
					return err
				}
				for _, l := range lines {
					pr.line(l.Time, l.Service, l.Stream.String(), l.Text)
				}
				if o.follow {
					fmt.Fprintf(g.stderr, "devstack: %s is not running; nothing to follow\n", name)
				}
				return nil
			}
			if err != nil {
				return err
			}
			return c.Logs(ctx, q, func(l control.LogLine) { pr.line(l.Time, l.Service, l.Stream, l.Text) })
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new lines")
	f.StringVar(&o.since, "since", "", "only lines since a time (RFC 3339, e.g. 2026-01-02T15:04:05Z) or a duration ago (e.g. 10m)")
	f.StringVarP(&o.tail, "tail", "n", "all", "number of lines to show from the end of each service's log")
	f.BoolVar(&o.noColor, "no-color", false, "no colours in the prefix")
	f.BoolVarP(&o.timestamps, "timestamps", "t", false, "show timestamps")
	f.BoolVar(&o.noPrefix, "no-log-prefix", false, "no service name before each line")
	return cmd
}

// parseSince accepts an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: want how long ago, e.g. 10m (a negative duration is in the future, where nothing is yet)", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			if t.After(now) {
				return time.Time{}, fmt.Errorf("--since %s: that is in the future, where nothing is yet (it is %s now)", s,
					strings.SplitN(now.Format(time.RFC3339), "+", 2)[0])
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration like 10m or a time like %s", s,
		strings.SplitN(now.Format(time.RFC3339), "+", 2)[0])
}

// logsProject names the project whose logs to read, and its services (for
// the prefix's width). It comes from the project file; or, with the
// project named (-p) and no file here, from the state it left, so that
// logs can be read from any terminal.
func (g *globalOptions) logsProject(ctx context.Context, names []string) (string, []string, error) {
	p, err := g.load(ctx, names)
	if err == nil {
		return p.Name, serviceList(p), nil
	}
	name := g.projectName()
	if name == "" || !errors.Is(err, project.ErrNoFile) {
		return "", nil, err
	}
	services, serr := logstore.Services(supervisor.Paths{Dir: supervisor.StateDir(name)}.Logs())
	if serr != nil {
		return "", nil, g.unknownName(name, err)
	}
	for _, n := range names {
		if !slices.Contains(services, n) {
			return "", nil, fmt.Errorf("no logs of a service %q in %s (it has logs of %s)", n, name, strings.Join(services, ", "))
		}
	}
	return name, services, nil
}
