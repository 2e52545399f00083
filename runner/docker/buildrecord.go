package docker

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"hash"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// A hot reload into a standby container (layerdiff.go) needs to know which
// files changed between two images without reading the new image back
// (docker save costs ~90 ms for 10 MB). devstack sent the builder both
// contexts, so it records what it sent: the context index, built while the
// tar is written (the hash is taken from the same bytes the tar gets), and
// the Dockerfile, kept per built image ID.

// contextEntry is one entry of a build context as the tar sent it.
type contextEntry struct {
	Mode fs.FileMode // type and permission bits, as the tar header carries them
	Size int64       // a regular file's size
	Sum  [32]byte    // sha256 of a regular file's content
	Link string      // a symlink's target, as written
	// Unsure says why what the builder made of this entry is not known
	// ("" when it is): a directory with no entry of its own in the tar
	// (.dockerignore excluded it but re-included something below it),
	// which the builder makes when unpacking with a mode of its own; a
	// name sent twice.
	Unsure string
}

func (e contextEntry) isDir() bool  { return e.Mode.IsDir() }
func (e contextEntry) isLink() bool { return e.Mode&fs.ModeSymlink != 0 }

// contextIndex is what a build context tar held, by slash-separated path
// relative to the context root ("app/a.txt"; the root itself has none).
type contextIndex struct {
	Entries    map[string]contextEntry
	Dockerfile []byte // the bytes sent under the Dockerfile's name; nil when none was
	dockerfile string // that name
}

// newContextIndex is an empty index for a context whose Dockerfile is
// sent under name dockerfile.
func newContextIndex(dockerfile string) *contextIndex {
	return &contextIndex{Entries: map[string]contextEntry{}, dockerfile: path.Clean(dockerfile)}
}

// add records hdr, and returns the writer its content must also be
// written to (nil for no content). A nil index records nothing.
func (x *contextIndex) add(hdr *tar.Header) io.Writer {
	if x == nil {
		return nil
	}
	rel := strings.TrimSuffix(hdr.Name, "/")
	fi := hdr.FileInfo()
	e := contextEntry{Mode: fi.Mode()}
	if e.isLink() {
		e.Link = hdr.Linkname
	}
	if !fi.Mode().IsRegular() {
		x.Entries[rel] = e
		return nil
	}
	e.Size = hdr.Size
	h := &entryHash{x: x, rel: rel, e: e, h: sha256.New()}
	if rel == x.dockerfile {
		h.keep = true
	}
	// Recorded as the content ends (see entryHash.done): a file whose
	// copy fails leaves no entry, and the build fails with it.
	return h
}

// entryHash hashes one regular file's content as it goes into the tar.
type entryHash struct {
	x    *contextIndex
	rel  string
	e    contextEntry
	h    hash.Hash
	keep bool // the Dockerfile: its bytes are kept too
	buf  []byte
}

func (w *entryHash) Write(p []byte) (int, error) {
	if w.keep {
		w.buf = append(w.buf, p...)
	}
	return w.h.Write(p)
}

// done records the entry once its content was written whole.
func (w *entryHash) done() {
	copy(w.e.Sum[:], w.h.Sum(nil))
	w.x.Entries[w.rel] = w.e
	if w.keep {
		w.x.Dockerfile = w.buf
	}
}

// sentTwice marks rel as sent twice (an inline Dockerfile's name taken by
// a file of the context): which copy the builder keeps is not known.
func (x *contextIndex) sentTwice(rel string) {
	if x == nil {
		return
	}
	if e, ok := x.Entries[rel]; ok {
		e.Unsure = rel + " was sent twice"
		x.Entries[rel] = e
	}
}

// finish marks the directories that hold entries but were not sent
// themselves (see contextEntry.Implicit).
func (x *contextIndex) finish() {
	if x == nil {
		return
	}
	for rel := range x.Entries {
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if _, ok := x.Entries[d]; ok {
				break
			}
			x.Entries[d] = contextEntry{Mode: fs.ModeDir | 0o755, Unsure: "directory " + d + " was not sent itself"}
		}
	}
}

// buildRecord is what devstack sent to build one image.
type buildRecord struct {
	ImageID        string
	Tag            string
	Dir            string // the context directory on the host
	Index          map[string]contextEntry
	Dockerfile     []byte // the Dockerfile as sent
	DockerfilePath string // its path within the context (inlineDockerfile for an inline one)
	Target         string // the stage built; "" is the last
	BuildKit       bool   // false: the classic builder built it
}

// recordsPerTag bounds the records kept: a reload compares the image a
// tag has now with the one it had before.
const recordsPerTag = 2

// keepRecord keeps r, dropping the tag's records beyond the latest
// recordsPerTag that no other tag keeps.
func (b *Backend) keepRecord(r *buildRecord) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.records == nil {
		b.records = map[string]*buildRecord{}
		b.recordTags = map[string][]string{}
	}
	b.records[r.ImageID] = r
	ids := slices.DeleteFunc(b.recordTags[r.Tag], func(id string) bool { return id == r.ImageID })
	ids = append(ids, r.ImageID)
	for len(ids) > recordsPerTag {
		drop := ids[0]
		ids = ids[1:]
		kept := false
		for tag, other := range b.recordTags {
			if tag != r.Tag && slices.Contains(other, drop) {
				kept = true
			}
		}
		if !kept {
			delete(b.records, drop)
		}
	}
	b.recordTags[r.Tag] = ids
}

// buildRecord is the record of the build that made image imageID, nil
// when this backend did not build it (or no longer keeps its record).
func (b *Backend) buildRecord(imageID string) *buildRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.records[imageID]
}

// builtImageID is the image ID a build's aux message carries: BuildKit's
// as "moby.image.id", the classic builder's with no ID. "" when m is not
// one.
func builtImageID(id string, aux *json.RawMessage) string {
	if aux == nil || (id != "" && id != "moby.image.id") {
		return ""
	}
	var res struct{ ID string }
	if json.Unmarshal(*aux, &res) != nil {
		return ""
	}
	return res.ID
}

// entry is rel's entry, if the index has one.
func (x *contextIndex) entry(rel string) (contextEntry, bool) {
	if x == nil {
		return contextEntry{}, false
	}
	e, ok := x.Entries[rel]
	return e, ok
}
