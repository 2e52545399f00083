package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// testContext makes a context index from entries "path=content" (a file,
// 0644; "path=content@0755" gives the mode), "path/" (a directory, 0755;
// "path/@0700"), "path->target" (a symlink). Parent directories are added.
func testContext(entries ...string) map[string]contextEntry {
	idx := map[string]contextEntry{}
	for _, e := range entries {
		mode := fs.FileMode(0)
		if i := strings.LastIndex(e, "@"); i >= 0 {
			m, err := strconv.ParseUint(e[i+1:], 8, 32)
			if err != nil {
				panic(e)
			}
			mode, e = fs.FileMode(m), e[:i]
		}
		switch {
		case strings.Contains(e, "->"):
			name, target, _ := strings.Cut(e, "->")
			idx[name] = contextEntry{Mode: fs.ModeSymlink | 0o777, Link: target}
		case strings.HasSuffix(e, "/"):
			idx[strings.TrimSuffix(e, "/")] = contextEntry{Mode: fs.ModeDir | cmpMode(mode, 0o755)}
		default:
			name, data, _ := strings.Cut(e, "=")
			idx[name] = contextEntry{Mode: cmpMode(mode, 0o644), Size: int64(len(data)), Sum: sha256.Sum256([]byte(data))}
		}
	}
	for rel := range maps.Clone(idx) {
		for d := parentOf(rel); d != ""; d = parentOf(d) {
			if _, ok := idx[d]; !ok {
				idx[d] = contextEntry{Mode: fs.ModeDir | 0o755}
			}
		}
	}
	return idx
}

func cmpMode(m, def fs.FileMode) fs.FileMode {
	if m == 0 {
		return def
	}
	return m
}

func parentOf(rel string) string {
	i := strings.LastIndex(rel, "/")
	if i < 0 {
		return ""
	}
	return rel[:i]
}

// fakeImage makes the layers and history BuildKit would give the image r
// built: every instruction of the stages built one history entry; a COPY's
// layer is a digest of what it wrote, a RUN's of its command, the layer
// of anything else reading the context of the whole context. Base images
// have two layers and three entries.
func fakeImage(t *testing.T, r *buildRecord) imageLayers {
	t.Helper()
	stages, why := parseDockerfile(r.Dockerfile)
	if why != "" {
		// A layer per context, so that the images differ.
		digest := sha256.New()
		for _, rel := range slices.Sorted(maps.Keys(r.Index)) {
			fmt.Fprintf(digest, "%s %v %x\n", rel, r.Index[rel].Mode, r.Index[rel].Sum)
		}
		return imageLayers{DiffIDs: []string{hex.EncodeToString(digest.Sum(nil))}, History: []historyEntry{{"COPY . / # buildkit", 1}}, Config: "{}"}
	}
	target := len(stages) - 1
	for i, st := range stages {
		if r.Target != "" && st.Name == strings.ToLower(r.Target) {
			target = i
		}
	}
	il := imageLayers{Config: "{}"}
	var hist []historyEntry // oldest first
	var build func(i int)
	build = func(i int) {
		st := stages[i]
		parent := -1
		for j := range i {
			if stages[j].Name != "" && stages[j].Name == strings.ToLower(st.Base) {
				parent = j
			}
		}
		switch {
		case parent >= 0:
			build(parent)
		case st.Base != "scratch":
			il.DiffIDs = append(il.DiffIDs, "sha256:base0-"+st.Base, "sha256:base1-"+st.Base)
			hist = append(hist, historyEntry{"/bin/sh -c #(nop) ADD file:0 in / ", 100}, historyEntry{"/bin/sh -c apk add x", 50}, historyEntry{`/bin/sh -c #(nop)  CMD ["sh"]`, 0})
		}
		for _, s := range simulate(st, st.Base == "scratch", r.Index) {
			text, size, layer := s.text, int64(1), s.layer
			digest := sha256.New()
			switch {
			case s.kind == stepMeta:
				text, layer = s.in.Cmd+" "+s.in.Args, false
			case s.kind == stepCopy && s.why == "":
				size, _ = s.sizes()
				for _, o := range s.outs {
					fmt.Fprintf(digest, "%s %v %x %s\n", o.Dst, o.E.Mode, o.E.Sum, o.E.Link)
				}
			case s.kind == stepWorkdir && s.why == "":
				size = 0
			case s.in.Cmd == "RUN":
				text = "RUN /bin/sh -c " + s.in.Args + " # buildkit"
				digest.Write([]byte(s.in.Args))
			case strings.Contains(s.in.Args, "--from="): // another stage's files: not the context's
				text = s.in.Cmd + " " + s.in.Args + " # buildkit"
				digest.Write([]byte(s.in.Args))
			default:
				if text == "" {
					text = s.in.Cmd + " " + s.in.Args + " # buildkit"
				}
				layer = true
				for _, rel := range slices.Sorted(maps.Keys(r.Index)) {
					fmt.Fprintf(digest, "%s %v %x\n", rel, r.Index[rel].Mode, r.Index[rel].Sum)
				}
			}
			if !layer {
				size = 0
			} else {
				fmt.Fprintf(digest, "%s\n", text)
				il.DiffIDs = append(il.DiffIDs, "sha256:"+hex.EncodeToString(digest.Sum(nil)))
			}
			hist = append(hist, historyEntry{CreatedBy: text, Size: size})
		}
	}
	build(target)
	slices.Reverse(hist)
	il.History = hist
	return il
}

