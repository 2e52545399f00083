package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devstack/devstack/trace"
)

// Store keeps recorded spans in memory, indexed by trace, and persists them
// in an append-only log so traces survive a restart of devstack. It
// implements Recorder for the proxy and Reader for the control API, the CLI
// and exporters.
//
//	proxy ──Record──> [bounded batch] ──> background goroutine ──> index (RWMutex) <── Traces / Trace
//	                   full: drop, count   │  intern, evict            │
//	                                         └─> span log segments      └─> Subscribe channels
//
// # Memory
//
// At most MaxSpans spans are held. When a new span takes the count over it,
// whole traces are evicted, oldest start first, so a listed trace is never
// missing spans the store once had. Spans are held in a compact form with
// shared strings (about half a kilobyte for a typical hop with headers);
// Trace expands them into fresh Spans.
//
// # Why a log and no database
//
// The data never needed one. Spans are written once and never updated, so an
// append-only log is the whole write path. Eviction always removes whole
// oldest traces, so reclaiming disk means deleting a segment file once none
// of its spans is live: no compaction, no tombstones beyond a watermark. The
// store is small enough (100k spans) to reload completely at start, and
// every query is served from the in-memory index, so nothing ever reads the
// log except Open. An embedded key-value store (bbolt, pebble) would add
// page or LSM write amplification, fsync cost on the proxy's side, and a
// dependency, for lookups we never make on disk.
//
// # Durability
//
// Records go through a buffer that the background goroutine writes out at
// least every 200ms and on Flush and Close; segments are synced when they
// are closed. A devstack crash loses at most the last 200ms; a power cut may
// leave a torn last record, which Open detects by its checksum and drops.
// One Store owns its directory: don't open the same directory twice.
type Store struct {
	opts Options
	log  *slog.Logger

	// Record appends to pending; the background goroutine takes the whole
	// batch at once (see loop).
	pendMu  sync.Mutex
	pending []*trace.Span
	spare   []*trace.Span // the goroutine's last batch, reused
	kick    chan struct{} // cap 1: pending went from empty to not
	ctl     chan ctlRequest
	done    chan struct{} // closed when the background goroutine exits
	closed  atomic.Bool

	dropped    atomic.Uint64
	late       atomic.Uint64
	subDropped atomic.Uint64

	mu  sync.RWMutex // readers hold it to read idx; the goroutine to change it
	idx *index

	subsMu     sync.Mutex
	subs       map[chan *trace.Span]struct{}
	subsClosed bool

	// Owned by the background goroutine (and by Open before it starts).
	intern    *interner
	w         *segmentWriter // nil for a memory-only store
	markMoved bool           // the watermark moved since the log last got it
	loggedW   bool           // the write error was logged
	closeErr  error          // set before done is closed
}

// Options configures Open. The zero value gives the defaults.
type Options struct {
	// MaxSpans bounds the spans held in memory and reloaded at Open. When a
	// span takes the count over it, whole oldest traces are evicted until
	// the count is at most MaxSpans; a single trace larger than MaxSpans is
	// evicted as a whole too. Default 100_000.
	MaxSpans int
	// Logger receives warnings about the span log (a torn record skipped,
	// a failed write or deletion). Default: discard.
	Logger *slog.Logger
	// Buffer is how many recorded spans may wait for the background
	// goroutine. When that many wait, Record drops the span and counts it
	// (see Dropped). Default 8192.
	Buffer int
	// SegmentSpans starts a new log segment after this many records.
	// Smaller segments free disk sooner after eviction but mean more files.
	// Default 10_000.
	SegmentSpans int
	// SegmentBytes starts a new log segment once the active one reaches
	// this size. Default 16 MiB.
	SegmentBytes int64
	// ReadOnly loads the log without changing the directory: no new
	// segment, no truncation of a torn record, no deletion. Spans recorded
	// afterwards are kept in memory only. For reading traces while devstack
	// is not running (the CLI); the directory must exist.
	ReadOnly bool
	// Only, when set, keeps from the log only the traces it accepts: a
	// reader after one trace (`devstack trace ID` while devstack is down)
	// then indexes that trace alone. The log is still read whole, as its
	// records depend on the ones before. With ReadOnly only.
	Only func(trace.TraceID) bool
}

