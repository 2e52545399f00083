package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
)

// copyDiff tells which files differ between two images devstack built,
// from what it sent to the builds (buildrecord.go) and the images' layer
// lists and histories, without reading a layer back:
//
//	old image  L0 … Lk-1  Ok … On-1     the first k layers equal,
//	new image  L0 … Lk-1  Nk … Nn-1     the tail made by plain COPYs
//	                      └─ final stage instructions, matched 1:1 by
//	                         position, keyword, text and layer size
//
// Each tail COPY's output is worked out from its record's context index
// with the builder's COPY rules; the files whose content, mode or link
// differ between the old tail's output and the new one's are the change.
// Anything it cannot tell exactly it declines, saying why.

// imageLayers is what the engine says of an image's layers.
type imageLayers struct {
	DiffIDs []string       // RootFS.Layers, base first
	History []historyEntry // newest first, as GET /images/{id}/history lists them
	Config  string         // the image's config (env, command, workdir, user …) as JSON, compared whole
}

// historyEntry is one entry of an image's history. The Engine API does not
// say which entries made a layer (EmptyLayer is in the image config only,
// which only docker save returns): Size, the bytes of regular files the
// entry's layer holds, is checked against what each COPY wrote instead.
type historyEntry struct {
	CreatedBy string
	Size      int64
}

// imageLayers reads an image's layers, history and config from the engine.
func (b *Backend) imageLayers(ctx context.Context, id string) (imageLayers, error) {
	img, err := b.cli.ImageInspect(ctx, id)
	if err != nil {
		return imageLayers{}, fmt.Errorf("inspecting image %s: %w", shortID(id), err)
	}
	h, err := b.cli.ImageHistory(ctx, id)
	if err != nil {
		return imageLayers{}, fmt.Errorf("reading the history of image %s: %w", shortID(id), err)
	}
	cfg, err := json.Marshal(img.Config)
	if err != nil {
		return imageLayers{}, fmt.Errorf("encoding the config of image %s: %w", shortID(id), err)
	}
	il := imageLayers{DiffIDs: img.RootFS.Layers, Config: string(cfg)}
	for _, e := range h.Items {
		il.History = append(il.History, historyEntry{CreatedBy: e.CreatedBy, Size: e.Size})
	}
	return il, nil
}

// imageDiff is copyDiff between images oldID and newID as this backend
// built them: their build records and what the engine says of their
// layers (two requests per image).
func (b *Backend) imageDiff(ctx context.Context, oldID, newID string) ([]fileChange, string, error) {
	old, new := b.buildRecord(oldID), b.buildRecord(newID)
	if old == nil || new == nil {
		return nil, "the image was not built by this devstack", nil
	}
	oi, err := b.imageLayers(ctx, oldID)
	if err != nil {
		return nil, "", err
	}
	ni, err := b.imageLayers(ctx, newID)
	if err != nil {
		return nil, "", err
	}
	changes, why := copyDiff(old, new, oi, ni)
	return changes, why, nil
}

// fileChange is one path to write into a container made from the old
// image so that it holds what the new image does.
type fileChange struct {
	Dst  string      // absolute path in the container
	Rel  string      // context path of the new content (slash-separated; a followed symlink's target)
	Mode fs.FileMode // type and permission bits the new image has
	Sum  [32]byte    // sha256 of a regular file's content
	Size int64       // a regular file's size
	Dir  bool
	Link string // a symlink's target
}

