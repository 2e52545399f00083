package docker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// layerBuilds builds one service's image again and again from a context
// it edits between builds, through the backend's own build path.
type layerBuilds struct {
	t   *testing.T
	s   *stack
	dir string // the context
	tag string
}

func newLayerBuilds(t *testing.T, name string) *layerBuilds {
	tag := "devstack-test-layerdiff-" + name + ":" + testRunTag
	s := newStack(t, "services:\n  x:\n    image: "+tag+"\n    build: ./ctx\n")
	return &layerBuilds{t: t, s: s, dir: filepath.Join(s.dir, "ctx"), tag: tag}
}

// write writes files: "name" → content; a content "->target" makes a
// symlink, "" removes the path.
func (lb *layerBuilds) write(files map[string]string) {
	lb.t.Helper()
	for rel, data := range files {
		p := filepath.Join(lb.dir, rel)
		if err := os.RemoveAll(p); err != nil {
			lb.t.Fatal(err)
		}
		if data == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			lb.t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(data, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(data), 0o644)
		}
		if err != nil {
			lb.t.Fatal(err)
		}
	}
}

func (lb *layerBuilds) chmod(rel string, mode fs.FileMode) {
	lb.t.Helper()
	if err := os.Chmod(filepath.Join(lb.dir, rel), mode); err != nil {
		lb.t.Fatal(err)
	}
}

// build builds the image and returns its ID, removed at the test's end.
func (lb *layerBuilds) build() string {
	lb.t.Helper()
	ctx, cancel := context.WithTimeout(lb.t.Context(), 2*time.Minute)
	defer cancel()
	l := &logs{}
	if err := lb.s.b.buildImage(ctx, specFor(lb.s.p, "x", l)); err != nil {
		lb.t.Fatalf("building: %v\n%s", err, l)
	}
	id := lb.s.b.imageID(ctx, lb.tag)
	if id == "" {
		lb.t.Fatalf("no image %s after the build", lb.tag)
	}
	lb.t.Cleanup(func() { removeImages(lb.t, lb.s.b, id) })
	return id
}

// diff runs copyDiff between two images as a reload would.
func (lb *layerBuilds) diff(oldID, newID string) ([]fileChange, string) {
	lb.t.Helper()
	changes, why, err := lb.s.b.imageDiff(lb.t.Context(), oldID, newID)
	if err != nil {
		lb.t.Fatal(err)
	}
	return changes, why
}

// imageFile is what an image holds at a path.
type imageFile struct {
	mode fs.FileMode
	sum  [32]byte
	link string
}

// imageFiles reads the files of image id under the given roots back
// through a created (never started) container's archive.
func imageFiles(t *testing.T, b *Backend, id string, roots ...string) map[string]imageFile {
	t.Helper()
	ctx := t.Context()
	cr, err := b.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: id, Cmd: []string{"/none"}}})
	if err != nil {
		t.Fatalf("creating a container of %s: %v", id, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := b.cli.ContainerRemove(ctx, cr.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("removing container %s: %v", cr.ID, err)
		}
	}()
	files := map[string]imageFile{}
	for _, root := range roots {
		res, err := b.cli.CopyFromContainer(ctx, cr.ID, client.CopyFromContainerOptions{SourcePath: root})
		if err != nil {
			t.Fatalf("reading %s of %s: %v", root, id, err)
		}
		tr := tar.NewReader(res.Content)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			// The archive names entries from the root's base name.
			p := path.Join(path.Dir(root), strings.TrimSuffix(hdr.Name, "/"))
			f := imageFile{mode: hdr.FileInfo().Mode(), link: hdr.Linkname}
			if hdr.Typeflag == tar.TypeReg {
				data, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				f.sum = sha256.Sum256(data)
			}
			files[p] = f
		}
		res.Content.Close()
	}
	return files
}

