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
	r := waterfall{
		tree:   tr,
		color:  opts.Color,
		labelW: (width - 15) * 45 / 100,
		crit:   make(map[int]bool),
		b:      &b,
	}
	r.barW = width - 15 - r.labelW
	r.t0, r.total = tr.extent()
	for _, i := range tr.critical() {
		r.crit[i] = true
	}
	r.header()
	for _, i := range tr.top {
		r.row(i, "", "")
	}
	r.footnotes()
	_, err := io.WriteString(w, b.String())
	return err
}

// CriticalPath returns the chain of spans that determines the trace's
// end-to-end latency: from the root (the earliest span without a parent in
// the trace), repeatedly the child that ends last.
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

// critical returns the critical path as indexes into t.spans.
func (t *spanTree) critical() []int {
	if len(t.top) == 0 {
		return nil
	}
	var path []int
	seen := make(map[int]bool)
	for n := t.top[0]; n >= 0 && !seen[n]; {
		seen[n] = true
		path = append(path, n)
		next := -1
		for _, c := range t.children[n] {
			if next < 0 || t.spans[c].End().After(t.spans[next].End()) {
				next = c
			}
		}
		n = next
	}
	return path
}

type waterfall struct {
	tree         *spanTree
	color        bool
	labelW, barW int
	t0           time.Time
	total        time.Duration
	crit         map[int]bool
	b            *strings.Builder
	seen         []bool
	inferredFrom []string // callers of inferred links, for the footnote
	hasOrphan    bool
	failedNotes  []string
}

func (r *waterfall) header() {
	errs := 0
	for _, s := range r.tree.spans {
		if s.Failed() {
			errs++
		}
	}
	fmt.Fprintf(r.b, "trace %s · %d spans · %s", r.tree.spans[0].TraceID, len(r.tree.spans), formatDuration(r.total))
	if errs > 0 {
		fmt.Fprintf(r.b, " · %d failed", errs)
	}
	r.b.WriteByte('\n')
	// The time axis over the bar column.
	end := formatDuration(r.total)
	pad := 2 + r.labelW + 1 + 3 + 1 + 7 + 1
	r.b.WriteString(strings.Repeat(" ", pad))
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
	if failed {
		mark[1] = '!'
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
	label := hopLabel(s)
	room := r.labelW - 1 - utf8.RuneCountInString(branch)
	label = truncate(label, max(room, 1))
	plainW := utf8.RuneCountInString(branch) + utf8.RuneCountInString(label)
	r.paint(ansiDim, branchStyle(branch, s.Inferred, r.color))
	switch {
	case failed:
		r.paint(ansiRed, label)
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
	col := fmt.Sprintf("%3s %7s ", status, formatDuration(s.Duration))
	if failed {
		r.paint(ansiRed, col)
	} else {
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
	}

	// Children, then faults under the hop.
	kids := r.tree.children[i]
	childIndent := indent
	if branch != "" && branch != "^ " {
		childIndent = indent + "   "
		if strings.HasPrefix(branch, "├") {
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
		r.paint(ansiMagenta, "fault: "+strings.Join(s.Faults, ", "))
		r.b.WriteByte('\n')
	}
	for k, c := range kids {
		conn := "├"
		if k == len(kids)-1 {
			conn = "└"
		}
		link := "─ "
		if r.tree.spans[c].Inferred {
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
		r.b.WriteString(n)
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
	return strings.Replace(branch, "~", ansiYellow+"~"+ansiReset+ansiDim, 1)
}

// hopLabel is "caller → callee METHOD route", or "… tcp" for a TCP hop.
func hopLabel(s *trace.Span) string {
	caller := s.Caller
	if caller == "" {
		caller = "client"
	}
	what := otlpName(s)
	if s.Query != "" {
		what += "?" + s.Query
	}
	if what == "" {
		return caller + " → " + s.Callee
	}
	return caller + " → " + s.Callee + " " + what
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
