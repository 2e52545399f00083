package store

import (
	"cmp"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/devstack/devstack/trace"
)

// storedSpan is the compact in-memory form of a Span. Its strings are
// interned (service names, protocol, method, route, header names and the
// values of low-cardinality headers all point at one shared copy), the trace
// id lives once in the traceEntry, headers are pointers to shared pairs, and
// the rarely set fields sit behind one pointer. A typical hop costs about
// half a kilobyte (see BenchmarkStoreMemory).
type storedSpan struct {
	id, parent trace.SpanID
	start      int64 // wall clock, Unix nanoseconds
	dur, ttfb  time.Duration
	bytesIn    int64
	bytesOut   int64

	caller, callee, protocol, method, route string
	requestID                               string

	status, grpcStatus int32
	seg                uint32 // log segment holding the record; 0 when not persisted
	nReq               uint16 // hdrs[:nReq] are request headers, the rest response headers
	inferred           bool
	candidates         uint8 // Span.Candidates, at most maxCandidates

	hdrs []*trace.Header
	// slab holds the per-request pairs hdrs points to, so that an evicted
	// span's is reused (see index.free). A pointer, not a slice: it keeps
	// storedSpan in its size class.
	slab  *[]trace.Header
	extra *spanExtra // nil for most hops
}

// spanExtra holds the fields a typical hop leaves empty.
type spanExtra struct {
	query             string
	err               string
	faults            []string
	reqBody, respBody string
}

// maxCandidates is the most link candidates a stored span tells apart:
// beyond it, a guess is as ambiguous as it gets.
const maxCandidates = 255

func (sp *storedSpan) ambiguous() bool { return sp.inferred && sp.candidates > 1 }

func (sp *storedSpan) query() string {
	if sp.extra == nil {
		return ""
	}
	return sp.extra.query
}

func (sp *storedSpan) end() int64 { return sp.start + int64(sp.dur) }

func (sp *storedSpan) failed() bool {
	return sp.status >= 500 || sp.grpcStatus > 0 || (sp.extra != nil && sp.extra.err != "")
}

// span expands sp into a fresh Span the caller owns.
func (sp *storedSpan) span(tid trace.TraceID) *trace.Span {
	s := &trace.Span{
		TraceID:    tid,
		SpanID:     sp.id,
		ParentID:   sp.parent,
		Inferred:   sp.inferred,
		Candidates: int(sp.candidates),
		Caller:     sp.caller,
		Callee:     sp.callee,
		Protocol:   sp.protocol,
		Method:     sp.method,
		Route:      sp.route,
		Status:     int(sp.status),
		GRPCStatus: int(sp.grpcStatus),
		Start:      time.Unix(0, sp.start),
		Duration:   sp.dur,
		TTFB:       sp.ttfb,
		BytesIn:    sp.bytesIn,
		BytesOut:   sp.bytesOut,
		RequestID:  sp.requestID,
	}
	if len(sp.hdrs) > 0 {
		all := make([]trace.Header, len(sp.hdrs))
		for i, h := range sp.hdrs {
			all[i] = *h
		}
		n := int(sp.nReq)
		if n > 0 {
			s.ReqHeaders = all[:n:n]
		}
		if n < len(all) {
			s.RespHeaders = all[n:]
		}
	}
	if x := sp.extra; x != nil {
		s.Error = x.err
		s.Query = x.query
		s.Faults = slices.Clone(x.faults)
		s.ReqBody, s.RespBody = x.reqBody, x.respBody
	}
	return s
}

// Interning limits. A string longer than maxInternLen is stored as its own
// copy. When a table reaches maxInterned entries it starts a new generation
// (it is cleared): spans keep the strings they hold, and new spans share
// fresh copies. That bounds the tables even when routes carry ids.
const (
	maxInternLen = 256
	maxInterned  = 1 << 14
)

