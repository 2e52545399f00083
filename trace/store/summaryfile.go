package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"

	"github.com/devstack/devstack/trace"
)

// The summary file: what listing traces needs, written by a store as it
// closes, so that `devstack traces` with devstack down reads one small
// file instead of replaying the log. Replay builds the whole index, headers
// included, which takes about 300 ms for 100k spans; listing must answer
// in 50. The file holds, newest trace first, each trace's summary and the
// fields its spans are filtered on, and names the segments (and their
// sizes) it was written from: once the log changes, it no longer answers,
// and readers replay. Everything a trace's page shows (headers, errors,
// faults) still comes from the log.
//
//	magic
//	uvarint MaxSpans the store had
//	uvarint n; n × (uvarint segment number, uvarint size)
//	uvarint n; n × (uvarint length, bytes)          string table
//	uvarint n; n × trace, newest first:
//	    16 bytes trace id, varint start, varint end, uvarint errors,
//	    uvarint ambiguous links,
//	    uvarint spans, uvarint root (position + 1, 0 for none),
//	    spans × (uvarint caller, callee, method, route, query: string numbers;
//	             varint status)
//	4 bytes CRC-32 (IEEE) of everything before, big-endian
const (
	summaryName  = "summary"
	summaryMagic = "devstack trace summary 3\n"
)

var errStaleSummary = errors.New("the trace summary does not match the span log")

// writeSummary writes the summary file of the index into dir, replacing
// the last one through a rename, so that a reader never sees half of one.
func (st *Store) writeSummary(dir string) error {
	segs, err := segmentSizes(dir)
	if err != nil {
		return err
	}
	b := []byte(summaryMagic)
	b = binary.AppendUvarint(b, uint64(st.opts.MaxSpans))
	b = binary.AppendUvarint(b, uint64(len(segs)))
	for _, s := range segs {
		b = binary.AppendUvarint(b, uint64(s.seq))
		b = binary.AppendUvarint(b, uint64(s.size))
	}
	// The string table first, so that a reader can index it before it
	// meets the traces.
	nums := map[string]uint64{}
	var table []string
	num := func(s string) uint64 {
		n, ok := nums[s]
		if !ok {
			n = uint64(len(table))
			nums[s] = n
			table = append(table, s)
		}
		return n
	}
	var body []byte
	order := st.idx.order
	body = binary.AppendUvarint(body, uint64(len(order)))
	for i := len(order) - 1; i >= 0; i-- {
		t := order[i].t
		body = append(body, t.id[:]...)
		body = binary.AppendVarint(body, t.start)
		body = binary.AppendVarint(body, t.end)
		body = binary.AppendUvarint(body, uint64(t.errors))
		body = binary.AppendUvarint(body, uint64(t.ambiguous))
		body = binary.AppendUvarint(body, uint64(len(t.spans)))
		root := 0
		for j, sp := range t.spans {
			if sp == t.root {
				root = j + 1
			}
		}
		body = binary.AppendUvarint(body, uint64(root))
		for _, sp := range t.spans {
			for _, s := range [...]string{sp.caller, sp.callee, sp.method, sp.route, sp.query()} {
				body = binary.AppendUvarint(body, num(s))
			}
			body = binary.AppendVarint(body, int64(sp.status))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(table)))
	for _, s := range table {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, body...)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	path := filepath.Join(dir, summaryName)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("writing the trace summary: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("writing the trace summary: %w", err)
	}
	return nil
}

type segmentSize struct {
	seq  uint32
	size int64
}

func segmentSizes(dir string) ([]segmentSize, error) {
	seqs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	out := make([]segmentSize, 0, len(seqs))
	for _, seq := range seqs {
		fi, err := os.Stat(filepath.Join(dir, segName(seq)))
		if err != nil {
			return nil, fmt.Errorf("listing span log segments: %w", err)
		}
		out = append(out, segmentSize{seq, fi.Size()})
	}
	return out, nil
}