func TestLayerDiffCopy(t *testing.T) {
	base := []string{"a.txt=alpha", "b.txt=bravo", "app/", "app/one.txt=1", "app/sub/", "app/sub/two.txt=2", "link->a.txt"}
	edit := func(changes ...string) []string {
		out := slices.Clone(base)
		for _, c := range changes {
			if name, ok := strings.CutPrefix(c, "-"); ok {
				out = slices.DeleteFunc(out, func(e string) bool {
					return e == name || strings.HasPrefix(e, name+"=") || strings.HasPrefix(e, name+"->")
				})
				continue
			}
			key := c
			for _, sep := range []string{"=", "->", "@"} {
				key, _, _ = strings.Cut(key, sep)
			}
			out = slices.DeleteFunc(out, func(e string) bool {
				return e == key || strings.HasPrefix(e, key+"=") || strings.HasPrefix(e, key+"->") || strings.HasPrefix(e, key+"@")
			})
			out = append(out, c)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		df, newDF string   // newDF "" is df
		old, new  []string // context entries; old nil is base
		want      []string // "dst mode" of each change, or
		why       string   // a substring of the decline
	}{
		{name: "file source", df: "FROM scratch\nCOPY a.txt /a.txt\n", new: edit("a.txt=ALPHA"), want: []string{"/a.txt -rw-r--r-- a.txt"}},
		{name: "unchanged files skipped", df: "FROM scratch\nCOPY . /app\n", new: edit("b.txt=BRAVO"), want: []string{"/app/b.txt -rw-r--r-- b.txt"}},
		{name: "nothing changed", df: "FROM scratch\nCOPY . /app\n", new: base, want: nil},
		{name: "directory source, trailing slash", df: "FROM scratch\nCOPY app/ /srv/\n", new: edit("app/sub/new/", "app/sub/new/n.txt=n@0600"),
			want: []string{"/srv/sub/new drwxr-xr-x app/sub/new", "/srv/sub/new/n.txt -rw------- app/sub/new/n.txt"}},
		{name: "directory source, no slash", df: "FROM scratch\nCOPY app /srv\n", new: edit("app/one.txt=one"), want: []string{"/srv/one.txt -rw-r--r-- app/one.txt"}},
		{name: "several sources", df: "FROM scratch\nCOPY a.txt b.txt /x/\n", new: edit("a.txt=A"), want: []string{"/x/a.txt -rw-r--r-- a.txt"}},
		{name: "trailing slash", df: "FROM alpine\nCOPY a.txt /x/\n", new: edit("a.txt=A"), want: []string{"/x/a.txt -rw-r--r-- a.txt"}},
		{name: "workdir absolute", df: "FROM alpine\nWORKDIR /srv\nCOPY a.txt ./\n", new: edit("a.txt=A"), want: []string{"/srv/a.txt -rw-r--r-- a.txt"}},
		{name: "workdir relative", df: "FROM alpine\nWORKDIR /srv\nWORKDIR sub\nCOPY a.txt .\n", new: edit("a.txt=A"), want: []string{"/srv/sub/a.txt -rw-r--r-- a.txt"}},
		{name: "workdir relative in scratch", df: "FROM scratch\nWORKDIR srv\nCOPY a.txt b\n", new: edit("a.txt=A"), want: []string{"/srv/b -rw-r--r-- a.txt"}},
		{name: "file onto a workdir", df: "FROM alpine\nWORKDIR /srv\nCOPY a.txt /srv\n", new: edit("a.txt=A"), want: []string{"/srv/a.txt -rw-r--r-- a.txt"}},
		{name: "json form", df: "FROM scratch\ncopy [\"a.txt\", \"b.txt\", \"/j/\"]\n", new: edit("b.txt=B"), want: []string{"/j/b.txt -rw-r--r-- b.txt"}},
		{name: "continuation and comments", df: "FROM scratch\n# c\nCOPY a.txt \\\n  # inner\n  b.txt /j/\n", new: edit("b.txt=B"), want: []string{"/j/b.txt -rw-r--r-- b.txt"}},
		{name: "mode only", df: "FROM scratch\nCOPY . /app/\n", new: edit("a.txt=alpha@0755"), want: []string{"/app/a.txt -rwxr-xr-x a.txt"}},
		{name: "symlink in a directory", df: "FROM scratch\nCOPY . /app/\n", new: edit("link->b.txt"), want: []string{"/app/link Lrwxrwxrwx link ->b.txt"}},
		{name: "symlink source is followed", df: "FROM scratch\nCOPY link /l\n", new: edit("a.txt=A"), want: []string{"/l -rw-r--r-- a.txt"}},
		{name: "later copy wins", df: "FROM scratch\nCOPY a.txt /x/f\nCOPY b.txt /x/f\n", new: edit("b.txt=B"), want: []string{"/x/f -rw-r--r-- b.txt"}},
		{name: "metadata after the copy", df: "FROM alpine\nWORKDIR /srv\nCOPY . .\nENV A=1\nEXPOSE 80\nCMD [\"x\"]\n", new: edit("a.txt=A"), want: []string{"/srv/a.txt -rw-r--r-- a.txt"}},
		{name: "run before the changed copy", df: "FROM alpine\nRUN make\nCOPY a.txt /x/\n", new: edit("a.txt=A"), want: []string{"/x/a.txt -rw-r--r-- a.txt"}},
		{name: "target stage", df: "FROM scratch AS one\nCOPY a.txt /a/\nFROM scratch AS two\nCOPY b.txt /b/\n", new: edit("a.txt=A", "b.txt=B"), want: []string{"/a/a.txt -rw-r--r-- a.txt"}},

		{name: "file onto the root", df: "FROM alpine\nCOPY a.txt /.\n", new: edit("a.txt=A"), want: []string{"/a.txt -rw-r--r-- a.txt"}},
		{name: "whole context into the root", df: "FROM scratch\nCOPY . /\n", new: edit("app/one.txt=one"), want: []string{"/app/one.txt -rw-r--r-- app/one.txt"}},
		{name: "source through a symlinked directory", df: "FROM scratch\nCOPY applink/one.txt /x/\n", old: append(slices.Clone(base), "applink->app"), new: append(edit("app/one.txt=one"), "applink->app"), want: []string{"/x/one.txt -rw-r--r-- app/one.txt"}},
		{name: "source outside the context stays inside", df: "FROM scratch\nCOPY ../../a.txt /x/\n", new: edit("a.txt=A"), want: []string{"/x/a.txt -rw-r--r-- a.txt"}},

		{name: "empty directory copied", df: "FROM scratch\nCOPY a.txt /x/\nCOPY empty/ /e/\n", old: append(slices.Clone(base), "empty/"), new: append(edit("a.txt=A"), "empty/"), why: "copies an empty directory"},
		{name: "run after the copy", df: "FROM alpine\nCOPY a.txt /x/\nRUN make\n", new: edit("a.txt=A"), why: "RUN on line 3"},
		{name: "add", df: "FROM alpine\nADD a.txt /x/\n", new: edit("a.txt=A"), why: "ADD on line 2"},
		{name: "chmod flag", df: "FROM alpine\nCOPY --chmod=755 a.txt /x/\n", new: edit("a.txt=A"), why: "flags (--chmod=755)"},
		{name: "from flag", df: "FROM alpine\nCOPY --from=build /out /x/\nCOPY a.txt /y/\n", new: edit("a.txt=A"), want: []string{"/y/a.txt -rw-r--r-- a.txt"}},
		{name: "link flag", df: "FROM alpine\nCOPY --link a.txt /x/\n", new: edit("a.txt=A"), why: "flags (--link)"},
		{name: "variable", df: "FROM alpine\nARG D=/x/\nCOPY a.txt $D\n", new: edit("a.txt=A"), why: "variable ($D)"},
		{name: "wildcard", df: "FROM alpine\nCOPY *.txt /x/\n", new: edit("a.txt=A"), why: "wildcard (*.txt)"},
		{name: "url", df: "FROM alpine\nCOPY http://example.com/a /x/\nCOPY a.txt /y/\n", new: edit("a.txt=A"), why: "URL"},
		{name: "heredoc", df: "FROM alpine\nCOPY <<EOF /x\nCOPY a.txt /y/\n", new: edit("a.txt=A"), why: "heredoc"},
		{name: "quotes", df: "FROM alpine\nCOPY \"a.txt\" /x/\n", new: edit("a.txt=A"), why: "quoted"},
		{name: "removal", df: "FROM scratch\nCOPY . /app/\n", new: edit("-b.txt"), why: "/app/b.txt was removed"},
		{name: "file becomes a directory", df: "FROM scratch\nCOPY . /app/\n", new: edit("-b.txt", "b.txt/", "b.txt/c=c"), why: "/app/b.txt changes from a file to a directory"},
		{name: "file onto a path of the base image", df: "FROM alpine\nCOPY a.txt /a.txt\n", new: edit("a.txt=A"), why: "whether /a.txt is a directory in the base image is not known"},
		{name: "relative destination without workdir", df: "FROM alpine\nCOPY a.txt x/\n", new: edit("a.txt=A"), why: "relative to the base image's workdir"},
		{name: "workdir with a variable", df: "FROM scratch\nWORKDIR $HOME\nCOPY a.txt ./\n", new: edit("a.txt=A"), why: "the workdir WORKDIR on line 2 sets with a variable"},
		{name: "changed layer in another stage", df: "FROM scratch AS b\nCOPY a.txt /a/\nFROM b\nCOPY b.txt /b/\n", new: edit("a.txt=A"), why: "did not make it"},
		{name: "copy instruction changed", df: "FROM scratch\nCOPY a.txt /x/\n", newDF: "FROM scratch\nCOPY a.txt /y/\n", new: edit("a.txt=A"), why: "COPY instructions changed"},
		{name: "copy added", df: "FROM scratch\nCOPY a.txt /x/\n", newDF: "FROM scratch\nCOPY a.txt /x/\nCOPY b.txt /x/\n", why: "layers"},
		{name: "syntax directive", df: "# syntax=docker/dockerfile:1\nFROM scratch\nCOPY a.txt /x/\n", new: edit("a.txt=A"), why: "frontend of its own"},
		{name: "new directory not sent itself", df: "FROM scratch\nCOPY . /app/\n", new: append(edit(), "new/n.txt=n", "new/@1777"), why: "directory new was not sent itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldIdx := testContext(cmpSlice(tc.old, base)...)
			newIdx := testContext(cmpSlice(tc.new, base)...)
			if tc.name == "new directory not sent itself" {
				e := newIdx["new"]
				e.Unsure = "directory new was not sent itself"
				newIdx["new"] = e
			}
			old := &buildRecord{ImageID: "old", Dockerfile: []byte(tc.df), Index: oldIdx, BuildKit: true}
			newDF := tc.df
			if tc.newDF != "" {
				newDF = tc.newDF
			}
			nw := &buildRecord{ImageID: "new", Dockerfile: []byte(newDF), Index: newIdx, BuildKit: true}
			if tc.name == "target stage" {
				old.Target, nw.Target = "one", "one"
			}
			changes, why := copyDiff(old, nw, fakeImage(t, old), fakeImage(t, nw))
			if tc.why != "" {
				if !strings.Contains(why, tc.why) {
					t.Fatalf("copyDiff declined with %q, changes %v; want a decline mentioning %q", why, changes, tc.why)
				}
				return
			}
			if why != "" {
				t.Fatalf("copyDiff declined: %s", why)
			}
			var got []string
			for _, c := range changes {
				s := fmt.Sprintf("%s %v %s", c.Dst, c.Mode, c.Rel)
				if c.Link != "" {
					s += " ->" + c.Link
				}
				if c.Dir != c.Mode.IsDir() || (c.Mode.IsRegular() && (c.Sum != newIdx[c.Rel].Sum || c.Size != newIdx[c.Rel].Size)) {
					t.Errorf("change %+v does not carry its entry %+v", c, newIdx[c.Rel])
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("changes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func cmpSlice(a, b []string) []string {
	if a == nil {
		return b
	}
	return a
}

// The declines that come before any Dockerfile is read.
func TestLayerDiffDeclines(t *testing.T) {
	df := []byte("FROM scratch\nCOPY a.txt /x/\n")
	rec := func(id string, data string, bk bool) *buildRecord {
		return &buildRecord{ImageID: id, Dockerfile: df, Index: testContext("a.txt=" + data), BuildKit: bk}
	}
	old, nw := rec("old", "a", true), rec("new", "b", true)
	oi, ni := fakeImage(t, old), fakeImage(t, nw)
	for _, tc := range []struct {
		name     string
		old, new *buildRecord
		oi, ni   imageLayers
		why      string
	}{
		{"no old record", nil, nw, oi, ni, "not built by this devstack"},
		{"no new record", old, nil, oi, ni, "not built by this devstack"},
		{"classic builder", rec("old", "a", false), nw, oi, ni, "classic builder"},
		{"config changed", old, nw, oi, imageLayers{DiffIDs: ni.DiffIDs, History: ni.History, Config: `{"Env":["A=1"]}`}, "config"},
		{"layer count", old, nw, oi, imageLayers{DiffIDs: append(slices.Clone(ni.DiffIDs), "x"), History: ni.History, Config: ni.Config}, "layers"},
		{"size mismatch", old, nw, oi, imageLayers{DiffIDs: ni.DiffIDs, History: []historyEntry{{ni.History[0].CreatedBy, 7}}, Config: ni.Config}, "holds 7 bytes"},
		{"history mismatch", old, nw, oi, imageLayers{DiffIDs: ni.DiffIDs, History: []historyEntry{{"COPY a.txt /y/ # buildkit", 1}}, Config: ni.Config}, "does not match"},
		{"history from the classic builder", old, nw, oi, imageLayers{DiffIDs: ni.DiffIDs, History: []historyEntry{{"/bin/sh -c #(nop) COPY file:abc in /x/ ", 1}}, Config: ni.Config}, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes, why := copyDiff(tc.old, tc.new, tc.oi, tc.ni)
			if !strings.Contains(why, tc.why) {
				t.Errorf("copyDiff = %v, %q; want a decline mentioning %q", changes, why, tc.why)
			}
		})
	}
}

// The Dockerfile reader must split stages and instructions as BuildKit
// does: keywords in any case, continuation lines joined, comments and
// empty lines inside them dropped.
func TestLayerDiffParseDockerfile(t *testing.T) {
	stages, why := parseDockerfile([]byte("ARG V=1\nFROM --platform=linux/amd64 golang AS Build\nRUN go build \\\n\n  # c\n  ./...\nfrom scratch\ncopy --from=build /out /\r\n"))
	if why != "" {
		t.Fatal(why)
	}
	if len(stages) != 2 || stages[0].Name != "build" || stages[0].Base != "golang" || stages[1].Base != "scratch" {
		t.Fatalf("stages %+v", stages)
	}
	if in := stages[0].Ins[0]; in.Cmd != "RUN" || in.Args != "go build   ./..." || in.Line != 3 {
		t.Errorf("RUN parsed as %+v", in)
	}
	if in := stages[1].Ins[0]; in.Cmd != "COPY" || in.Args != "--from=build /out /" || in.Line != 8 {
		t.Errorf("COPY parsed as %+v", in)
	}
	if _, why := parseDockerfile([]byte("# escape=`\nFROM scratch\n")); !strings.Contains(why, "escape") {
		t.Errorf("escape directive: why %q", why)
	}
}