// interner shares repeated strings and header pairs between stored spans.
// It is owned by the store's background goroutine (and by Open before that
// goroutine starts), so it needs no lock.
type interner struct {
	strs  map[string]string
	names map[string]*headerName // by header name as received
	pairs int                    // shared pairs, across names
	// own lists, after compact, the positions in the span's hdrs of the
	// per-request pairs it holds itself (for the log writer).
	own []int
	// from is compact's scratch: where each such pair came from.
	from []int
	// recent holds, per field of a span (see compact), the value it had
	// last, and byPos, per header position, the name that was there: hops
	// repeat them, and a comparison is cheaper than a map lookup.
	recent [4]string
	byPos  []*headerName
	// block is what is left of the block that per-span strings are cut
	// from (see cut).
	block []byte
}

// textBlock is the size of the blocks a span's own strings (its request
// id and per-request header values) are cut from, and cutAlone the size
// from which a string gets an allocation of its own.
const (
	textBlock = 4 << 10
	cutAlone  = 512
)

// cut returns a string of n bytes, filled by fill, cut from a block shared
// with the strings of the spans stored before and after it: one allocation
// per block rather than one per span. A block is never written again once
// cut, and lives as long as any string cut from it. Spans are evicted
// roughly in the order they were stored, so a block seldom outlives its
// own spans for long.
func (in *interner) cut(n int, fill func([]byte)) string {
	if n == 0 {
		return ""
	}
	var b []byte
	if n >= cutAlone {
		b = make([]byte, n)
	} else {
		if len(in.block) < n {
			in.block = make([]byte, textBlock)
		}
		b, in.block = in.block[:n:n], in.block[n:]
	}
	fill(b)
	return unsafe.String(&b[0], n)
}

// clone is strings.Clone with the copy cut from a shared block.
func (in *interner) clone(s string) string {
	return in.cut(len(s), func(b []byte) { copy(b, s) })
}

// headerName is what the interner knows of one header name: whether its
// values are per request, and its shared pairs. A name's value usually
// repeats from one hop to the next, so the last pair is tried first, by
// a string comparison, before any hashing of the value.
type headerName struct {
	name     string // the shared copy
	volatile bool
	last     *trace.Header
	byValue  map[string]*trace.Header
}

func newInterner() *interner {
	return &interner{strs: make(map[string]string), names: make(map[string]*headerName)}
}

// str returns the shared copy of s. It always returns memory the store owns,
// never a substring of the caller's buffers.
func (in *interner) str(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in.strs[s]; ok {
		return v
	}
	v := strings.Clone(s)
	if len(s) <= maxInternLen {
		if len(in.strs) >= maxInterned {
			clear(in.strs)
		}
		in.strs[v] = v
	}
	return v
}

// volatileHeaders name headers whose values differ on every request: sharing
// them would only grow the tables.
var volatileHeaders = []string{
	"traceparent", "tracestate", "sentry-trace", "baggage", "b3",
	"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
	"x-request-id", "x-correlation-id", "x-amzn-trace-id", "x-cloud-trace-context",
	"uber-trace-id", "grpc-trace-bin", "x-datadog-trace-id", "x-datadog-parent-id",
	"cookie", "set-cookie", "etag", "if-none-match", "digest", "content-md5",
}

// strAt is str for field f of a span, trying the value the field had last.
func (in *interner) strAt(f int, s string) string {
	if s == in.recent[f] {
		return in.recent[f]
	}
	v := in.str(s)
	in.recent[f] = v
	return v
}

// pair returns the shared copy of header pair h, at position i of a
// span's headers, or nil when the pair is per request: a volatile
// header's, or a value longer than maxInternLen.
func (in *interner) pair(i int, h trace.Header) *trace.Header {
	var n *headerName
	if i < len(in.byPos) && in.byPos[i] != nil && in.byPos[i].name == h.Name {
		n = in.byPos[i]
	} else {
		n = in.name(h.Name)
		for len(in.byPos) <= i && len(in.byPos) < maxPositions {
			in.byPos = append(in.byPos, nil)
		}
		if i < len(in.byPos) {
			in.byPos[i] = n
		}
	}
	if n.volatile || len(h.Value) > maxInternLen {
		return nil
	}
	if n.last != nil && n.last.Value == h.Value {
		return n.last
	}
	if p := n.byValue[h.Value]; p != nil {
		n.last = p
		return p
	}
	if in.pairs >= maxInterned {
		in.newGeneration()
		return in.pair(i, h)
	}
	p := &trace.Header{Name: n.name, Value: in.str(h.Value)}
	if n.byValue == nil {
		n.byValue = make(map[string]*trace.Header)
	}
	n.byValue[p.Value] = p
	n.last = p
	in.pairs++
	return p
}

