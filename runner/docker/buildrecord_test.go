package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// The context index must hold, for every entry writeContext sends, what
// the tar holds (mode, size, content hash, link target), and nothing that
// .dockerignore kept out; the Dockerfile's bytes are kept.
func TestContextIndex(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, data string, mode fs.FileMode) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM scratch\nCOPY . /\n", 0o644)
	write(".dockerignore", "ignored.txt\nskip/\n!skip/keep.txt\n", 0o644)
	write("a.txt", "alpha", 0o600)
	write("bin/x", "#!x", 0o755)
	write("ignored.txt", "no", 0o644)
	write("skip/keep.txt", "kept", 0o644)
	write("skip/drop.txt", "dropped", 0o644)
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	idx := newContextIndex("Dockerfile")
	var buf bytes.Buffer
	if err := writeContext(&buf, dir, "Dockerfile", map[string][]byte{"extra.txt": []byte("more")}, idx); err != nil {
		t.Fatal(err)
	}
	// Every tar entry is in the index as the tar has it.
	tr := tar.NewReader(&buf)
	sent := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rel := filepath.ToSlash(filepath.Clean(hdr.Name))
		sent[rel] = true
		e, ok := idx.Entries[rel]
		if !ok {
			t.Errorf("%s was sent but is not in the index", rel)
			continue
		}
		if e.Mode != hdr.FileInfo().Mode() {
			t.Errorf("%s: index mode %v, tar %v", rel, e.Mode, hdr.FileInfo().Mode())
		}
		data, _ := io.ReadAll(tr)
		if hdr.Typeflag == tar.TypeReg && (e.Sum != sha256.Sum256(data) || e.Size != int64(len(data))) {
			t.Errorf("%s: index size %d and hash do not match the %d bytes sent", rel, e.Size, len(data))
		}
		if e.Link != hdr.Linkname {
			t.Errorf("%s: index link %q, tar %q", rel, e.Link, hdr.Linkname)
		}
	}
	for rel, e := range idx.Entries {
		if !sent[rel] && e.Unsure == "" {
			t.Errorf("%s is in the index but was not sent", rel)
		}
	}
	for _, rel := range []string{"ignored.txt", "skip/drop.txt"} {
		if _, ok := idx.Entries[rel]; ok {
			t.Errorf("%s (excluded by .dockerignore) is in the index", rel)
		}
	}
	if e := idx.Entries["skip"]; e.Unsure == "" || !e.isDir() {
		t.Errorf("skip/ was not sent itself but holds skip/keep.txt: want an unsure directory entry, got %+v", e)
	}
	if e := idx.Entries["a.txt"]; e.Mode != 0o600 {
		t.Errorf("a.txt mode %v, want 0600", e.Mode)
	}
	if e := idx.Entries["link"]; e.Link != "a.txt" || !e.isLink() {
		t.Errorf("link entry %+v, want a symlink to a.txt", e)
	}
	if string(idx.Dockerfile) != "FROM scratch\nCOPY . /\n" {
		t.Errorf("Dockerfile bytes %q", idx.Dockerfile)
	}

	// Without an index nothing is recorded, and the tar is the same.
	var plain bytes.Buffer
	if err := writeContext(&plain, dir, "Dockerfile", nil, nil); err != nil {
		t.Fatal(err)
	}
}

// Records are kept for the latest two images of a tag.
func TestContextIndexRecordsBounded(t *testing.T) {
	b := &Backend{}
	for _, id := range []string{"a", "b", "c"} {
		b.keepRecord(&buildRecord{ImageID: id, Tag: "t"})
	}
	b.keepRecord(&buildRecord{ImageID: "b", Tag: "u"})
	if b.buildRecord("a") != nil || b.buildRecord("b") == nil || b.buildRecord("c") == nil {
		t.Errorf("records kept: %v; want b and c", b.records)
	}
	b.keepRecord(&buildRecord{ImageID: "d", Tag: "t"})
	if b.buildRecord("b") == nil {
		t.Error("b was dropped though tag u keeps it")
	}
}

// A build through the backend must leave a record under the built image's
// ID, with its index and Dockerfile, for either builder.
func TestContextIndexBuildRecord(t *testing.T) {
	for _, classic := range []bool{false, true} {
		name := map[bool]string{false: "buildkit", true: "classic"}[classic]
		t.Run(name, func(t *testing.T) {
			if classic {
				t.Setenv("DOCKER_BUILDKIT", "0")
			}
			s := newStack(t, "services:\n  x:\n    image: devstack-test-record-"+name+":{{TAG}}\n    build: ./ctx\n")
			df := "FROM scratch\nCOPY a.txt /a.txt\n"
			if err := os.MkdirAll(filepath.Join(s.dir, "ctx"), 0o755); err != nil {
				t.Fatal(err)
			}
			for rel, data := range map[string]string{"Dockerfile": df, "a.txt": "alpha"} {
				if err := os.WriteFile(filepath.Join(s.dir, "ctx", rel), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			l := &logs{}
			if err := s.b.buildImage(t.Context(), specFor(s.p, "x", l)); err != nil {
				t.Fatalf("build: %v\n%s", err, l)
			}
			img, err := s.b.cli.ImageInspect(t.Context(), "devstack-test-record-"+name+":"+testRunTag)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { removeImages(t, s.b, img.ID) })
			r := s.b.buildRecord(img.ID)
			if r == nil {
				t.Fatalf("no record for the built image %s", img.ID)
			}
			if string(r.Dockerfile) != df || r.DockerfilePath != "Dockerfile" || r.BuildKit == classic || r.Dir != filepath.Join(s.dir, "ctx") {
				t.Errorf("record %+v", r)
			}
			if e := r.Index["a.txt"]; e.Sum != sha256.Sum256([]byte("alpha")) {
				t.Errorf("a.txt entry %+v", e)
			}
		})
	}
}

// removeImages removes images by ID at a test's end.
func removeImages(t *testing.T, b *Backend, ids ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		if _, err := b.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Logf("removing image %s: %v", id, err)
		}
	}
}