// SummaryFile is a span store's summary file, read: it lists traces as
// Store.Traces does, without the store.
type SummaryFile struct {
	strs   []string
	traces []byte // the traces, from their count on
}

// OpenSummary reads the summary file of the span store in dir, for a
// store opened with maxSpans (0: the default). It fails when there is
// none, when it is damaged, when the store had another bound, or when the
// log has changed since it was written (devstack ran again, or stopped
// without closing the store): then the store must be opened, which
// replays the log.
func OpenSummary(dir string, maxSpans int) (*SummaryFile, error) {
	if maxSpans <= 0 {
		maxSpans = defaultMaxSpans
	}
	b, err := os.ReadFile(filepath.Join(dir, summaryName))
	if err != nil {
		return nil, err
	}
	if len(b) < len(summaryMagic)+4 || string(b[:len(summaryMagic)]) != summaryMagic {
		return nil, errStaleSummary
	}
	body := b[:len(b)-4]
	if crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return nil, errStaleSummary
	}
	r := &recordReader{b: body[len(summaryMagic):]}
	if r.uvarint() != uint64(maxSpans) {
		return nil, errStaleSummary
	}
	segs, err := segmentSizes(dir)
	if err != nil {
		return nil, err
	}
	n := r.uvarint()
	if n != uint64(len(segs)) {
		return nil, errStaleSummary
	}
	for _, s := range segs {
		if r.uvarint() != uint64(s.seq) || r.uvarint() != uint64(s.size) {
			return nil, errStaleSummary
		}
	}
	f := &SummaryFile{}
	n = r.uvarint()
	if n > uint64(len(r.b)) {
		return nil, errStaleSummary
	}
	f.strs = make([]string, n)
	for i := range f.strs {
		f.strs[i] = string(take(r, r.uvarint()))
	}
	if r.err != nil {
		return nil, errStaleSummary
	}
	f.traces = r.b
	return f, nil
}

// Traces lists the traces matching q, newest first, as Store.Traces
// does on the store the file was written from.
func (f *SummaryFile) Traces(q trace.Query) []trace.Summary {
	limit, since := bounds(&q)
	r := &recordReader{b: f.traces}
	str := func() string {
		n := r.uvarint()
		if n >= uint64(len(f.strs)) {
			r.bad()
			return ""
		}
		return f.strs[n]
	}
	out := make([]trace.Summary, 0, min(limit, 128)) // [] in JSON, as the store's
	var t traceEntry
	var spans []storedSpan
	var extras []spanExtra // the spans' queries
	var ptrs []*storedSpan
	for n := r.uvarint(); n > 0 && len(out) < limit && r.err == nil; n-- {
		t = traceEntry{}
		copy(t.id[:], take(r, 16))
		t.start, t.end = r.varint(), r.varint()
		t.errors = int(r.uvarint())
		t.ambiguous = int(r.uvarint())
		count, root := r.uvarint(), r.uvarint()
		if count > uint64(len(r.b)) || root > count {
			break // damaged: the CRC makes this a bug, not a disk fault
		}
		spans = slices.Grow(spans[:0], int(count))[:count]
		extras = slices.Grow(extras[:0], int(count))[:count]
		ptrs = ptrs[:0]
		for i := range spans {
			sp := &spans[i]
			*sp = storedSpan{caller: str(), callee: str(), method: str(), route: str()}
			if query := str(); query != "" {
				extras[i] = spanExtra{query: query}
				sp.extra = &extras[i]
			}
			sp.status = int32(r.varint())
			ptrs = append(ptrs, sp)
		}
		t.spans = ptrs
		if root > 0 {
			t.root = &spans[root-1]
		}
		if r.err != nil {
			break
		}
		if since != 0 && t.start < since {
			break
		}
		if t.matches(&q) {
			out = append(out, t.summary())
		}
	}
	return out
}

// take is r.bytes for a length read from the file, which may be any
// number.
func take(r *recordReader, n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.bad()
		return nil
	}
	return r.bytes(int(n))
}