// maxPositions bounds byPos: headers past it are looked up by name.
const maxPositions = 64

// name returns what the interner knows of header name.
func (in *interner) name(name string) *headerName {
	n := in.names[name]
	if n == nil {
		if len(in.names) >= maxInterned {
			in.newGeneration()
		}
		n = &headerName{name: in.str(name), volatile: slices.Contains(volatileHeaders, strings.ToLower(name))}
		in.names[n.name] = n
	}
	return n
}

// newGeneration forgets the shared pairs and names, bounding the tables
// when values never repeat (routes with ids in headers, dates): stored
// spans keep the pairs they point to, and new spans share fresh copies.
func (in *interner) newGeneration() {
	clear(in.names)
	clear(in.byPos)
	in.pairs = 0
}

// compact converts s into its stored form, in sp when it is not nil: a
// stored span evicted earlier (index.takeFree), whose header slices are
// reused.
func (in *interner) compact(s *trace.Span, seg uint32, sp *storedSpan) *storedSpan {
	in.own = in.own[:0]
	var hdrs []*trace.Header
	var slab *[]trace.Header
	if sp != nil {
		hdrs, slab = sp.hdrs[:0], sp.slab
	} else {
		sp = new(storedSpan)
	}
	*sp = storedSpan{
		id:         s.SpanID,
		parent:     s.ParentID,
		start:      s.Start.UnixNano(),
		dur:        s.Duration,
		ttfb:       s.TTFB,
		bytesIn:    s.BytesIn,
		bytesOut:   s.BytesOut,
		caller:     in.strAt(0, s.Caller),
		callee:     in.strAt(1, s.Callee),
		protocol:   in.strAt(2, s.Protocol),
		method:     in.strAt(3, s.Method),
		route:      in.str(s.Route),
		status:     int32(s.Status),
		grpcStatus: int32(s.GRPCStatus),
		seg:        seg,
		inferred:   s.Inferred,
		candidates: uint8(min(max(s.Candidates, 0), maxCandidates)),
		hdrs:       hdrs,
		slab:       slab,
	}
	if s.Error != "" || len(s.Faults) > 0 || s.ReqBody != "" || s.RespBody != "" || s.Query != "" {
		x := &spanExtra{
			query:    in.str(s.Query),
			err:      in.str(s.Error),
			reqBody:  strings.Clone(s.ReqBody),
			respBody: strings.Clone(s.RespBody),
		}
		if len(s.Faults) > 0 {
			x.faults = make([]string, len(s.Faults))
			for i, f := range s.Faults {
				x.faults[i] = in.str(f)
			}
		}
		sp.extra = x
	}
	nReq := min(len(s.ReqHeaders), 1<<16-1) // a limit no real request reaches
	n := nReq + len(s.RespHeaders)
	if n == 0 {
		sp.requestID = in.clone(s.RequestID)
		return sp
	}
	sp.nReq = uint16(nReq)
	at := func(i int) trace.Header {
		if i < nReq {
			return s.ReqHeaders[i]
		}
		return s.RespHeaders[i-nReq]
	}
	if cap(hdrs) >= n {
		sp.hdrs = hdrs[:n]
	} else {
		sp.hdrs = make([]*trace.Header, n)
	}
	vol := in.own[:0] // positions of per-request pairs
	defer func() { in.own = vol }()
	for i := range n {
		if p := in.pair(i, at(i)); p != nil {
			sp.hdrs[i] = p
		} else {
			vol = append(vol, i)
		}
	}
	if len(vol) == 0 {
		sp.requestID = in.clone(s.RequestID)
		return sp
	}
	// Per-request pairs share one slab, so a span costs one allocation for
	// all of them (none when an evicted span's slab is big enough); it is
	// never appended to past its capacity, so the pointers stay valid.
	// Their values and the request id are cut from one string: one
	// allocation more, not one per value. (Strings are not reused: a
	// reader may still hold a copy of the span.)
	if slab == nil || cap(*slab) < len(vol) {
		slab = new([]trace.Header)
		*slab = make([]trace.Header, 0, len(vol))
	}
	own := (*slab)[:0]
	from := in.from[:0] // own[j] is a copy of at(from[j])
	size := len(s.RequestID)
next:
	for _, i := range vol {
		h := at(i)
		// An echoed pair (X-Request-Id in the request and the response) is
		// stored once.
		for j, k := range from {
			if at(k) == h {
				sp.hdrs[i] = &own[j]
				continue next
			}
		}
		from = append(from, i)
		own = append(own, trace.Header{Name: in.str(h.Name)})
		sp.hdrs[i] = &own[len(own)-1]
		if h.Value != s.RequestID {
			size += len(h.Value)
		}
	}
	in.from = from
	*slab = own
	sp.slab = slab
	text := in.cut(size, func(b []byte) {
		b = b[copy(b, s.RequestID):]
		for _, k := range from {
			if v := at(k).Value; v != s.RequestID {
				b = b[copy(b, v):]
			}
		}
	})
	sp.requestID, text = text[:len(s.RequestID)], text[len(s.RequestID):]
	for j, k := range from {
		v := at(k).Value
		if v == s.RequestID {
			own[j].Value = sp.requestID
			continue
		}
		own[j].Value, text = text[:len(v)], text[len(v):]
	}
	return sp
}

