package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/devstack/devstack/trace"
)

// Log format
//
// The span log is a directory of segment files named spans-NNNNNNNN.log,
// numbered from 1 in write order. A segment starts with the 8-byte magic
// "DSTRACE1" and holds framed records:
//
//	uint32 LE  payload length
//	uint32 LE  CRC-32C of the payload
//	payload    kind byte, then the body
//
// Kind 1 is a span (see appendSpanRecord), kind 2 a watermark: every trace
// whose (start, trace id) is at or before it had been evicted when it was
// written. Each segment begins with the current watermark, so deleting older
// segments never forgets it.
//
// Strings in span records are prefixed by a uvarint tag: tag&3 == 0 is a
// literal of tag>>2 bytes, 1 a literal that also joins the segment's string
// dictionary, 2 a reference to dictionary entry tag>>2. Headers work the
// same way with a dictionary of name/value pairs: 0 is a name and a value
// (two strings), 1 a pair that joins the pair dictionary, 2 a reference to
// pair tag>>2. Service names, routes and common header pairs are thus
// written once per segment, which keeps a typical hop around 200 bytes on
// disk. A reader must read a segment from its start.
//
// A record that is cut short or fails its checksum ends the segment (a
// crash mid-write); Open truncates the file there and logs a warning.

const (
	segMagic      = "DSTRACE1"
	segPrefix     = "spans-"
	segSuffix     = ".log"
	frameHeader   = 8
	maxRecordSize = 64 << 20

	recSpan = 1
	recMark = 2
	// recSpan2 is a span record followed by the fields later versions
	// added: the query and the link's candidates. A kind of its own, so
	// that an older devstack skips these records instead of taking them
	// for damage.
	recSpan2 = 3

	strLiteral = 0
	strDefine  = 1
	strRef     = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segName(seq uint32) string { return fmt.Sprintf("%s%08d%s", segPrefix, seq, segSuffix) }

// listSegments returns the segment numbers in dir, ascending.
func listSegments(dir string) ([]uint32, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing span log segments: %w", err)
	}
	var seqs []uint32
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix), 10, 32)
		if err != nil || n == 0 {
			continue
		}
		seqs = append(seqs, uint32(n))
	}
	slices.Sort(seqs)
	return seqs, nil
}

// segmentWriter appends records to the active segment. It is owned by the
// store's background goroutine.
type segmentWriter struct {
	dir      string
	seq      uint32 // active segment
	f        *os.File
	w        *bufio.Writer
	records  int
	bytes    int64
	dict     segDict
	buf      []byte
	dirty    bool  // buffered bytes not yet written to the file
	err      error // first write error; once set, persistence stops
	maxRecs  int
	maxBytes int64
}