// Stats are counters for the control API and tests.
type Stats struct {
	Spans  int // spans held now
	Traces int // traces held now
	// Dropped counts spans Record discarded because the buffer was full or
	// the store was closed.
	Dropped uint64
	// Late counts spans discarded because their trace had already been
	// evicted.
	Late uint64
	// Evicted counts traces evicted to stay within MaxSpans (since Open).
	Evicted uint64
	// SubscriberDrops counts spans a slow subscriber missed.
	SubscriberDrops uint64
}

const (
	defaultMaxSpans     = 100_000
	defaultBuffer       = 8192
	defaultSegmentSpans = 10_000
	defaultSegmentBytes = 16 << 20
	flushInterval       = 200 * time.Millisecond
	// batchDelay is how long recorded spans gather before the background
	// goroutine takes them: under load it then wakes once per batch, not
	// once per span, which costs the proxy's hot path a goroutine wake-up
	// (and often a thread wake-up) per request. Readers see a span at most
	// this much later; Flush does not wait for it. At 10 ms rather than 1,
	// the proxy's voluntary context switches under wrk -c32 fell from 0.21
	// to 0.17 per request (nginx: 0.14).
	batchDelay       = 10 * time.Millisecond
	subscriberBuffer = 256
)

var (
	_ trace.Recorder = (*Store)(nil)
	_ trace.Reader   = (*Store)(nil)
)

var errNotSpanLog = errors.New("not a devstack span log")

type ctlRequest struct {
	done  chan struct{}
	close bool
}

// Open loads the span log in dir (creating dir if needed), applies the
// MaxSpans bound, and starts the store's background goroutine. With dir ""
// the store keeps spans in memory only. Call Close to stop it.
func Open(dir string, opts Options) (*Store, error) {
	if opts.MaxSpans <= 0 {
		opts.MaxSpans = defaultMaxSpans
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Buffer <= 0 {
		opts.Buffer = defaultBuffer
	}
	if opts.SegmentSpans <= 0 {
		opts.SegmentSpans = defaultSegmentSpans
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = defaultSegmentBytes
	}
	if opts.Only != nil && !opts.ReadOnly {
		return nil, errors.New("span store: Only needs ReadOnly: a store that writes must index every trace")
	}
	st := &Store{
		opts:   opts,
		log:    opts.Logger,
		kick:   make(chan struct{}, 1),
		ctl:    make(chan ctlRequest),
		done:   make(chan struct{}),
		idx:    newIndex(opts.MaxSpans),
		subs:   make(map[chan *trace.Span]struct{}),
		intern: newInterner(),
	}
	if dir != "" {
		if !opts.ReadOnly {
			// Private like the rest of the state dir: spans hold
			// paths, queries and headers. A directory from an older
			// devstack (0755) is made private too.
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("creating span store directory: %w", err)
			}
			if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(dir, 0o700); err != nil {
					return nil, fmt.Errorf("making span store directory private: %w", err)
				}
			}
		}
		if err := st.load(dir); err != nil {
			return nil, err
		}
	}
	go st.loop()
	return st, nil
}

// load replays the segments in dir, deletes those without live spans and
// starts a new active segment (unless ReadOnly).
func (st *Store) load(dir string) error {
	ro := st.opts.ReadOnly
	seqs, err := listSegments(dir)
	if err != nil {
		return err
	}
	var last uint32
	var keep []uint32
	for _, seq := range seqs {
		last = seq
		path := filepath.Join(dir, segName(seq))
		valid, torn, err := readSegment(path,
			func(s *trace.Span) { st.replay(s, seq) },
			st.idx.applyMark)
		if errors.Is(err, errNotSpanLog) {
			st.log.Warn("span store: skipping a file that is not a span log segment; move it out of the directory",
				"file", path)
			continue
		}
		if err != nil {
			return err
		}
		if torn {
			st.log.Warn("span store: dropping a torn record at the end of a segment (devstack stopped mid-write)",
				"file", path, "offset", valid)
			if ro {
				continue
			}
			if err := os.Truncate(path, valid); err != nil {
				return fmt.Errorf("truncating torn span log segment: %w", err)
			}
		}
		keep = append(keep, seq)
	}
	st.idx.takeEmptied()
	st.idx.evicted = 0
	st.late.Store(0)
	if ro {
		return nil
	}
	st.w = &segmentWriter{dir: dir, maxRecs: st.opts.SegmentSpans, maxBytes: st.opts.SegmentBytes}
	for _, seq := range keep {
		if st.idx.segLive[seq] == 0 {
			if err := st.w.remove(seq); err != nil {
				return err
			}
		}
	}
	return st.w.create(last+1, st.idx.mark, st.idx.hasMark)
}