// traceKey orders traces by start, then by id so that the order is total.
type traceKey struct {
	start int64
	id    trace.TraceID
}

func (a traceKey) compare(b traceKey) int {
	if c := cmp.Compare(a.start, b.start); c != 0 {
		return c
	}
	return slices.Compare(a.id[:], b.id[:])
}

// traceEntry is one trace in the index. Its summary fields are maintained as
// spans arrive.
type traceEntry struct {
	id         trace.TraceID
	start, end int64
	spans      []*storedSpan // by start; equal starts in arrival order
	errors     int
	ambiguous  int // spans whose inferred link is a guess
	root       *storedSpan
	ids        map[trace.SpanID]struct{} // span ids, built once the trace is large
	// first holds spans while the trace has one: most traces a proxy
	// under load records are one hop, and so cost no slice of their own.
	first [1]*storedSpan
}

const traceIDSetThreshold = 32

func (t *traceEntry) key() traceKey { return traceKey{t.start, t.id} }

func (t *traceEntry) has(id trace.SpanID) bool {
	if t.ids != nil {
		_, ok := t.ids[id]
		return ok
	}
	for _, sp := range t.spans {
		if sp.id == id {
			return true
		}
	}
	return false
}

// isTop reports whether sp has no parent within the trace.
func (t *traceEntry) isTop(sp *storedSpan) bool {
	return !sp.parent.IsValid() || sp.parent == sp.id || !t.has(sp.parent)
}

func (t *traceEntry) insert(sp *storedSpan) {
	i, _ := slices.BinarySearchFunc(t.spans, sp.start+1, func(e *storedSpan, start int64) int {
		if e.start < start {
			return -1
		}
		return 1
	})
	if t.spans == nil {
		t.first[0] = sp
		t.spans = t.first[:]
	} else {
		t.spans = slices.Insert(t.spans, i, sp)
	}
	if t.ids != nil {
		t.ids[sp.id] = struct{}{}
	} else if len(t.spans) > traceIDSetThreshold {
		t.ids = make(map[trace.SpanID]struct{}, len(t.spans)*2)
		for _, s := range t.spans {
			t.ids[s.id] = struct{}{}
		}
	}
	if sp.failed() {
		t.errors++
	}
	if sp.ambiguous() {
		t.ambiguous++
	}
	switch {
	case t.root != nil && t.root.parent == sp.id && t.root != sp:
		// The root just found its parent: look again.
		t.root = t.findRoot()
	case t.isTop(sp) && (t.root == nil || sp.start < t.root.start):
		t.root = sp
	}
}

// findRoot returns the earliest span without a parent in the trace.
func (t *traceEntry) findRoot() *storedSpan {
	for _, sp := range t.spans {
		if t.isTop(sp) {
			return sp
		}
	}
	if len(t.spans) > 0 { // a parent cycle: fall back to the earliest
		return t.spans[0]
	}
	return nil
}