// copyDiff must give exactly the paths where a BuildKit build's new image
// differs from the old one, with the new image's content and mode, when
// the layers that changed came from plain COPYs of the context; and
// decline otherwise.
func TestLayerDiffEngine(t *testing.T) {
	lb := newLayerBuilds(t, "copy")
	b := lb.s.b
	lb.write(map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY bin/x /bin/x\nWORKDIR /srv\nCOPY app/ ./app/\nCOPY a.txt b.txt ./\nCOPY . /ctx/\n",
		".dockerignore": "ignored.txt\nDockerfile\n.dockerignore\n",
		"bin/x":         "binary v1",
		"app/a.txt":     "app a",
		"app/sub/b.txt": "app b v1",
		"app/link":      "->a.txt",
		"app/gone.txt":  "kept until the removal build",
		"a.txt":         "a",
		"b.txt":         "b",
		"ignored.txt":   "not sent",
	})
	lb.chmod("bin/x", 0o755)
	oldID := lb.build()

	// Edit: content, mode, a new directory and file, a symlink's target,
	// an ignored file, and the Dockerfile itself (a comment), which the
	// .dockerignore names but the builder still gets and COPY . copies.
	lb.write(map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY bin/x /bin/x\nWORKDIR /srv\nCOPY app/ ./app/\nCOPY a.txt b.txt ./\nCOPY . /ctx/\n# v2\n",
		"bin/x":         "binary v2",
		"app/sub/b.txt": "app b v2",
		"app/new/c.txt": "new c",
		"app/link":      "->sub/b.txt",
		"ignored.txt":   "still not sent",
	})
	lb.chmod("app/a.txt", 0o600)
	lb.chmod("app/new", 0o700)
	newID := lb.build()

	changes, why := lb.diff(oldID, newID)
	if why != "" {
		t.Fatalf("copyDiff declined: %s", why)
	}
	roots := []string{"/bin", "/srv", "/ctx"}
	oldFiles, newFiles := imageFiles(t, b, oldID, roots...), imageFiles(t, b, newID, roots...)
	// Exactly the paths whose type, mode, content or link differ.
	var differ []string
	for p, n := range newFiles {
		if o, ok := oldFiles[p]; !ok || o != n {
			differ = append(differ, p)
		}
	}
	for p := range oldFiles {
		if _, ok := newFiles[p]; !ok {
			t.Errorf("%s is in the old image only", p)
		}
	}
	slices.Sort(differ)
	for _, c := range changes {
		t.Logf("change %s %v from %s", c.Dst, c.Mode, c.Rel)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Dst)
		n, ok := newFiles[c.Dst]
		if !ok {
			t.Errorf("change %s: the new image has no such path", c.Dst)
			continue
		}
		if n.mode != c.Mode || n.link != c.Link || (c.Mode.IsRegular() && n.sum != c.Sum) {
			t.Errorf("change %s: mode %v link %q; the new image has mode %v link %q (content equal: %v)", c.Dst, c.Mode, c.Link, n.mode, n.link, n.sum == c.Sum)
		}
		if c.Mode.IsRegular() {
			data, err := os.ReadFile(filepath.Join(lb.dir, filepath.FromSlash(c.Rel)))
			if err != nil || sha256.Sum256(data) != c.Sum {
				t.Errorf("change %s: Rel %s does not hold its content (%v)", c.Dst, c.Rel, err)
			}
		}
	}
	if !slices.Equal(got, differ) {
		t.Errorf("changes:\n  %s\nthe images differ at:\n  %s", strings.Join(got, "\n  "), strings.Join(differ, "\n  "))
	}
	for _, p := range []string{"/srv/a.txt", "/srv/b.txt"} {
		if slices.Contains(got, p) {
			t.Errorf("unchanged %s is among the changes", p)
		}
	}
	for _, p := range []string{"/ctx/Dockerfile", "/ctx/.dockerignore"} {
		if _, ok := newFiles[p]; !ok {
			t.Errorf("%s: the builder did not copy the Dockerfile or .dockerignore, which the index holds", p)
		}
	}
	if _, ok := newFiles["/ctx/ignored.txt"]; ok {
		t.Error("ignored.txt reached the image")
	}

	// A removal needs a new container.
	lb.write(map[string]string{"app/gone.txt": ""})
	goneID := lb.build()
	if changes, why := lb.diff(newID, goneID); !strings.Contains(why, "app/gone.txt was removed") {
		t.Errorf("after a removal: copyDiff = %v, %q; want it declined", changes, why)
	}
}

// A changed layer that RUN, ADD or a COPY with flags made, or one built by
// the classic builder, must be declined on the real engine too.
func TestLayerDiffEngineDeclines(t *testing.T) {
	for _, tc := range []struct {
		name, df, why string
		classic       bool
	}{
		{name: "add", df: "FROM scratch\nADD a.txt /a/\n", why: "ADD on line 2"},
		{name: "chmod", df: "FROM scratch\nCOPY --chmod=755 a.txt /a/\n", why: "flags (--chmod=755)"},
		{name: "run", df: "FROM " + testImage + "\nCOPY a.txt /a/\nRUN [\"/testsvc\", \"exit\", \"0\"]\n", why: "RUN on line 3"},
		{name: "classic", df: "FROM scratch\nCOPY a.txt /a/\n", why: "classic builder", classic: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.classic {
				t.Setenv("DOCKER_BUILDKIT", "0")
			}
			lb := newLayerBuilds(t, tc.name)
			lb.write(map[string]string{"Dockerfile": tc.df, "a.txt": "one"})
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			l := &logs{}
			if err := lb.s.b.buildImage(ctx, specFor(lb.s.p, "x", l)); err != nil {
				if tc.name == "chmod" {
					t.Skipf("this engine's builder does not take COPY --chmod: %v", err)
				}
				t.Fatalf("building: %v\n%s", err, l)
			}
			oldID := lb.s.b.imageID(ctx, lb.tag)
			t.Cleanup(func() { removeImages(t, lb.s.b, oldID) })
			lb.write(map[string]string{"a.txt": "two"})
			newID := lb.build()
			if tc.classic {
				oi, _ := lb.s.b.imageLayers(ctx, newID)
				t.Logf("classic builder history: %q", oi.History[0].CreatedBy)
			}
			if changes, why := lb.diff(oldID, newID); !strings.Contains(why, tc.why) {
				t.Errorf("copyDiff = %v, %q; want a decline mentioning %q", changes, why, tc.why)
			}
		})
	}
}