func (st *Store) replay(s *trace.Span, seq uint32) {
	if st.opts.Only != nil && !st.opts.Only(s.TraceID) {
		return
	}
	if t, ok := st.idx.accepts(s.TraceID, s.Start.UnixNano()); ok {
		st.idx.add(s.TraceID, t, st.intern.compact(s, seq, st.idx.takeFree()))
	}
}

// Record hands s to the store. It never blocks: when the buffer is full it
// drops s and counts it (see Dropped). The store reads s later, on its own
// goroutine, so the caller must not modify s after Record.
func (st *Store) Record(s *trace.Span) {
	if s == nil {
		return
	}
	if st.closed.Load() {
		st.dropped.Add(1)
		s.Recycle()
		return
	}
	st.pendMu.Lock()
	if len(st.pending) >= st.opts.Buffer {
		st.pendMu.Unlock()
		st.dropped.Add(1)
		s.Recycle()
		return
	}
	first := len(st.pending) == 0
	st.pending = append(st.pending, s)
	st.pendMu.Unlock()
	if first {
		select {
		case st.kick <- struct{}{}:
		default:
		}
	}
}

// Dropped returns the number of spans Record discarded because the buffer
// was full or the store was closed.
func (st *Store) Dropped() uint64 { return st.dropped.Load() }

// Flush waits until every span recorded before the call is indexed and
// written to the log file. Tests use it instead of sleeping.
func (st *Store) Flush() { st.request(false) }

// Close indexes and writes what was recorded, syncs and closes the log,
// closes subscriber channels and stops the background goroutine. Spans
// recorded after Close are dropped. It returns the first error writing the
// log hit, if any; Close is idempotent.
func (st *Store) Close() error {
	if !st.closed.Swap(true) {
		st.request(true)
	}
	<-st.done
	return st.closeErr
}

func (st *Store) request(close bool) {
	req := ctlRequest{done: make(chan struct{}), close: close}
	select {
	case st.ctl <- req:
		<-req.done
	case <-st.done:
	}
}

// Stats returns the store's counters.
func (st *Store) Stats() Stats {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return Stats{
		Spans:           st.idx.spans,
		Traces:          st.idx.traces.len(),
		Dropped:         st.dropped.Load(),
		Late:            st.late.Load(),
		Evicted:         st.idx.evicted,
		SubscriberDrops: st.subDropped.Load(),
	}
}

// Subscribe returns a channel that receives each span as it is indexed, and
// a function that cancels the subscription and closes the channel. The
// channel is buffered; a subscriber that falls behind misses spans (counted
// in Stats) rather than slowing the store. The spans are shared: treat them
// as read-only. Close closes every subscriber channel.
func (st *Store) Subscribe() (<-chan *trace.Span, func()) {
	ch := make(chan *trace.Span, subscriberBuffer)
	st.subsMu.Lock()
	defer st.subsMu.Unlock()
	if st.subsClosed {
		close(ch)
		return ch, func() {}
	}
	st.subs[ch] = struct{}{}
	return ch, func() {
		st.subsMu.Lock()
		defer st.subsMu.Unlock()
		if _, ok := st.subs[ch]; ok {
			delete(st.subs, ch)
			close(ch)
		}
	}
}

// publish hands s to every subscriber with room for it, and reports
// whether any took it.
func (st *Store) publish(s *trace.Span) (handed bool) {
	st.subsMu.Lock()
	defer st.subsMu.Unlock()
	for ch := range st.subs {
		select {
		case ch <- s:
			handed = true
		default:
			st.subDropped.Add(1)
		}
	}
	return handed
}