// copyDiff returns the files that differ between the images old and new
// built (parents before children), or why they cannot be told exactly
// ("" when they can). See the top of this file.
func copyDiff(old, new *buildRecord, oldImg, newImg imageLayers) ([]fileChange, string) {
	switch {
	case old == nil || new == nil:
		return nil, "the image was not built by this devstack"
	case !old.BuildKit || !new.BuildKit:
		return nil, "the image was built by the classic builder (DOCKER_BUILDKIT=0), whose layers devstack does not match to its Dockerfile"
	case oldImg.Config != newImg.Config:
		return nil, "the image's config (environment, command, workdir, user, ports …) changed"
	case len(oldImg.DiffIDs) != len(newImg.DiffIDs):
		return nil, fmt.Sprintf("the new image has %d layers, the old one %d", len(newImg.DiffIDs), len(oldImg.DiffIDs))
	}
	k := 0
	for k < len(newImg.DiffIDs) && newImg.DiffIDs[k] == oldImg.DiffIDs[k] {
		k++
	}
	if k == len(newImg.DiffIDs) {
		return nil, "" // the same files
	}
	oldTail, why := tailOf(old, oldImg, k)
	if why != "" {
		return nil, "the old image: " + why
	}
	newTail, why := tailOf(new, newImg, k)
	if why != "" {
		return nil, why
	}
	if len(oldTail) != len(newTail) {
		return nil, "the Dockerfile's COPY instructions changed"
	}
	for i := range newTail {
		if oldTail[i].key() != newTail[i].key() {
			return nil, fmt.Sprintf("the Dockerfile's COPY instructions changed (%s, was %s)", newTail[i].text, oldTail[i].text)
		}
	}
	oldFS, why := overlay(oldTail)
	if why != "" {
		return nil, why
	}
	newFS, why := overlay(newTail)
	if why != "" {
		return nil, why
	}
	var changes []fileChange
	for _, dst := range slices.Sorted(maps.Keys(newFS)) {
		n := newFS[dst]
		o, had := oldFS[dst]
		if had {
			if o.E.Mode.Type() != n.E.Mode.Type() {
				return nil, fmt.Sprintf("%s changes from %s to %s; a new container is needed", dst, kindOf(o.E), kindOf(n.E))
			}
			if o.E.Unsure != "" || n.E.Unsure != "" {
				if o.E.Unsure != "" && n.E.Unsure != "" && sameEntry(o.E, n.E) {
					continue // both made by the builder's unpacking alike
				}
				return nil, fmt.Sprintf("%s: %s", dst, cmpOr(n.E.Unsure, o.E.Unsure))
			}
			if sameEntry(o.E, n.E) {
				continue
			}
		} else if n.E.Unsure != "" {
			return nil, fmt.Sprintf("%s: %s", dst, n.E.Unsure)
		}
		changes = append(changes, fileChange{
			Dst: dst, Rel: n.Rel, Mode: n.E.Mode, Sum: n.E.Sum, Size: n.E.Size,
			Dir: n.E.isDir(), Link: n.E.Link,
		})
	}
	for _, dst := range slices.Sorted(maps.Keys(oldFS)) {
		if _, ok := newFS[dst]; !ok {
			return nil, fmt.Sprintf("%s was removed; a new container is needed", dst)
		}
	}
	return changes, ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func sameEntry(a, b contextEntry) bool {
	return a.Mode == b.Mode && a.Sum == b.Sum && a.Size == b.Size && a.Link == b.Link
}

func kindOf(e contextEntry) string {
	switch {
	case e.isDir():
		return "a directory"
	case e.isLink():
		return "a symlink"
	}
	return "a file"
}

// overlay lays the tail COPYs' outputs over each other, in order.
func overlay(tail []*step) (map[string]copyOut, string) {
	fsys := map[string]copyOut{}
	for _, st := range tail {
		for _, o := range st.outs {
			for d := path.Dir(o.Dst); d != "/"; d = path.Dir(d) {
				if p, ok := fsys[d]; ok && !p.E.isDir() {
					return nil, fmt.Sprintf("%s (%s) goes under %s, which an earlier COPY made %s", o.Dst, st.text, d, kindOf(p.E))
				}
			}
			if p, ok := fsys[o.Dst]; ok && p.E.Mode.Type() != o.E.Mode.Type() {
				return nil, fmt.Sprintf("%s (%s) replaces %s an earlier COPY made", o.Dst, st.text, kindOf(p.E))
			}
			fsys[o.Dst] = o
		}
	}
	return fsys, ""
}

// copyOut is one path a COPY writes, and the context entry it writes.
type copyOut struct {
	Dst string
	Rel string
	E   contextEntry
}

type stepKind int

const (
	stepMeta    stepKind = iota // changes the config only (ENV, LABEL, ARG …)
	stepWorkdir                 // WORKDIR: a directory, made if missing
	stepCopy                    // a COPY of context files only
	stepOther                   // anything else (RUN, ADD, COPY --from …)
)

// step is what one instruction of the final stage did, as far as told.
type step struct {
	in    dfInstruction
	kind  stepKind
	layer bool   // it makes a layer
	text  string // its image history entry (stepWorkdir, stepCopy)
	dst   string // where it writes (the workdir; a COPY's destination)
	outs  []copyOut
	why   string // why what it did is not known; "" when it is
}

// key identifies what a step does, to compare the old build's with the
// new one's.
func (s *step) key() string { return s.text + "\x00" + s.dst }

var metaCmds = map[string]bool{
	"ENV": true, "LABEL": true, "ARG": true, "CMD": true, "ENTRYPOINT": true, "EXPOSE": true,
	"USER": true, "VOLUME": true, "STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true,
	"MAINTAINER": true, "ONBUILD": true,
}

// tailOf is the steps that made the image's layers from k on, oldest
// first, matched to the final stage of the record's Dockerfile.
func tailOf(r *buildRecord, img imageLayers, k int) ([]*step, string) {
	stages, why := parseDockerfile(r.Dockerfile)
	if why != "" {
		return nil, why
	}
	stage, scratch, why := finalStage(stages, r.Target)
	if why != "" {
		return nil, why
	}
	steps := simulate(stage, scratch, r.Index)
	// Every instruction of the final stage adds one history entry, after
	// those of its base (and its base's ONBUILD triggers): the last
	// len(steps) entries are the stage's, newest first.
	m := len(steps)
	if len(img.History) < m {
		return nil, fmt.Sprintf("the image history has %d entries, fewer than the Dockerfile's final stage has instructions (%d)", len(img.History), m)
	}
	for j := range m {
		in := steps[m-1-j].in
		if first, _, _ := strings.Cut(img.History[j].CreatedBy, " "); first != in.Cmd {
			return nil, fmt.Sprintf("the image history (%q) does not match the Dockerfile's %s on line %d", img.History[j].CreatedBy, in.Cmd, in.Line)
		}
	}
	var tail []*step
	layer := len(img.DiffIDs) - 1
	for j := 0; layer >= k; j++ {
		if j == m {
			return nil, fmt.Sprintf("layer %d changed, and the Dockerfile's final stage did not make it", layer+1)
		}
		st, h := steps[m-1-j], img.History[j]
		at := fmt.Sprintf("%s on line %d", st.in.Cmd, st.in.Line)
		switch {
		case st.kind == stepOther:
			reason := st.why
			if reason == "" {
				reason = fmt.Sprintf("%s (%s) is not a COPY", at, trim(h.CreatedBy))
			}
			return nil, reason + "; its layer changed or follows one that did, and only files a plain COPY takes from the build context can be put into a running container"
		case st.why != "":
			return nil, st.why
		case !st.layer:
			if h.Size != 0 {
				return nil, fmt.Sprintf("the image history gives %s a layer of %d bytes; it makes none", at, h.Size)
			}
			continue
		case h.CreatedBy != st.text:
			return nil, fmt.Sprintf("the image history (%q) does not match the Dockerfile's %s (%q)", h.CreatedBy, at, st.text)
		case st.kind == stepCopy && len(st.outs) == 0:
			// An empty diff gets no layer (the exporter drops it), and the
			// history does not say whether this one had any.
			return nil, fmt.Sprintf("%s copies an empty directory: whether it made a layer cannot be told", at)
		}
		if want, alt := st.sizes(); h.Size != want && h.Size != alt {
			return nil, fmt.Sprintf("the layer of %s holds %d bytes, not the %d its files from the build context add up to", at, h.Size, want)
		}
		tail = append(tail, st)
		layer--
	}
	slices.Reverse(tail)
	return tail, ""
}

// sizes is the bytes a step's layer holds as history sizes count them:
// regular files only, or (on storage drivers that count them) with the
// symlinks' targets.
func (s *step) sizes() (int64, int64) {
	var reg, links int64
	for _, o := range s.outs {
		if o.E.Mode.IsRegular() {
			reg += o.E.Size
		}
		links += int64(len(o.E.Link))
	}
	return reg, reg + links
}

func trim(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// pathKnowledge is what the steps simulated so far say of the image's
// paths.
type pathKnowledge struct {
	made  map[string]fs.FileMode // type bits of the paths the stage's steps made
	empty bool                   // nothing else exists: FROM scratch, and no step whose effect is unknown
}

// forget drops what is known, after a step whose effect is not.
func (p *pathKnowledge) forget() {
	p.made = map[string]fs.FileMode{}
	p.empty = false
}

// isDir says whether p is a directory, and whether that is known.
func (p *pathKnowledge) isDir(q string) (isDir, known bool) {
	if q == "/" {
		return true, true
	}
	for d := path.Dir(q); d != "/"; d = path.Dir(d) {
		if t, ok := p.made[d]; ok && t != fs.ModeDir {
			return false, false // under a file or symlink: the builder follows or fails
		}
	}
	if t, ok := p.made[q]; ok {
		return t == fs.ModeDir, t != fs.ModeSymlink // a symlink may point at a directory
	}
	return false, p.empty
}

// mkdirAll records q and its parents as directories.
func (p *pathKnowledge) mkdirAll(q string) {
	for ; q != "/" && q != "."; q = path.Dir(q) {
		if _, ok := p.made[q]; !ok {
			p.made[q] = fs.ModeDir
		}
	}
}

// simulate works out what each instruction of stage does, from idx.
func simulate(stage dfStage, scratch bool, idx map[string]contextEntry) []*step {
	know := &pathKnowledge{made: map[string]fs.FileMode{}, empty: scratch}
	wd := "" // the workdir in effect; "" when not known (a base image's)
	wdWhy := "the base image's workdir, which devstack does not know"
	if scratch {
		wd = "/"
	}
	var steps []*step
	for _, in := range stage.Ins {
		st := &step{in: in}
		steps = append(steps, st)
		at := fmt.Sprintf("%s on line %d", in.Cmd, in.Line)
		switch {
		case metaCmds[in.Cmd]:
			st.kind = stepMeta
		case in.Cmd == "WORKDIR":
			st.kind, st.layer = stepWorkdir, true
			arg := in.Args
			switch {
			case arg == "" || strings.ContainsAny(arg, "$\"'\\"):
				st.why = fmt.Sprintf("%s uses a variable, quotes or escapes", at)
			case path.IsAbs(arg):
				st.text, st.dst = "WORKDIR "+arg, path.Clean(arg)
			case wd == "":
				st.why = fmt.Sprintf("%s is relative to %s", at, wdWhy)
			default:
				st.dst = path.Join(wd, arg)
				st.text = "WORKDIR " + st.dst
			}
			if st.why != "" {
				wd = ""
				wdWhy = fmt.Sprintf("the workdir %s sets with a variable", at)
				if !strings.Contains(st.why, "variable") {
					wdWhy = "a workdir devstack does not know"
				}
				know.forget() // it made a directory somewhere
				continue
			}
			// BuildKit makes no layer for WORKDIR / (dispatchWorkdir).
			st.layer = strings.TrimPrefix(st.text, "WORKDIR ") != "/"
			wd = st.dst
			know.mkdirAll(wd)
		case in.Cmd == "COPY":
			st.kind, st.layer = stepCopy, true
			ca, why := parseCopy(in)
			if why != "" {
				st.kind, st.why = stepOther, why
				know.forget()
				continue
			}
			st.text = ca.Text + " # buildkit"
			st.why = copyOutputs(st, ca, wd, wdWhy, idx, know)
			if st.why != "" {
				know.forget()
			}
		default:
			st.kind = stepOther
			know.forget()
		}
	}
	return steps
}

// copyOutputs works out the paths a COPY writes with BuildKit's rules
// (dockerfile2llb dispatchCopy, fsutil copy): a file source goes to the
// destination, or into it when it ends in / (or is .), when there are
// several sources, or when it is a directory already; a directory source's
// contents go into the destination; a source that is a symlink is
// followed, symlinks inside a directory are copied as they are; missing
// directories are made.
func copyOutputs(st *step, ca copyArgs, wd, wdWhy string, idx map[string]contextEntry, know *pathKnowledge) string {
	at := fmt.Sprintf("COPY on line %d", st.in.Line)
	intoDir := ca.Dst == "." || strings.HasSuffix(ca.Dst, "/")
	switch {
	case path.IsAbs(ca.Dst):
		st.dst = path.Clean(ca.Dst)
	case wd == "":
		return fmt.Sprintf("%s copies to a path relative to %s; give it an absolute destination or a WORKDIR", at, wdWhy)
	default:
		st.dst = path.Join(wd, ca.Dst)
	}
	if len(ca.Srcs) > 1 && !intoDir {
		return fmt.Sprintf("%s has several sources and a destination not ending in /", at)
	}
	if intoDir {
		know.mkdirAll(st.dst)
	} else {
		know.mkdirAll(path.Dir(st.dst))
	}
	var outs []copyOut
	for _, src := range ca.Srcs {
		name := path.Clean("/" + src) // sources are inside the context, whatever .. says
		rel, why := resolveInContext(idx, strings.TrimPrefix(name, "/"))
		if why != "" {
			return fmt.Sprintf("%s: %s", at, why)
		}
		e := contextEntry{Mode: fs.ModeDir | 0o755}
		if rel != "" {
			e = idx[rel]
		}
		if e.isDir() {
			// The destination itself is made (0755) or kept as it is, not
			// given the source's mode: not an output.
			for _, r := range slices.Sorted(maps.Keys(idx)) {
				sub := r
				if rel != "" {
					var ok bool
					if sub, ok = strings.CutPrefix(r, rel+"/"); !ok {
						continue
					}
				}
				outs = append(outs, copyOut{Dst: path.Join(st.dst, sub), Rel: r, E: idx[r]})
			}
			know.mkdirAll(st.dst)
			continue
		}
		dst := st.dst
		if intoDir || len(ca.Srcs) > 1 {
			dst = path.Join(st.dst, path.Base(name))
		} else {
			isDir, known := know.isDir(st.dst)
			if !known {
				return fmt.Sprintf("%s: whether %s is a directory in the base image is not known (a file copied onto a directory goes into it); end the destination with / or copy onto a path a WORKDIR or earlier COPY made", at, st.dst)
			}
			if isDir {
				dst = path.Join(st.dst, path.Base(name))
			}
		}
		outs = append(outs, copyOut{Dst: dst, Rel: rel, E: e})
	}
	// A later source overwrites an earlier one's path.
	last := map[string]int{}
	for i, o := range outs {
		last[o.Dst] = i
	}
	for i, o := range outs {
		if last[o.Dst] != i {
			continue
		}
		for d := path.Dir(o.Dst); d != "/"; d = path.Dir(d) {
			if t, ok := know.made[d]; ok && t == fs.ModeSymlink {
				return fmt.Sprintf("%s writes %s through the symlink %s", at, o.Dst, d)
			}
		}
		st.outs = append(st.outs, o)
		know.made[o.Dst] = o.E.Mode.Type()
		know.mkdirAll(path.Dir(o.Dst))
	}
	return ""
}

// resolveInContext follows the symlinks of rel's components inside the
// context (an absolute target is from the context root, .. stops there),
// as the builder does for a COPY source. "" is the context root.
func resolveInContext(idx map[string]contextEntry, rel string) (string, string) {
	orig := rel
	for hops := 0; hops < 64; hops++ {
		if rel == "" {
			return "", ""
		}
		parts := strings.Split(rel, "/")
		cur, followed := "", false
		for i, part := range parts {
			next := path.Join(cur, part)
			e, ok := idx[next]
			if !ok {
				return "", fmt.Sprintf("%s was not sent in the build context", orig)
			}
			if e.isLink() {
				base := cur
				if path.IsAbs(e.Link) {
					base = ""
				}
				rest := path.Join(append([]string{"/", base, e.Link}, parts[i+1:]...)...)
				rel, followed = strings.TrimPrefix(rest, "/"), true
				break
			}
			cur = next
		}
		if !followed {
			return cur, ""
		}
	}
	return "", fmt.Sprintf("%s: too many levels of symlinks", orig)
}
