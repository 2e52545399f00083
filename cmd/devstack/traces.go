package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/supervisor"
	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/render"
	"github.com/devstack/devstack/trace/store"
)

// traceSource reads traces from the running supervisor, or straight from
// the span files when the stack is down.
type traceSource interface {
	Traces(ctx context.Context, q trace.Query) ([]trace.Summary, error)
	Trace(ctx context.Context, id trace.TraceID) ([]*trace.Span, error)
	Close()
}

// diskSource reads the span files of a stack that is down. It lists
// traces from the store's summary file when that is current (written as
// the store closed: see store.OpenSummary), and replays the log, once,
// for anything else.
type diskSource struct {
	dir      string
	maxSpans int
	summary  *store.SummaryFile // nil when missing or stale
	st       *store.Store       // opened on first need
	// only, when set, names the traces the command reads: the log's
	// replay indexes those alone (see narrow).
	only func(trace.TraceID) bool
}

// openDisk reads the span store in dir, of a stack that is down, whose
// bound is maxSpans: its summary file now, when that is current, and the
// log when something needs it.
func openDisk(dir string, maxSpans int) (*diskSource, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	src := &diskSource{dir: dir, maxSpans: maxSpans}
	if f, err := store.OpenSummary(dir, maxSpans); err == nil {
		src.summary = f
	}
	return src, nil
}

