package render

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/devstack/devstack/trace"
)

// analysis is what a trace's spans tell beyond themselves: each hop's
// self time, the critical path, where the time went and where an error
// started. The waterfall and the JSON view share it.
type analysis struct {
	tree     *spanTree
	self     []time.Duration // per span of tree.spans
	critical []bool
	depth    []int
	// slowest is the hop on the critical path with the largest self time,
	// -1 when none.
	slowest int
	// origin is the hop where the error started: the deepest failed hop
	// whose own callees all succeeded; -1 when none failed. swallowedBy
	// is its nearest caller's hop that did not fail (a caller that
	// answered anyway), -1 when the failure reached the top.
	origin, swallowedBy int
	t0                  time.Time
	total               time.Duration
}

func analyze(tr *spanTree) *analysis {
	n := len(tr.spans)
	a := &analysis{tree: tr, self: make([]time.Duration, n), critical: make([]bool, n), depth: make([]int, n),
		slowest: -1, origin: -1, swallowedBy: -1}
	a.t0, a.total = tr.extent()
	parent := make([]int, n)
	for i := range parent {
		parent[i] = -1
	}
	for p, kids := range tr.children {
		for _, c := range kids {
			parent[c] = p
		}
	}
	seen := make([]bool, n)
	var walk func(i, d int)
	walk = func(i, d int) {
		seen[i], a.depth[i] = true, d
		a.self[i] = selfTime(tr.spans[i], tr.spans, tr.children[i])
		for _, c := range tr.children[i] {
			if !seen[c] {
				walk(c, d+1)
			}
		}
	}
	for _, i := range tr.top {
		if !seen[i] {
			walk(i, 0)
		}
	}
	for _, i := range tr.critical() {
		a.critical[i] = true
		if a.slowest < 0 || a.self[i] > a.self[a.slowest] {
			a.slowest = i
		}
	}
	for i, s := range tr.spans {
		if !s.Failed() || slices.ContainsFunc(tr.children[i], func(c int) bool { return tr.spans[c].Failed() }) {
			continue
		}
		if a.origin < 0 || a.depth[i] > a.depth[a.origin] ||
			a.depth[i] == a.depth[a.origin] && a.critical[i] && !a.critical[a.origin] {
			a.origin = i
		}
	}
	if a.origin >= 0 {
		hops := 0
		for p := parent[a.origin]; p >= 0 && hops < n; p, hops = parent[p], hops+1 {
			if !tr.spans[p].Failed() {
				a.swallowedBy = p
				break
			}
		}
	}
	return a
}

// selfTime is s's duration less the time covered by its children (within
// s): the time its own service spent, not waiting on a call.
func selfTime(s *trace.Span, spans []*trace.Span, kids []int) time.Duration {
	start, end := s.Start, s.End()
	type iv struct{ a, z time.Time }
	ivs := make([]iv, 0, len(kids))
	for _, c := range kids {
		a, z := spans[c].Start, spans[c].End()
		if a.Before(start) {
			a = start
		}
		if z.After(end) {
			z = end
		}
		if z.After(a) {
			ivs = append(ivs, iv{a, z})
		}
	}
	slices.SortFunc(ivs, func(x, y iv) int { return x.a.Compare(y.a) })
	covered := time.Duration(0)
	var cur iv
	for i, v := range ivs {
		switch {
		case i == 0:
			cur = v
		case !v.a.After(cur.z):
			if v.z.After(cur.z) {
				cur.z = v.z
			}
		default:
			covered += cur.z.Sub(cur.a)
			cur = v
		}
	}
	if len(ivs) > 0 {
		covered += cur.z.Sub(cur.a)
	}
	return max(s.Duration-covered, 0)
}

// asyncSlack is how much later than its caller's hop a call may end and
// still count as waited for: a streamed answer is relayed as it comes, so
// the callee's hop can end a moment after its caller's.
const asyncSlack = time.Millisecond

// critical returns the critical path as indexes into t.spans, by start:
// from the first top-level span, walking back from a hop's end through
// the child that was last blocking it (the one that ended last, at or
// before that point), then on from that child's start, and so into each
// child taken. So sequential calls are all on it, and of parallel calls
// only the one the hop waited for.
func (t *spanTree) critical() []int {
	if len(t.top) == 0 {
		return nil
	}
	on := make([]bool, len(t.spans))
	var walk func(n int)
	walk = func(n int) {
		on[n] = true
		parent := t.spans[n]
		cursor := parent.End()
		for {
			next := -1
			var nextEnd time.Time
			for _, c := range t.children[n] {
				s := t.spans[c]
				if on[c] {
					continue
				}
				end := s.End()
				if end.After(parent.End().Add(asyncSlack)) {
					continue // left running when the hop answered: it blocked nothing
				}
				if end.After(parent.End()) {
					end = parent.End()
				}
				if end.After(cursor) {
					continue // still running at the cursor: it did not block what follows
				}
				if next < 0 || end.After(nextEnd) {
					next, nextEnd = c, end
				}
			}
			if next < 0 {
				return
			}
			walk(next)
			cursor = t.spans[next].Start
		}
	}
	walk(t.top[0])
	var path []int
	for i, ok := range on {
		if ok {
			path = append(path, i)
		}
	}
	return path
}

