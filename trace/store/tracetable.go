package store

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/devstack/devstack/trace"
)

// traceTable is the index's traces by id: an open-addressing hash table
// (linear probing, deletion by backward shift) of entry pointers, with the
// hash of each slot's id kept apart from the pointers.
//
// Why not a Go map: a full store looks up the trace of every span it takes
// in (for a new trace, finding nothing) and deletes an old trace for each
// new one. With 100k traces a map spreads its keys and values over
// megabytes, so each of those is a cache miss or two, and in the proxy
// they were the store's largest cost. Here a lookup that finds nothing
// reads only the 4-byte hashes, and a deletion finds its slot by pointer:
// in BenchmarkTraceTable, a delete, a failed lookup and an insert take a
// third of a map's time.
type traceTable struct {
	hashes []uint32 // per slot: the hash of its entry's id, 0 for none
	slots  []*traceEntry
	n      int
	seed   uint64
}

// minTableSlots is the size of a new table; it doubles whenever it would
// become more than half full, which keeps probe runs short.
const minTableSlots = 1024

func newTraceTable() *traceTable {
	return &traceTable{hashes: make([]uint32, minTableSlots), slots: make([]*traceEntry, minTableSlots), seed: rand.Uint64()}
}

func (t *traceTable) len() int { return t.n }

// hash mixes all of id with the table's random seed: ids come from
// clients too, and ids that differ in a few bytes only (counters, 64-bit
// ids padded with zeros) must still spread. Never 0, which marks an empty
// slot.
func (t *traceTable) hash(id *trace.TraceID) uint32 {
	x := mix64(binary.LittleEndian.Uint64(id[:8]) ^ t.seed)
	x = mix64(x ^ binary.LittleEndian.Uint64(id[8:]))
	return uint32(x) | 1
}

// mix64 is SplitMix64's finaliser.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// get returns the entry of trace id, or nil.
func (t *traceTable) get(id trace.TraceID) *traceEntry {
	h := t.hash(&id)
	mask := uint32(len(t.hashes) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch t.hashes[i] {
		case 0:
			return nil
		case h:
			if e := t.slots[i]; e.id == id {
				return e
			}
		}
	}
}

// put adds e, whose id the table does not hold.
func (t *traceTable) put(e *traceEntry) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	t.place(t.hash(&e.id), e)
	t.n++
}

func (t *traceTable) place(h uint32, e *traceEntry) {
	mask := uint32(len(t.hashes) - 1)
	i := h & mask
	for t.hashes[i] != 0 {
		i = (i + 1) & mask
	}
	t.hashes[i], t.slots[i] = h, e
}

func (t *traceTable) grow() {
	hashes, slots := t.hashes, t.slots
	t.hashes, t.slots = make([]uint32, 2*len(hashes)), make([]*traceEntry, 2*len(slots))
	for i, e := range slots {
		if e != nil {
			t.place(hashes[i], e)
		}
	}
}

// del removes e, which the table holds. The slots after it that would
// no longer be found past the hole move back into it, so that no slot
// needs a deletion mark and lookups stay as short as the table is full.
func (t *traceTable) del(e *traceEntry) {
	mask := uint32(len(t.hashes) - 1)
	h := t.hash(&e.id)
	i := h & mask
	for t.slots[i] != e {
		if t.hashes[i] == 0 {
			panic("trace: trace table lost an entry") // an invariant, not an input error
		}
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; t.hashes[j] != 0; j = (j + 1) & mask {
		// The entry at j may fill the hole at i unless its home slot lies
		// cyclically in (i, j]: then a lookup would stop at the hole first.
		home := t.hashes[j] & mask
		if (j-home)&mask >= (j-i)&mask {
			t.hashes[i], t.slots[i] = t.hashes[j], t.slots[j]
			i = j
		}
	}
	t.hashes[i], t.slots[i] = 0, nil
	t.n--
}