// loop is the background goroutine: it owns the index's writes, the
// interner and the log writer.
func (st *Store) loop() {
	defer close(st.done)
	flush := time.NewTimer(flushInterval)
	flush.Stop()
	batch := time.NewTimer(batchDelay)
	batch.Stop()
	var tick, gathered <-chan time.Time
	for {
		select {
		case <-st.kick:
			// The first span of a batch: let the rest gather.
			if gathered == nil {
				batch.Reset(batchDelay)
				gathered = batch.C
			}
		case <-gathered:
			gathered = nil
			st.drain()
		case req := <-st.ctl:
			st.drain()
			st.flushLog()
			if req.close {
				st.shutdown()
				close(req.done)
				return
			}
			close(req.done)
		case <-tick:
			tick = nil
			st.flushLog()
		}
		if tick == nil && st.w != nil && st.w.dirty {
			flush.Reset(flushInterval)
			tick = flush.C
		}
	}
}

// drain processes every span recorded so far, as one batch.
func (st *Store) drain() {
	st.pendMu.Lock()
	b := st.pending
	st.pending = st.spare[:0]
	st.pendMu.Unlock()
	for i, s := range b {
		st.process(s)
		b[i] = nil // the span is the index's now, or garbage
	}
	st.spare = b[:0]
	// The watermark moves with nearly every span once the store is full;
	// the log gets it once per batch, after the batch's spans.
	if st.markMoved && st.w != nil {
		st.w.writeMark(st.idx.mark)
	}
	st.markMoved = false
}

// process indexes one span and appends it to the log.
func (st *Store) process(s *trace.Span) {
	defer func() {
		if r := recover(); r != nil {
			st.log.Error("span store: dropping a span after a panic", "panic", r, "trace_id", s.TraceID)
		}
	}()
	t, ok := st.idx.accepts(s.TraceID, s.Start.UnixNano())
	if !ok {
		st.late.Add(1)
		s.Recycle()
		return
	}
	var seg uint32
	if w := st.w; w != nil {
		if old := w.rotateIfFull(st.idx.mark, st.idx.hasMark); old != 0 && st.idx.segLive[old] == 0 {
			st.removeSegment(old)
		}
		seg = w.seq
	}
	sp := st.intern.compact(s, seg, st.idx.takeFree())
	if w := st.w; w != nil {
		w.writeSpan(s.TraceID, sp, st.intern.own)
	}
	moved, emptied := st.index(s.TraceID, t, sp)
	st.markMoved = st.markMoved || moved
	if w := st.w; w != nil {
		if len(emptied) > 0 && st.markMoved {
			// The evictions that emptied a segment go in the log before
			// the segment goes.
			w.writeMark(st.idx.mark)
			st.markMoved = false
		}
		for _, seq := range emptied {
			if seq != w.seq && seq != 0 {
				st.removeSegment(seq)
			}
		}
		st.logWriteError()
	}
	if !st.publish(s) {
		s.Recycle() // the index and the log have their own copies
	}
}

// index adds sp to the index under the readers' lock. The unlock is
// deferred: process recovers from a panic (the index's invariant checks),
// and a lock left held would hang every query after it.
func (st *Store) index(id trace.TraceID, t *traceEntry, sp *storedSpan) (moved bool, emptied []uint32) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.idx.add(id, t, sp), st.idx.takeEmptied()
}

func (st *Store) removeSegment(seq uint32) {
	if err := st.w.remove(seq); err != nil {
		st.log.Warn("span store: "+err.Error(), "segment", seq)
	}
}

func (st *Store) flushLog() {
	if st.w != nil {
		st.w.flush()
		st.logWriteError()
	}
}

func (st *Store) logWriteError() {
	if st.w.err != nil && !st.loggedW {
		st.loggedW = true
		st.log.Error("span store: persistence stopped, spans are kept in memory only", "err", st.w.err)
	}
}

func (st *Store) shutdown() {
	var err error
	if st.w != nil {
		err = st.w.closeFile()
		if err == nil && st.w.err == nil {
			// For listing traces while devstack is down (see summaryName).
			if serr := st.writeSummary(st.w.dir); serr != nil {
				st.log.Warn("span store: "+serr.Error()+"; listing traces while devstack is down replays the log instead", "dir", st.w.dir)
			}
		}
	}
	st.closeErr = err
	st.subsMu.Lock()
	defer st.subsMu.Unlock()
	st.subsClosed = true
	for ch := range st.subs {
		close(ch)
	}
	clear(st.subs)
}