// narrow tells a source which traces the command is about to read, so
// that a replay of the log indexes only those: `devstack trace ID` with
// the stack down then skips the work of indexing every other trace.
func narrow(src traceSource, ids []trace.TraceID) {
	d, ok := src.(*diskSource)
	if !ok || d.st != nil {
		return
	}
	want := make(map[trace.TraceID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	d.only = func(id trace.TraceID) bool { return want[id] }
}

func (s *diskSource) store() (*store.Store, error) {
	if s.st == nil {
		st, err := store.Open(s.dir, store.Options{MaxSpans: s.maxSpans, ReadOnly: true, Only: s.only})
		if err != nil {
			return nil, err
		}
		s.st = st
	}
	return s.st, nil
}

func (s *diskSource) Traces(_ context.Context, q trace.Query) ([]trace.Summary, error) {
	if s.summary != nil {
		return s.summary.Traces(q), nil
	}
	st, err := s.store()
	if err != nil {
		return nil, err
	}
	return st.Traces(q), nil
}

func (s *diskSource) Trace(_ context.Context, id trace.TraceID) ([]*trace.Span, error) {
	st, err := s.store()
	if err != nil {
		return nil, err
	}
	spans := st.Trace(id)
	if spans == nil {
		return nil, fmt.Errorf("no trace %s; `devstack traces` lists the recorded ones", id)
	}
	return spans, nil
}

func (s *diskSource) Close() {
	if s.st != nil {
		s.st.Close()
	}
}

type clientSource struct{ c *control.Client }

func (s clientSource) Traces(ctx context.Context, q trace.Query) ([]trace.Summary, error) {
	return s.c.Traces(ctx, q)
}

func (s clientSource) Trace(ctx context.Context, id trace.TraceID) ([]*trace.Span, error) {
	return s.c.Trace(ctx, id)
}

func (clientSource) Close() {}

func (g *globalOptions) traceSource(ctx context.Context) (traceSource, *project.Project, error) {
	// A project named (-p or COMPOSE_PROJECT_NAME) is its state dir,
	// wherever the command runs: no project file is loaded, which keeps
	// `traces` fast (target: under 50 ms with 100k spans stored).
	name := g.projectName()
	if name != "" {
		if src, ok := stateSource(ctx, supervisor.StateDir(name), nil); ok {
			return src, nil, nil
		}
	} else if files, err := project.FilesFor(g.projectDir, g.files); err == nil && !slices.Contains(g.files, "-") {
		// Run next to its files, a project is found from the record its
		// supervisor left in its state dir. Anything unexpected goes the
		// long way, which says what is wrong.
		if dir, rec, ok := supervisor.StateFrom(files); ok {
			if src, ok := stateSource(ctx, dir, &rec); ok {
				return src, nil, nil
			}
		}
	}
	p, err := g.load(ctx, nil)
	if err != nil {
		return nil, nil, g.unknownName(name, err)
	}
	c, dir, err := g.client(ctx, p)
	if err == nil {
		return clientSource{c}, p, nil
	}
	if !errors.Is(err, control.ErrNotRunning) {
		return nil, nil, err
	}
	spans := supervisor.Paths{Dir: dir}.Spans()
	if _, err := os.Stat(spans); err != nil {
		return nil, nil, fmt.Errorf("no traces recorded for %s yet; run `devstack up` and send it a request", p.Name)
	}
	src, err := openDisk(spans, p.X.Trace.MaxSpans)
	if err != nil {
		return nil, nil, err
	}
	return src, p, nil
}

// stateSource answers from the state dir dir alone: its supervisor when it
// runs, else the spans it left, read with the bound it recorded (rec, or
// the one in dir when nil). It reports false when neither can answer.
func stateSource(ctx context.Context, dir string, rec *supervisor.Source) (traceSource, bool) {
	c, err := dialState(ctx, dir)
	if err == nil {
		return clientSource{c}, true
	}
	if !errors.Is(err, control.ErrNotRunning) {
		return nil, false
	}
	if rec == nil {
		r, ok := supervisor.SourceOf(dir)
		if !ok {
			return nil, false
		}
		rec = &r
	}
	src, err := openDisk(supervisor.Paths{Dir: dir}.Spans(), rec.MaxSpans)
	return src, err == nil
}

type tracesOptions struct {
	service     string
	status      string
	errors      bool
	probes      bool
	minDuration time.Duration
	since       string
	route       string
	query       string
	limit       int
	format      string
}

func newTracesCmd(g *globalOptions) *cobra.Command {
	o := &tracesOptions{}
	cmd := &cobra.Command{
		Use:   "traces",
		Short: "List recent traces: every request through the stack, hop by hop",
		Long: `traces lists the most recent traces, newest first: the trace id, the root
service and route, when it started, how long it took, how many hops it made
how many failed, and how many were linked by a guess (GUESSED: a service
that drops the trace context called out while serving several requests, so
the hop may belong to another trace). Filters combine: a trace is listed when it matches all.

Traces are kept in the project's state directory (100k spans by default,
oldest whole traces evicted first), so they survive a restart of devstack
and can be read after down.

  devstack traces --errors                 traces with a failed hop (5xx, gRPC
                                           error, transport error)
  devstack traces --status 4xx             traces with a client error (also 404,
                                           or a range: 500-504)
  devstack traces --service payments --min-duration 200ms
  devstack traces --query region=EU        traces with a hop asked ?…region=EU…
  devstack trace ID                        one trace as a waterfall
  devstack traces export --format otlp-json > traces.json   for Jaeger & co.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := trace.Query{Service: o.service, Errors: o.errors, Probes: o.probes,
				MinDuration: o.minDuration, Route: o.route, QueryHas: o.query, Limit: o.limit}
			if o.status != "" {
				var err error
				if q.Status, err = trace.ParseStatusRange(o.status); err != nil {
					return fmt.Errorf("--%w", err)
				}
			}
			if o.minDuration < 0 {
				return fmt.Errorf("--min-duration %s: want a duration of zero or more", o.minDuration)
			}
			if o.limit < 0 {
				return fmt.Errorf("--limit %d: want how many traces to list, e.g. 20", o.limit)
			}
			var err error
			if q.Since, err = parseSince(o.since, time.Now()); err != nil {
				return err
			}
			if o.format != "table" && o.format != "json" {
				return fmt.Errorf("--format %q: use table or json", o.format)
			}
			if q.Route != "" && !strings.HasPrefix(q.Route, "/") {
				q.Route = "/" + q.Route // a route is a path: "checkout" means /checkout
			}
			src, _, err := g.traceSource(cmd.Context())
			if err != nil {
				return err
			}
			defer src.Close()
			list, err := src.Traces(cmd.Context(), q)
			if err != nil {
				return err
			}
			if o.format == "json" {
				return writeJSON(g.stdout, list)
			}
			if len(list) == 0 && q != (trace.Query{Limit: q.Limit}) {
				// Say why the table is empty: a filter, maybe mistyped.
				fmt.Fprintln(g.stderr, "devstack: no trace matches these filters (service names are matched exactly, routes by prefix, queries by a part)")
			}
			return printTraces(g.stdout, list)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.service, "service", "", "only traces with a hop to or from this service")
	f.StringVar(&o.status, "status", "", "only traces with a hop answering this HTTP status: 404, a class (4xx, 5xx) or a range (500-504)")
	f.BoolVar(&o.errors, "errors", false, "only traces with a failed hop: a 5xx, a gRPC error or a transport error (not a 4xx: see --status 4xx)")
	f.BoolVar(&o.probes, "probes", false, "also devstack's own healthcheck probes of a published port (left out by default)")
	f.DurationVar(&o.minDuration, "min-duration", 0, "only traces that took at least this long, e.g. 200ms")
	f.StringVar(&o.since, "since", "", "only traces since a time (RFC 3339) or a duration ago (e.g. 10m)")
	f.StringVar(&o.route, "route", "", "only traces with a hop whose path starts with this")
	f.StringVar(&o.query, "query", "", "only traces with a hop whose query string holds this, e.g. region=EU")
	f.IntVarP(&o.limit, "limit", "n", 50, "at most this many traces")
	f.StringVar(&o.format, "format", "table", "output format: table or json")
	cmd.AddCommand(newTracesExportCmd(g))
	return cmd
}

func printTraces(w io.Writer, list []trace.Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRACE\tROOT\tROUTE\tSTARTED\tDURATION\tHOPS\tERRORS\tGUESSED")
	for _, s := range list {
		route := strings.TrimSpace(s.Method + " " + s.Route)
		if s.Query != "" {
			route += "?" + s.Query
		}
		if s.Status != 0 {
			route += fmt.Sprintf(" → %d", s.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", s.TraceID, s.Root, route,
			s.Start.Local().Format("15:04:05.000"), fmtDuration(s.Duration), s.Spans, s.Errors, s.Ambiguous)
	}
	return tw.Flush()
}

func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

type traceOptions struct {
	format  string
	width   int
	noColor bool
}

func newTraceCmd(g *globalOptions) *cobra.Command {
	o := &traceOptions{}
	cmd := &cobra.Command{
		Use:   "trace TRACE_ID",
		Short: "Show one trace as a waterfall: every hop, nested, with timing bars",
		Long: `trace draws one trace: a row per hop, nested under the hop that caused it,
with its status, total and self time (less the time its own calls took), and
a bar to scale showing when it ran. A line above says where the time went
(the hop on the critical path with the most self time) and, for a failing
trace, where the error started (the deepest failed hop whose own calls
succeeded) and who swallowed it. The critical path (*) is marked, failed hops
(!, 5xx, gRPC error, transport error), client errors (x, 4xx) and injected
faults (devstack fault) shown under their hop ("+300 ms injected"), and links devstack had to infer (a service that dropped
the trace context) marked ~ when certain and ? when guessed among several.

TRACE_ID is the id as traces prints it, 16 hex digits for a 64-bit id, or a
unique prefix of 4 or more digits. The waterfall is as wide as the terminal.

--format json prints the spans, headers included (credentials redacted), with
self_time, critical_path, error_origin, client_error and link.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return errors.New("trace takes one trace id, e.g. `devstack trace 4bf92f3577b34da6a3ce929d0e0e4736`; `devstack traces` lists them")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix, isPrefix := traceIDPrefix(args[0])
			var id trace.TraceID
			if !isPrefix {
				var err error
				if id, err = parseTraceArg(args[0]); err != nil {
					return err
				}
			}
			if o.format != "waterfall" && o.format != "json" {
				return fmt.Errorf("--format %q: use waterfall or json", o.format)
			}
			if o.width < render.MinWaterfallWidth || o.width > render.MaxWaterfallWidth {
				return fmt.Errorf("--width %d: want %d to %d columns", o.width, render.MinWaterfallWidth, render.MaxWaterfallWidth)
			}
			src, _, err := g.traceSource(cmd.Context())
			if err != nil {
				return err
			}
			defer src.Close()
			if isPrefix {
				if id, err = resolvePrefix(cmd.Context(), src, prefix); err != nil {
					return err
				}
			}
			narrow(src, []trace.TraceID{id})
			spans, err := src.Trace(cmd.Context(), id)
			if err != nil {
				return err
			}
			if o.format == "json" {
				return writeJSON(g.stdout, render.Views(spans))
			}
			return render.Waterfall(g.stdout, spans, render.WaterfallOptions{
				Width: waterfallWidth(o.width, cmd.Flags().Changed("width"), terminalWidth(g.stdout)),
				Color: !o.noColor && os.Getenv("NO_COLOR") == "" && isTerminal(g.stdout),
			})
		},
	}
	cmd.Flags().StringVar(&o.format, "format", "waterfall", "output format: waterfall or json")
	cmd.Flags().IntVar(&o.width, "width", 100, fmt.Sprintf("width of the waterfall in columns (%d to %d); default: the terminal's width, or 100 when not a terminal", render.MinWaterfallWidth, render.MaxWaterfallWidth))
	cmd.Flags().BoolVar(&o.noColor, "no-color", false, "no colours (also when NO_COLOR is set)")
	return cmd
}

func newTracesExportCmd(g *globalOptions) *cobra.Command {
	var format string
	var limit int
	cmd := &cobra.Command{
		Use:   "export [TRACE_ID...]",
		Short: "Write traces as OTLP/JSON, for Jaeger or any OTLP tool",
		Long: `export writes the named traces (the most recent ones when none is named,
up to --limit) as one OTLP/JSON ExportTraceServiceRequest on stdout, which
Jaeger's UI (Search → Upload JSON) and OTLP tools can load.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "otlp-json" {
				return fmt.Errorf("--format %q: only otlp-json is supported", format)
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want how many recent traces to export, e.g. 20", limit)
			}
			var ids []trace.TraceID
			var prefixes []string
			for _, a := range args {
				if p, ok := traceIDPrefix(a); ok {
					prefixes = append(prefixes, p)
					continue
				}
				id, err := parseTraceArg(a)
				if err != nil {
					return err
				}
				if !slices.Contains(ids, id) { // each trace once
					ids = append(ids, id)
				}
			}
			src, _, err := g.traceSource(cmd.Context())
			if err != nil {
				return err
			}
			defer src.Close()
			for _, p := range prefixes {
				id, err := resolvePrefix(cmd.Context(), src, p)
				if err != nil {
					return err
				}
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			if len(ids) == 0 {
				list, err := src.Traces(cmd.Context(), trace.Query{Limit: limit})
				if err != nil {
					return err
				}
				for _, s := range list {
					ids = append(ids, s.TraceID)
				}
			}
			narrow(src, ids)
			var all []*trace.Span
			for _, id := range ids {
				spans, err := src.Trace(cmd.Context(), id)
				if err != nil {
					return err
				}
				all = append(all, spans...)
			}
			return render.WriteOTLPJSON(g.stdout, all)
		},
	}
	cmd.Flags().StringVar(&format, "format", "otlp-json", "export format: otlp-json")
	cmd.Flags().IntVarP(&limit, "limit", "n", 100, "with no ids, export this many recent traces")
	return cmd
}

// waterfallWidth is the waterfall's width: --width when given, else the
// terminal's (term, 0 when stdout is not a terminal) within the
// waterfall's bounds, else the flag's default.
func waterfallWidth(flag int, given bool, term int) int {
	if given || term <= 0 {
		return flag
	}
	return min(max(term, render.MinWaterfallWidth), render.MaxWaterfallWidth)
}

// traceIDPrefix reports whether a is a trace id prefix rather than a
// whole id: 4 to 31 hex digits, but not 16 (a 64-bit id), as git takes
// a hash's prefix.
func traceIDPrefix(a string) (string, bool) {
	s := strings.ToLower(a)
	if len(s) < 4 || len(s) >= 32 || len(s) == 16 {
		return "", false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return s, true
}

// resolvePrefix finds the one trace whose id starts with prefix; none, or
// several (listed, with their roots), is an error.
func resolvePrefix(ctx context.Context, src traceSource, prefix string) (trace.TraceID, error) {
	const show = 10
	list, err := src.Traces(ctx, trace.Query{IDPrefix: prefix, Limit: show + 1})
	if err != nil {
		return trace.TraceID{}, err
	}
	switch len(list) {
	case 0:
		return trace.TraceID{}, fmt.Errorf("no trace id starts with %q; `devstack traces` lists the recorded ones", prefix)
	case 1:
		return list[0].TraceID, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "trace id prefix %q is ambiguous; type more of the id. It starts:", prefix)
	for i, s := range list {
		if i == show {
			b.WriteString("\n  …and more")
			break
		}
		fmt.Fprintf(&b, "\n  %s  %s %s %s", s.TraceID, s.Root, strings.TrimSpace(s.Method+" "+s.Route), s.Start.Local().Format("15:04:05.000"))
	}
	return trace.TraceID{}, errors.New(b.String())
}

// parseTraceArg reads a trace id as a user types it: 32 hex digits in any
// case, or 16 for a 64-bit id (B3, Jaeger), which devstack keeps with the
// high half zero.
func parseTraceArg(a string) (trace.TraceID, error) {
	s := strings.ToLower(a)
	if len(s) == 16 {
		s = strings.Repeat("0", 16) + s
	}
	id, ok := trace.ParseTraceID(s)
	if !ok {
		if strings.Trim(s, "0") == "" && len(s) == 32 {
			return id, fmt.Errorf("trace id %q: all zeros is never a trace id (the spec reserves it for \"none\")", a)
		}
		return id, fmt.Errorf("trace id %q: want 32 hex digits (or 16 for a 64-bit id), as `devstack traces` prints them, or a unique prefix of 4 or more", a)
	}
	return id, nil
}