// index is the in-memory span index: traces by id, plus the traces ordered
// by start for listing (newest first) and eviction (oldest first).
//
// Only the store's background goroutine mutates it, holding Store.mu for
// writing; readers hold it for reading.
type index struct {
	traces *traceTable
	order  []ordered // by key, ascending
	// orderBuf is order's whole backing array: evicting the oldest trace
	// slices order from the front, and the room left there is reused
	// (see makeRoom) instead of growing a new array.
	orderBuf []ordered
	spans    int
	max      int

	// mark is the eviction watermark: every trace whose key is at or
	// before it has been evicted, and a span of an unknown trace at or
	// before it is discarded as late. It only moves forward.
	mark    traceKey
	hasMark bool

	segLive map[uint32]int // live spans per log segment
	emptied []uint32       // segments whose last live span was just evicted

	evicted uint64 // traces evicted
	late    uint64 // spans discarded behind the watermark

	// free and freeTraces are evicted entries kept for reuse, so that a
	// full store under load allocates no span or trace entry per hop: the
	// collector then runs less often, and each run marks a heap that is
	// mostly the store.
	free       []*storedSpan
	freeTraces []*traceEntry
}

// ordered is a trace in index.order. It keeps the trace's start beside
// the pointer, so that placing a trace compares starts without loading
// every entry it passes (the id settles only equal starts).
type ordered struct {
	start int64
	t     *traceEntry
}

func (o ordered) compare(k traceKey) int {
	if o.start != k.start { // settled without loading the entry
		return cmp.Compare(o.start, k.start)
	}
	return o.t.key().compare(k)
}

func newIndex(maxSpans int) *index {
	return &index{
		traces:  newTraceTable(),
		max:     maxSpans,
		segLive: make(map[uint32]int),
	}
}

// behindMark reports whether k is at or before the watermark.
func (x *index) behindMark(k traceKey) bool {
	return x.hasMark && k.compare(x.mark) <= 0
}

// accepts reports whether a span of trace tid starting at start would be
// kept, and returns the trace's entry when it is known, for add. The store
// checks it before writing the span to the log, so the log replays to the
// same state.
func (x *index) accepts(tid trace.TraceID, start int64) (*traceEntry, bool) {
	if t := x.traces.get(tid); t != nil {
		return t, true
	}
	if x.behindMark(traceKey{start, tid}) {
		x.late++
		return nil, false
	}
	return nil, true
}

// add indexes sp in trace t, the entry accepts returned (nil for a new
// trace), and evicts whole oldest traces while the index holds more than
// max spans. It reports whether the watermark moved.
func (x *index) add(tid trace.TraceID, t *traceEntry, sp *storedSpan) (markMoved bool) {
	if t == nil {
		t = x.newTrace()
		t.id, t.start, t.end = tid, sp.start, sp.end()
		x.traces.put(t)
		x.insertOrder(t)
	} else {
		if sp.start < t.start {
			i := x.find(t.key())
			t.start = sp.start
			x.moveDown(i)
		}
		t.end = max(t.end, sp.end())
	}
	t.insert(sp)
	x.spans++
	x.segLive[sp.seg]++
	if x.behindMark(t.key()) {
		// A late span moved its trace behind the watermark: it was
		// evicted before, so it goes again.
		x.remove(x.find(t.key()))
	}
	for x.spans > x.max && len(x.order) > 0 {
		x.mark, x.hasMark = x.order[0].t.key(), true
		x.remove(0)
		markMoved = true
	}
	return markMoved
}

// applyMark moves the watermark to k (if later) and evicts the traces at or
// before it. Replay uses it for the watermark records in the log.
func (x *index) applyMark(k traceKey) {
	if !x.behindMark(k) {
		x.mark, x.hasMark = k, true
	}
	for len(x.order) > 0 && x.behindMark(x.order[0].t.key()) {
		x.remove(0)
	}
}

func (x *index) find(k traceKey) int {
	i, ok := slices.BinarySearchFunc(x.order, k, ordered.compare)
	if !ok {
		panic("trace: index order lost a trace") // an invariant, not an input error
	}
	return i
}