// create starts segment seq and writes the watermark, if any.
func (sw *segmentWriter) create(seq uint32, mark traceKey, hasMark bool) error {
	f, err := os.OpenFile(filepath.Join(sw.dir, segName(seq)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating span log segment: %w", err)
	}
	sw.seq, sw.f, sw.records, sw.bytes = seq, f, 0, int64(len(segMagic))
	if sw.w == nil {
		sw.w = bufio.NewWriterSize(f, 64<<10)
	} else {
		sw.w.Reset(f)
	}
	sw.dict.reset()
	sw.w.WriteString(segMagic)
	sw.dirty = true
	if hasMark {
		sw.writeMark(mark)
	}
	return nil
}

// rotateIfFull closes the active segment and starts the next one when the
// active one has reached its size limits. It returns the closed segment's
// number, or 0.
func (sw *segmentWriter) rotateIfFull(mark traceKey, hasMark bool) (closed uint32) {
	if sw.err != nil || (sw.records < sw.maxRecs && sw.bytes < sw.maxBytes) {
		return 0
	}
	old := sw.seq
	if err := sw.closeFile(); err != nil {
		sw.fail(err)
		return 0
	}
	if err := sw.create(old+1, mark, hasMark); err != nil {
		sw.fail(err)
	}
	return old
}

func (sw *segmentWriter) fail(err error) {
	if sw.err == nil {
		sw.err = err
	}
}

// writeSpan writes the record of sp, a span of trace tid in the form the
// interner made; own lists the positions of its per-request headers.
func (sw *segmentWriter) writeSpan(tid trace.TraceID, sp *storedSpan, own []int) {
	sw.buf = appendSpanRecord(sw.record(), tid, sp, sw.dict, own)
	sw.frame()
}

func (sw *segmentWriter) writeMark(k traceKey) {
	sw.buf = append(sw.record(), recMark)
	sw.buf = binary.AppendVarint(sw.buf, k.start)
	sw.buf = append(sw.buf, k.id[:]...)
	sw.frame()
}

// record returns sw.buf emptied but for room for the frame header, which
// frame fills in: the frame goes out in one write from a buffer that is
// reused, not from a header of its own that would escape to the heap.
func (sw *segmentWriter) record() []byte {
	var room [frameHeader]byte
	return append(sw.buf[:0], room[:]...)
}

// frame writes sw.buf, a record after room for its frame header.
func (sw *segmentWriter) frame() {
	if sw.err != nil {
		return
	}
	rec := sw.buf[frameHeader:]
	binary.LittleEndian.PutUint32(sw.buf[:4], uint32(len(rec)))
	binary.LittleEndian.PutUint32(sw.buf[4:frameHeader], crc32.Checksum(rec, castagnoli))
	if _, err := sw.w.Write(sw.buf); err != nil {
		sw.fail(fmt.Errorf("writing span log: %w", err))
	}
	sw.records++
	sw.bytes += int64(len(sw.buf))
	sw.dirty = true
}

// flush writes buffered records to the file (not to stable storage: a
// devstack crash loses nothing the kernel has, and a torn tail from a power
// cut is skipped on the next Open).
func (sw *segmentWriter) flush() {
	if !sw.dirty || sw.err != nil {
		return
	}
	sw.dirty = false
	if err := sw.w.Flush(); err != nil {
		sw.fail(fmt.Errorf("writing span log: %w", err))
	}
}

func (sw *segmentWriter) closeFile() error {
	if sw.f == nil {
		return nil
	}
	sw.flush()
	err := sw.err
	if err == nil {
		if err = sw.f.Sync(); err != nil {
			err = fmt.Errorf("syncing span log: %w", err)
		}
	}
	if cerr := sw.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing span log: %w", cerr)
	}
	sw.f = nil
	return err
}

