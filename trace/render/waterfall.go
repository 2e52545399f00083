package render

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/devstack/devstack/trace"
)

// WaterfallOptions configures Waterfall.
type WaterfallOptions struct {
	// Width is the total width in columns. Default 100; it is kept within
	// MinWaterfallWidth and MaxWaterfallWidth.
	Width int
	// Color marks rows with ANSI escapes: errors red, the critical path
	// bold, inferred links yellow, faults magenta. The text markers are
	// written either way, so the output reads the same without colour.
	Color bool
}

// The waterfall's width bounds, in columns: below the least, labels and
// bars have no room; beyond the most, no terminal shows it (and a row
// would cost memory for nothing).
const (
	MinWaterfallWidth = 60
	MaxWaterfallWidth = 1000
)

const (
	defaultWaterfallWidth = 100

	ansiReset   = "\x1b[0m"
	ansiBold    = "\x1b[1m"
	ansiRed     = "\x1b[31m"
	ansiYellow  = "\x1b[33m"
	ansiMagenta = "\x1b[35m"
	ansiDim     = "\x1b[2m"
)

// Waterfall draws one trace as a terminal waterfall: one row per hop,
// nested under its parent, with the status, the duration and a bar placed
// on the trace's time axis.
//
//	trace ab000000000000000000000000000002 · 3 spans · 60.0ms · 2 failed
//	                                                     0                  60.0ms
//	*  client → gateway GET /gateway         200  60.0ms █████████████████████████
//	*! └─ gateway → orders GET /orders       503  50.0ms    ██████████████████████
//	*!    └─ orders → payments GET /payment… ERR  1.00ms      ▏
//
// Markers in the first two columns: '*' is on the critical path (see
// CriticalPath), '!' failed (Span.Failed). In the tree, '~' is a parent
// link the proxy inferred because the caller did not propagate trace
// context, and '^' a span whose parent is not in the trace (shown at the
// top level). Faults appear on a line under their hop; footnotes explain
// the markers that occur.
func Waterfall(w io.Writer, spans []*trace.Span, opts WaterfallOptions) error {
	width := cmp.Or(opts.Width, defaultWaterfallWidth)
	width = min(max(width, MinWaterfallWidth), MaxWaterfallWidth)
	var b strings.Builder
	if len(spans) == 0 {
		b.WriteString("(no spans)\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	tr := newSpanTree(spans)
	an := analyze(tr)
	r := waterfall{
		tree:   tr,
		an:     an,
		color:  opts.Color,
		width:  width,
		labelW: (width - fixedCols) * 45 / 100,
		crit:   make(map[int]bool),
		b:      &b,
	}
	r.barW = width - fixedCols - r.labelW
	r.t0, r.total = an.t0, an.total
	for i, on := range an.critical {
		if on {
			r.crit[i] = true
		}
	}
	r.header()
	for _, i := range tr.top {
		r.row(i, "", "")
	}
	r.footnotes()
	_, err := io.WriteString(w, b.String())
	return err
}

// fixedCols are a row's columns besides the label and the bar: the
// markers and a space, then status, duration and self time.
const fixedCols = 3 + len("500 ") + len(" 1.00ms ") + len(" 1.00ms ")

// CriticalPath returns the spans that determine the trace's end-to-end
// latency, by start: from the root (the earliest span without a parent in
// the trace), walking back from a hop's end through the child that was
// last blocking it, then on from that child's start, and into each child
// taken. Sequential calls are all on it; of calls made in parallel, only
// the one waited for.
func CriticalPath(spans []*trace.Span) []trace.SpanID {
	if len(spans) == 0 {
		return nil
	}
	tr := newSpanTree(spans)
	var ids []trace.SpanID
	for _, i := range tr.critical() {
		ids = append(ids, tr.spans[i].SpanID)
	}
	return ids
}

// spanTree is a trace's spans arranged by parent.
type spanTree struct {
	spans    []*trace.Span // by start
	children [][]int       // indexes into spans, by start
	top      []int         // roots and orphans, by start
	orphan   []bool        // has a parent id that is not in the trace
}

func newSpanTree(in []*trace.Span) *spanTree {
	spans := slices.Clone(in)
	slices.SortStableFunc(spans, func(a, b *trace.Span) int { return a.Start.Compare(b.Start) })
	t := &spanTree{spans: spans, children: make([][]int, len(spans)), orphan: make([]bool, len(spans))}
	byID := make(map[trace.SpanID]int, len(spans))
	for i, s := range spans {
		if _, dup := byID[s.SpanID]; !dup {
			byID[s.SpanID] = i
		}
	}
	for i, s := range spans {
		p, ok := byID[s.ParentID]
		switch {
		case !s.ParentID.IsValid() || p == i:
			t.top = append(t.top, i)
		case !ok:
			t.orphan[i] = true
			t.top = append(t.top, i)
		default:
			t.children[p] = append(t.children[p], i)
		}
	}
	// Spans in a parent cycle are unreachable from the top: promote the
	// earliest of each cycle so that every span is drawn once.
	seen := make([]bool, len(spans))
	var visit func(int)
	visit = func(i int) {
		seen[i] = true
		for _, c := range t.children[i] {
			if !seen[c] {
				visit(c)
			}
		}
	}
	for _, i := range t.top {
		visit(i)
	}
	for i := range spans {
		if !seen[i] {
			t.orphan[i] = true
			t.top = append(t.top, i)
			visit(i)
		}
	}
	slices.Sort(t.top)
	return t
}

// extent returns the trace's start and total duration (at least 1ns).
func (t *spanTree) extent() (time.Time, time.Duration) {
	t0, end := t.spans[0].Start, t.spans[0].End()
	for _, s := range t.spans {
		if s.End().After(end) {
			end = s.End()
		}
	}
	return t0, max(end.Sub(t0), 1)
}

type waterfall struct {
	tree         *spanTree
	an           *analysis
	color        bool
	width        int
	labelW, barW int
	t0           time.Time
	total        time.Duration
	crit         map[int]bool
	b            *strings.Builder
	seen         []bool
	inferredFrom []string // callers of inferred links, for the footnote
	guessed      []string // notes on ambiguous inferred links
	hasOrphan    bool
	failedNotes  []string
	clientNotes  []string
}

func (r *waterfall) header() {
	errs, client, guessed := 0, 0, 0
	for _, s := range r.tree.spans {
		switch {
		case s.Failed():
			errs++
		case s.ClientError():
			client++
		}
		if s.Ambiguous() {
			guessed++
		}
	}
	fmt.Fprintf(r.b, "trace %s · %d spans · %s", r.tree.spans[0].TraceID, len(r.tree.spans), formatDuration(r.total))
	if errs > 0 {
		fmt.Fprintf(r.b, " · %d failed", errs)
	}
	switch {
	case client == 1:
		r.b.WriteString(" · 1 client error")
	case client > 1:
		fmt.Fprintf(r.b, " · %d client errors", client)
	}
	switch {
	case guessed == 1:
		r.b.WriteString(" · 1 guessed link")
	case guessed > 1:
		fmt.Fprintf(r.b, " · %d guessed links", guessed)
	}
	r.b.WriteByte('\n')
	// The summary: where the time went, and where an error started.
	tl, el, oneLine := r.an.summary(r.width)
	r.b.WriteString(tl)
	if el != "" {
		if oneLine {
			r.b.WriteString(" · ")
		} else {
			r.b.WriteByte('\n')
		}
		r.paint(ansiRed, el)
	}
	r.b.WriteByte('\n')
	// The time axis over the bar column, and the columns' names.
	end := formatDuration(r.total)
	r.b.WriteString(strings.Repeat(" ", 3+r.labelW))
	fmt.Fprintf(r.b, "%3s %7s %7s ", "", "total", "self")
	r.b.WriteString("0")
	r.b.WriteString(strings.Repeat(" ", max(1, r.barW-1-utf8.RuneCountInString(end))))
	r.b.WriteString(end)
	r.b.WriteByte('\n')
	r.seen = make([]bool, len(r.tree.spans))
}

// row writes span i and its subtree. branch is the tree connector before
// its label, indent the prefix for the lines below it.
func (r *waterfall) row(i int, branch, indent string) {
	if r.seen[i] {
		return
	}
	r.seen[i] = true
	s := r.tree.spans[i]
	failed := s.Failed()

	// Markers.
	mark := []byte("  ")
	if r.crit[i] {
		mark[0] = '*'
	}
	switch {
	case failed:
		mark[1] = '!'
	case s.ClientError():
		mark[1] = 'x'
	}
	r.b.Write(mark)
	r.b.WriteByte(' ')

	// Tree and label, padded to the label column.
	if r.tree.orphan[i] {
		branch = "^ "
		r.hasOrphan = true
	}
	if s.Inferred && !slices.Contains(r.inferredFrom, s.Caller) {
		r.inferredFrom = append(r.inferredFrom, s.Caller)
	}
	room := r.labelW - 1 - utf8.RuneCountInString(branch)
	prefix := ""
	if s.Ambiguous() {
		// A guess is never drawn as a plain child: its label says so.
		prefix = fmt.Sprintf("(1 of %d?) ", s.Candidates)
		note := fmt.Sprintf("%s called %s while serving %d requests at once: the hop may belong to another trace",
			callerName(s), s.Callee, s.Candidates)
		if !slices.Contains(r.guessed, note) {
			r.guessed = append(r.guessed, note)
		}
	}
	label := prefix + fitLabel(s, room-utf8.RuneCountInString(prefix))
	label = truncate(label, max(room, 1))
	plainW := utf8.RuneCountInString(branch) + utf8.RuneCountInString(label)
	r.paint(ansiDim, branchStyle(branch, s.Inferred, r.color))
	switch {
	case failed:
		r.paint(ansiRed, label)
	case s.ClientError():
		r.paint(ansiYellow, label)
	case s.Ambiguous():
		r.paint(ansiDim, label)
	case r.crit[i]:
		r.paint(ansiBold, label)
	default:
		r.b.WriteString(label)
	}
	r.b.WriteString(strings.Repeat(" ", max(r.labelW-plainW, 1)))

	// Status and duration.
	status := "-"
	switch {
	case s.Status != 0:
		status = fmt.Sprint(s.Status)
	case s.Error != "":
		status = "ERR"
	}
	col := fmt.Sprintf("%3s %7s %7s ", status, formatDuration(s.Duration), formatDuration(r.an.self[i]))
	switch {
	case failed:
		r.paint(ansiRed, col)
	case s.ClientError():
		r.paint(ansiYellow, col)
	default:
		r.b.WriteString(col)
	}

	// Bar.
	lead, bar := r.bar(s)
	r.b.WriteString(lead)
	switch {
	case failed:
		r.paint(ansiRed, bar)
	case r.crit[i]:
		r.paint(ansiBold, bar)
	default:
		r.b.WriteString(bar)
	}
	r.b.WriteByte('\n')

	if failed {
		_, msg := otlpError(s)
		r.failedNotes = append(r.failedNotes, fmt.Sprintf("%s: %s", hopLabel(s), msg))
	} else if s.ClientError() {
		r.clientNotes = append(r.clientNotes, fmt.Sprintf("%s: HTTP %d", hopLabel(s), s.Status))
	}

	// Children, then faults under the hop.
	kids := r.tree.children[i]
	childIndent := indent
	if branch != "" && branch != "^ " {
		childIndent = indent + "   "
		if strings.HasPrefix(strings.TrimPrefix(branch, indent), "├") {
			childIndent = indent + "│  "
		}
	}
	if len(s.Faults) > 0 {
		r.b.WriteString("   ")
		cont := "   "
		if len(kids) > 0 {
			cont = "│  "
		}
		r.b.WriteString(childIndent)
		r.b.WriteString(cont)
		r.paint(ansiMagenta, injected(s.Faults))
		r.b.WriteByte('\n')
	}
	for k, c := range kids {
		conn := "├"
		if k == len(kids)-1 {
			conn = "└"
		}
		link := "─ "
		switch cs := r.tree.spans[c]; {
		case cs.Ambiguous():
			link = "? "
		case cs.Inferred:
			link = "~ "
		}
		r.row(c, childIndent+conn+link, childIndent)
	}
}

// bar renders s on the time axis: the blank lead, then full blocks for its
// extent, or a thin mark for a hop shorter than half a column.
func (r *waterfall) bar(s *trace.Span) (lead, bar string) {
	scale := float64(r.barW) / float64(r.total)
	a := min(int(math.Round(float64(s.Start.Sub(r.t0))*scale)), r.barW)
	z := min(int(math.Round(float64(s.End().Sub(r.t0))*scale)), r.barW)
	if z <= a {
		return strings.Repeat(" ", min(a, r.barW-1)), "▏"
	}
	return strings.Repeat(" ", a), strings.Repeat("█", z-a)
}

func (r *waterfall) footnotes() {
	var notes []string
	if len(r.crit) > 0 {
		notes = append(notes, "* critical path: the hops that set the end-to-end latency")
	}
	for _, f := range r.failedNotes {
		notes = append(notes, "! "+f)
	}
	for _, f := range r.clientNotes {
		notes = append(notes, "x client error (4xx, the request was refused as made): "+f)
	}
	for _, g := range r.guessed {
		notes = append(notes, "? guessed: "+g)
	}
	for _, c := range r.inferredFrom {
		if c == "" {
			c = "the client"
		}
		notes = append(notes, fmt.Sprintf("~ inferred: %s does not propagate trace context", c))
	}
	if r.hasOrphan {
		notes = append(notes, "^ parent not in this trace (not recorded, or evicted)")
	}
	if len(notes) == 0 {
		return
	}
	r.b.WriteByte('\n')
	for _, n := range notes {
		r.b.WriteString(wrap(n, r.width, "  "))
		r.b.WriteByte('\n')
	}
}

// paint writes s, wrapped in the ANSI style when colour is on.
func (r *waterfall) paint(style, s string) {
	if !r.color || s == "" {
		r.b.WriteString(s)
		return
	}
	r.b.WriteString(style)
	r.b.WriteString(s)
	r.b.WriteString(ansiReset)
}

// branchStyle returns the tree connector, with an inferred link's '~' in
// yellow when colour is on.
func branchStyle(branch string, inferred, color bool) string {
	if !color || !inferred {
		return branch
	}
	for _, m := range []string{"~", "?"} {
		if strings.Contains(branch, m) {
			return strings.Replace(branch, m, ansiYellow+m+ansiReset+ansiDim, 1)
		}
	}
	return branch
}

// callerName is the hop's caller, "the client" for one outside the stack.
func callerName(s *trace.Span) string {
	if s.Caller == "" {
		return "the client"
	}
	return s.Caller
}

// hopLabel is "caller → callee METHOD route", or "… tcp" for a TCP hop.
func hopLabel(s *trace.Span) string {
	if s.Query == "" {
		return hopBase(s)
	}
	return hopBase(s) + "?" + s.Query
}

// hopBase is hopLabel without the query.
func hopBase(s *trace.Span) string {
	caller := s.Caller
	if caller == "" {
		caller = "client"
	}
	what := otlpName(s)
	if what == "" {
		return caller + " → " + s.Callee
	}
	return caller + " → " + s.Callee + " " + what
}

// fitLabel is hopLabel within room runes: the query is shortened first,
// so that the route shows whole when it can.
func fitLabel(s *trace.Span, room int) string {
	full := hopLabel(s)
	if s.Query == "" || utf8.RuneCountInString(full) <= room {
		return full
	}
	base := hopBase(s)
	if left := room - utf8.RuneCountInString(base) - 1; left >= 4 {
		return base + "?" + truncate(s.Query, left)
	}
	return base
}

// wrap breaks s into lines of at most width runes at spaces, the lines
// after the first indented; a word longer than a line is cut.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(s) {
		n := utf8.RuneCountInString(word)
		switch {
		case i == 0:
		case line+1+n <= width:
			b.WriteByte(' ')
			line++
		default:
			b.WriteByte('\n')
			b.WriteString(indent)
			line = utf8.RuneCountInString(indent)
		}
		word = truncate(word, max(width-line, 1))
		b.WriteString(word)
		line += utf8.RuneCountInString(word)
	}
	return b.String()
}

// truncate shortens s to n runes, ending in '…' when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return string(runes[:n-1]) + "…"
}

// formatDuration gives at most 7 columns: 850µs, 4.25ms, 42.5ms, 425ms,
// 4.25s, 42.5s, 425s.
func formatDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", ms)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", ms)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", ms)
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < 100*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%.0fs", d.Seconds())
}

// injected says what devstack injected into a hop, so that its delay is
// never read as the service's: "+200 ms injected", "abort 503 injected",
// "+50 ms injected on the response".
func injected(faults []string) string {
	parts := make([]string, len(faults))
	for i, f := range faults {
		rest, onResp := strings.CutSuffix(f, " on response")
		if d, ok := strings.CutPrefix(rest, "latency "); ok {
			rest = "+" + spaceUnit(d) + " injected"
		} else {
			rest += " injected"
		}
		if onResp {
			rest += " on the response"
		}
		parts[i] = rest
	}
	return strings.Join(parts, ", ")
}

// spaceUnit writes a duration as "200 ms" rather than "200ms".
func spaceUnit(d string) string {
	i := strings.IndexFunc(d, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return d
	}
	return d[:i] + " " + d[i:]
}