// makeRoom makes room for one more trace at the end of order, moving it
// back to the start of its array when eviction has freed enough there.
func (x *index) makeRoom() {
	n := len(x.order)
	if n < cap(x.order) {
		return
	}
	if cap(x.orderBuf)-n > n/4 {
		copy(x.orderBuf, x.order)
		clear(x.orderBuf[n:])
		x.order = x.orderBuf[:n]
		return
	}
	x.order = slices.Grow(x.order, n/4+16)
	x.orderBuf = x.order[:cap(x.order)]
}

func (x *index) insertOrder(t *traceEntry) {
	x.makeRoom()
	k, o := t.key(), ordered{t.start, t}
	// New traces start last, or nearly: a span is recorded when its hop
	// ends, so concurrent requests arrive a little out of order. Look back
	// a few places before searching the whole order.
	n := len(x.order)
	for i := n; i > 0 && i > n-64; i-- {
		if x.order[i-1].compare(k) < 0 {
			x.order = slices.Insert(x.order, i, o)
			return
		}
	}
	i, _ := slices.BinarySearchFunc(x.order, k, ordered.compare)
	x.order = slices.Insert(x.order, i, o)
}

// moveDown restores the order after order[i]'s trace started earlier.
func (x *index) moveDown(i int) {
	o := x.order[i]
	o.start = o.t.start
	j, _ := slices.BinarySearchFunc(x.order[:i], o.t.key(), ordered.compare)
	copy(x.order[j+1:i+1], x.order[j:i])
	x.order[j] = o
}

// remove evicts order[i] and its spans.
func (x *index) remove(i int) {
	t := x.order[i].t
	if i == 0 {
		x.order[0] = ordered{}
		x.order = x.order[1:]
	} else {
		x.order = slices.Delete(x.order, i, i+1)
	}
	x.traces.del(t)
	x.spans -= len(t.spans)
	x.evicted++
	for _, sp := range t.spans {
		seg := sp.seg
		x.release(sp)
		n := x.segLive[seg] - 1
		if n > 0 {
			x.segLive[seg] = n
			continue
		}
		delete(x.segLive, seg)
		x.emptied = append(x.emptied, seg)
	}
	if len(x.freeTraces) < maxFree {
		spans := t.spans
		if len(spans) > 0 && &spans[0] == &t.first[0] {
			spans = nil
		}
		clear(spans)
		*t = traceEntry{spans: spans[:0]}
		x.freeTraces = append(x.freeTraces, t)
	}
}

// maxFree bounds the evicted entries an index keeps for reuse. A full
// store evicts about as many spans as it takes in, so a few suffice; the
// bound keeps a large eviction (a lowered limit, a replayed watermark)
// from holding memory.
const maxFree = 256

// release keeps an evicted span for reuse, dropping what it points to.
// The index is its only holder: readers copy what they return under the
// store's lock, and eviction takes that lock for writing.
func (x *index) release(sp *storedSpan) {
	if len(x.free) >= maxFree {
		return
	}
	clear(sp.hdrs[:cap(sp.hdrs)])
	if sp.slab != nil {
		clear((*sp.slab)[:cap(*sp.slab)])
	}
	*sp = storedSpan{hdrs: sp.hdrs[:0], slab: sp.slab}
	x.free = append(x.free, sp)
}

// takeFree returns an evicted span to reuse, or nil.
func (x *index) takeFree() *storedSpan { return pop(&x.free) }

// pop takes the last entry of a free list, or nil when it is empty.
func pop[T any](list *[]*T) *T {
	n := len(*list)
	if n == 0 {
		return nil
	}
	v := (*list)[n-1]
	(*list)[n-1] = nil
	*list = (*list)[:n-1]
	return v
}

// newTrace returns an empty trace entry, an evicted one when it can.
func (x *index) newTrace() *traceEntry {
	if t := pop(&x.freeTraces); t != nil {
		return t
	}
	return new(traceEntry)
}

// takeEmptied returns and forgets the segments emptied since the last call.
func (x *index) takeEmptied() []uint32 {
	e := x.emptied
	x.emptied = nil
	return e
}