func (sw *segmentWriter) remove(seq uint32) error {
	err := os.Remove(filepath.Join(sw.dir, segName(seq)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting evicted span log segment: %w", err)
	}
	return nil
}

// segDict is the writer's view of a segment's dictionaries. Header pairs
// are known by the interner's shared copy: a pointer, cheaper to look up
// than the pair's two strings, and kept alive by the key for as long as
// the segment is written.
type segDict struct {
	strs  map[string]uint32
	pairs map[*trace.Header]uint32
}

func (d *segDict) reset() {
	if d.strs == nil {
		d.strs, d.pairs = make(map[string]uint32), make(map[*trace.Header]uint32)
	}
	clear(d.strs)
	clear(d.pairs)
}

// appendSpanRecord appends the payload of a span record, from the form the
// interner made (so that its shared header pairs are known by pointer).
// Strings and header pairs that are not per request (own lists the
// positions in sp.hdrs of those that are) join the segment dictionaries.
func appendSpanRecord(b []byte, tid trace.TraceID, sp *storedSpan, dict segDict, own []int) []byte {
	str := func(v string, share bool) {
		switch {
		case v == "":
			b = append(b, 0)
		case !share || len(v) > maxInternLen:
			b = binary.AppendUvarint(b, uint64(len(v))<<2|strLiteral)
			b = append(b, v...)
		default:
			if i, ok := dict.strs[v]; ok {
				b = binary.AppendUvarint(b, uint64(i)<<2|strRef)
				return
			}
			dict.strs[v] = uint32(len(dict.strs))
			b = binary.AppendUvarint(b, uint64(len(v))<<2|strDefine)
			b = append(b, v...)
		}
	}
	b = append(b, recSpan2)
	b = append(b, tid[:]...)
	b = append(b, sp.id[:]...)
	b = append(b, sp.parent[:]...)
	var flags byte
	if sp.inferred {
		flags |= 1
	}
	b = append(b, flags)
	for _, v := range [...]int64{sp.start, int64(sp.dur), int64(sp.ttfb), sp.bytesIn, sp.bytesOut, int64(sp.status), int64(sp.grpcStatus)} {
		b = binary.AppendVarint(b, v)
	}
	x := sp.extra
	if x == nil {
		x = &noExtra
	}
	str(sp.caller, true)
	str(sp.callee, true)
	str(sp.protocol, true)
	str(sp.method, true)
	str(sp.route, true)
	str(sp.requestID, false)
	str(x.err, true)
	b = binary.AppendUvarint(b, uint64(len(x.faults)))
	for _, f := range x.faults {
		str(f, true)
	}
	nReq := int(sp.nReq)
	for i, n := range [2]int{nReq, len(sp.hdrs) - nReq} {
		b = binary.AppendUvarint(b, uint64(n))
		for j, h := range sp.hdrs[i*nReq : i*nReq+n] {
			if len(own) > 0 && own[0] == i*nReq+j {
				own = own[1:]
				b = append(b, strLiteral)
				str(h.Name, true)
				str(h.Value, false)
				continue
			}
			if k, ok := dict.pairs[h]; ok {
				b = binary.AppendUvarint(b, uint64(k)<<2|strRef)
				continue
			}
			dict.pairs[h] = uint32(len(dict.pairs))
			b = append(b, strDefine)
			str(h.Name, true)
			str(h.Value, true)
		}
	}
	str(x.reqBody, false)
	str(x.respBody, false)
	str(x.query, true)
	b = binary.AppendUvarint(b, uint64(sp.candidates))
	return b
}

var noExtra spanExtra // what a nil spanExtra stands for

var errBadRecord = errors.New("malformed span log record")

// recordReader decodes the payloads of one segment. Its first error sticks:
// later reads return zero values.
type recordReader struct {
	b     []byte
	dict  []string
	pairs []trace.Header
	err   error
	span  trace.Span // reused for every record
}

func (r *recordReader) bad() {
	r.err, r.b = errBadRecord, nil
}

func (r *recordReader) bytes(n int) []byte {
	if n > len(r.b) {
		r.bad()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) str() string {
	tag := r.uvarint()
	n := tag >> 2
	switch tag & 3 {
	case strRef:
		if n >= uint64(len(r.dict)) {
			r.bad()
			return ""
		}
		return r.dict[n]
	case strLiteral, strDefine:
		if n > uint64(len(r.b)) {
			r.bad()
			return ""
		}
		// A view of the segment's bytes, not a copy: replay's store
		// copies what it keeps (see readSegment).
		v := ""
		if n > 0 {
			v = unsafe.String(unsafe.SliceData(r.b), n)
		}
		r.b = r.b[n:]
		if tag&3 == strDefine {
			r.dict = append(r.dict, v)
		}
		return v
	}
	r.bad()
	return ""
}

func (r *recordReader) header() trace.Header {
	tag := r.uvarint()
	switch tag & 3 {
	case strRef:
		if tag>>2 >= uint64(len(r.pairs)) {
			r.bad()
			return trace.Header{}
		}
		return r.pairs[tag>>2]
	case strLiteral, strDefine:
		h := trace.Header{Name: r.str(), Value: r.str()}
		if tag&3 == strDefine {
			r.pairs = append(r.pairs, h)
		}
		return h
	}
	r.bad()
	return trace.Header{}
}

// count reads an element count, bounded by the bytes left (every element
// takes at least one).
func (r *recordReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad()
		return 0
	}
	return int(n)
}

// decodeSpan decodes the body of a span record (after the kind byte), of
// kind recSpan or (v2) recSpan2. The Span it returns, and its slices, are
// reused by the next call.
func (r *recordReader) decodeSpan(v2 bool) (*trace.Span, error) {
	s := &r.span
	*s = trace.Span{Faults: s.Faults[:0], ReqHeaders: s.ReqHeaders[:0], RespHeaders: s.RespHeaders[:0]}
	ids := r.bytes(16 + 8 + 8 + 1)
	if r.err != nil {
		return nil, r.err
	}
	copy(s.TraceID[:], ids[:16])
	copy(s.SpanID[:], ids[16:24])
	copy(s.ParentID[:], ids[24:32])
	s.Inferred = ids[32]&1 != 0
	s.Start = time.Unix(0, r.varint())
	s.Duration = time.Duration(r.varint())
	s.TTFB = time.Duration(r.varint())
	s.BytesIn = r.varint()
	s.BytesOut = r.varint()
	s.Status = int(r.varint())
	s.GRPCStatus = int(r.varint())
	s.Caller = r.str()
	s.Callee = r.str()
	s.Protocol = r.str()
	s.Method = r.str()
	s.Route = r.str()
	s.RequestID = r.str()
	s.Error = r.str()
	for n := r.count(); n > 0; n-- {
		s.Faults = append(s.Faults, r.str())
	}
	for n := r.count(); n > 0; n-- {
		s.ReqHeaders = append(s.ReqHeaders, r.header())
	}
	for n := r.count(); n > 0; n-- {
		s.RespHeaders = append(s.RespHeaders, r.header())
	}
	s.ReqBody = r.str()
	s.RespBody = r.str()
	if v2 {
		s.Query = r.str()
		s.Candidates = int(min(r.uvarint(), maxCandidates))
	}
	if r.err == nil && len(r.b) != 0 {
		r.bad()
	}
	return s, r.err
}

// readSegment calls onSpan and onMark for each record of the segment in
// order. onSpan must not keep the Span: the next record reuses it, and
// its strings are views of the segment's bytes, which would keep the
// whole segment in memory; it copies what it keeps. It returns the length of the valid prefix and whether the file
// ended with a torn or corrupt record. A file too short for the magic is
// treated as empty; one with another magic is an error.
func readSegment(path string, onSpan func(*trace.Span), onMark func(traceKey)) (valid int64, torn bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false, fmt.Errorf("reading span log segment: %w", err)
	}
	if len(data) < len(segMagic) {
		return 0, len(data) > 0, nil
	}
	if string(data[:len(segMagic)]) != segMagic {
		return 0, false, fmt.Errorf("reading span log segment %s: %w", path, errNotSpanLog)
	}
	off := len(segMagic)
	r := &recordReader{}
	for off < len(data) {
		if len(data)-off < frameHeader {
			return int64(off), true, nil
		}
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 || n > maxRecordSize || n > len(data)-off-frameHeader {
			return int64(off), true, nil
		}
		payload := data[off+frameHeader : off+frameHeader+n]
		if crc32.Checksum(payload, castagnoli) != sum {
			return int64(off), true, nil
		}
		r.b = payload[1:]
		switch payload[0] {
		case recSpan, recSpan2:
			s, err := r.decodeSpan(payload[0] == recSpan2)
			if err != nil {
				return int64(off), true, nil
			}
			onSpan(s)
		case recMark:
			start := r.varint()
			if r.err != nil || len(r.b) != 16 {
				return int64(off), true, nil
			}
			k := traceKey{start: start}
			copy(k.id[:], r.b)
			onMark(k)
		default:
			// A record kind from a newer devstack: skip it.
		}
		off += frameHeader + n
	}
	return int64(off), false, nil
}