// timeLine says where the time went, "" when the trace has no time, the
// hop named in the detail asked (see label).
func (a *analysis) timeLine(detail int) string {
	i := a.slowest
	if i < 0 || a.total <= 0 {
		return ""
	}
	share := float64(a.self[i]) / float64(a.total) * 100
	self := formatDuration(a.self[i]) + " self"
	if inj := injectedLatency(a.tree.spans[i].Faults); inj > 0 {
		// devstack's own delay is never read as the service's.
		self += ", " + formatDuration(min(inj, a.self[i])) + " of it injected"
	}
	return fmt.Sprintf("time: %.0f%% in %s (%s)", share, a.label(i, detail), self)
}

// injectedLatency sums the latencies among a hop's fault labels
// ("latency 300ms", "latency 50ms on response").
func injectedLatency(faults []string) time.Duration {
	var sum time.Duration
	for _, f := range faults {
		d, ok := strings.CutPrefix(strings.TrimSuffix(f, " on response"), "latency ")
		if !ok {
			continue
		}
		if v, err := time.ParseDuration(d); err == nil {
			sum += v
		}
	}
	return sum
}

// errorLine says where the error started, "" when no hop failed.
func (a *analysis) errorLine(detail int) string {
	i := a.origin
	if i < 0 {
		return ""
	}
	_, msg := otlpError(a.tree.spans[i])
	line := fmt.Sprintf("error started at %s (%s)", a.label(i, detail), msg)
	if w := a.swallowedBy; w >= 0 {
		ws := a.tree.spans[w]
		answer := "answered"
		if ws.Status != 0 {
			answer = fmt.Sprintf("answered %d", ws.Status)
		}
		line += fmt.Sprintf(", swallowed by %s (%s)", ws.Callee, answer)
	}
	return line
}

// label names hop i in as much detail as asked: 0 in full, 1 without
// its query, 2 by who called whom.
func (a *analysis) label(i int, detail int) string {
	s := a.tree.spans[i]
	switch detail {
	case 0:
		return hopLabel(s)
	case 1:
		return hopBase(s)
	}
	caller := s.Caller
	if caller == "" {
		caller = "client"
	}
	return caller + " → " + s.Callee
}

// summary is what goes above the waterfall: where the time went and, for
// a failing trace, where the error started. One line when it fits in
// width, the hops named in full, or without their query, or by who
// called whom; otherwise
// the error gets a line of its own rather than be cut to nothing.
func (a *analysis) summary(width int) (timePart, errPart string, oneLine bool) {
	for _, d := range [][2]int{{0, 0}, {1, 0}, {1, 1}, {2, 1}, {2, 2}} {
		timePart, errPart = a.timeLine(d[0]), a.errorLine(d[1])
		n := utf8.RuneCountInString(timePart)
		if errPart != "" {
			n += 3 + utf8.RuneCountInString(errPart)
		}
		if n <= width {
			return timePart, errPart, true
		}
	}
	fit := func(line func(int) string) string {
		for d := range 2 {
			if s := line(d); utf8.RuneCountInString(s) <= width {
				return s
			}
		}
		return truncate(line(2), width)
	}
	errPart = fit(a.errorLine)
	return fit(a.timeLine), errPart, errPart == ""
}

// SpanView is a span with what the trace tells of it, for `devstack
// trace --format json`: the span's own fields, then these.
type SpanView struct {
	*trace.Span
	// SelfTime is the hop's duration less the time its calls covered.
	SelfTime time.Duration `json:"self_time"`
	// Critical is set on the hops of the critical path (see CriticalPath).
	Critical bool `json:"critical_path,omitempty"`
	// ErrorOrigin is set on the hop where the trace's error started: the
	// deepest failed hop whose own calls succeeded.
	ErrorOrigin bool `json:"error_origin,omitempty"`
	// ClientError is set on a hop answered with a 4xx.
	ClientError bool `json:"client_error,omitempty"`
	// Link says how the hop's parent is known: "" when the caller sent
	// the context, "inferred" when the caller was serving one request (a
	// certain link), "guessed" when it was serving several (Candidates).
	Link string `json:"link,omitempty"`
}

// Views returns the spans of one trace, ordered by start, with their self
// time, critical path, error origin and link evidence.
func Views(spans []*trace.Span) []SpanView {
	if len(spans) == 0 {
		return []SpanView{}
	}
	tr := newSpanTree(spans)
	an := analyze(tr)
	out := make([]SpanView, len(tr.spans))
	for i, s := range tr.spans {
		v := SpanView{Span: s, SelfTime: an.self[i], Critical: an.critical[i], ErrorOrigin: i == an.origin, ClientError: s.ClientError()}
		switch {
		case s.Ambiguous():
			v.Link = "guessed"
		case s.Inferred:
			v.Link = "inferred"
		}
		out[i] = v
	}
	return out
}
