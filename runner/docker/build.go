package docker

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// inlineDockerfile is the name under which a Dockerfile that is not a file
// of the context (dockerfile_inline:, or a path outside the context) is
// added to the context tar.
const inlineDockerfile = ".devstack.Dockerfile"

// Build implements runner.Builder. A service with build: is built from its
// context and tagged as Compose would tag it; a service with only image:
// gets its image pulled, but only when the engine does not have it, so
// that a stack of locally built images works without any registry.
func (b *Backend) Build(ctx context.Context, spec runner.Spec) error {
	if spec.Service.Compose.Build == nil {
		_, err := b.ensureImage(ctx, spec)
		return err
	}
	return b.build(ctx, spec)
}

// build builds a service's image, once per image tag and build config for
// the backend's life: services that share an image (the shop's five) wait
// for one build instead of running five.
func (b *Backend) build(ctx context.Context, spec runner.Spec) error {
	tag := imageName(spec.Project, spec.Service)
	key := tag + "\x00" + hashLabels(map[string]string{}, spec.Service.Compose.Build)[LabelConfigHash]
	b.mu.Lock()
	if b.builds == nil {
		b.builds = map[string]*buildOnce{}
	}
	bo, started := b.builds[key]
	if !started {
		bo = &buildOnce{done: make(chan struct{})}
		b.builds[key] = bo
	}
	b.mu.Unlock()
	if started {
		fmt.Fprintf(spec.Status, "waiting for the build of image %s (shared with another service)\n", tag)
		select {
		case <-bo.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		return bo.err
	}
	bo.err = b.buildImage(ctx, spec)
	if bo.err != nil {
		// A failed build may be retried by the next start.
		b.mu.Lock()
		delete(b.builds, key)
		b.mu.Unlock()
	}
	close(bo.done)
	return bo.err
}

// closeBoth closes a build's response and the context it was sent, so that
// the goroutine writing the context ends however the build does.
type closeBoth struct {
	io.ReadCloser
	ctx io.Closer
}

func (c closeBoth) Close() error {
	c.ctx.Close()
	return c.ReadCloser.Close()
}

// buildOnce is one build that several services may wait on.
type buildOnce struct {
	done chan struct{}
	err  error
}

func (b *Backend) buildImage(ctx context.Context, spec runner.Spec) error {
	p, svc := spec.Project, spec.Service
	bc := svc.Compose.Build
	tag := imageName(p, svc)
	dir := bc.Context
	if dir == "" {
		dir = "."
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(p.Dir, dir)
	}
	if strings.Contains(dir, "://") {
		return fmt.Errorf("building service %q: remote build context %q is not supported; clone it and point build.context at the directory", svc.Name, bc.Context)
	}
	dockerfile, extra, err := dockerfileFor(dir, bc.Dockerfile, bc.DockerfileInline)
	if err != nil {
		return fmt.Errorf("building service %q: %w", svc.Name, err)
	}
	// Project labels only: per-service labels would make every service's
	// build differ and miss the builder's cache.
	labels := projectLabels(p)
	maps.Copy(labels, bc.Labels)
	hashLabels(labels, bc)

	fmt.Fprintf(spec.Status, "building image %s from %s\n", tag, dir)
	opts := client.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  dockerfile,
		BuildArgs:   bc.Args,
		Target:      bc.Target,
		Labels:      labels,
		NoCache:     bc.NoCache,
		PullParent:  bc.Pull,
		NetworkMode: bc.Network,
		ExtraHosts:  bc.ExtraHosts.AsList(":"),
		Remove:      true,
		ForceRemove: true,
		// Either builder streams its log and errors as JSON over the one
		// request (buildkit.go).
		Version: b.builderFor(),
	}
	// The index of what was sent, and whether all of it was (written gets
	// the writer's error once it ends), make the build's record.
	var (
		idx     *contextIndex
		written chan error
	)
	send := func() (client.ImageBuildResult, error) {
		pr, pw := io.Pipe()
		idx, written = newContextIndex(dockerfile), make(chan error, 1)
		go func(idx *contextIndex, written chan<- error) {
			err := writeContext(pw, dir, dockerfile, extra, idx)
			pw.CloseWithError(err)
			written <- err
		}(idx, written)
		res, err := b.cli.ImageBuild(ctx, pr, opts)
		if err != nil {
			pr.Close() // unblocks the writer when the engine stopped reading
		} else {
			res.Body = closeBoth{res.Body, pr}
		}
		return res, err
	}
	res, err := send()
	if err != nil && opts.Version == build.BuilderBuildKit && b.buildKitRefused(err) {
		opts.Version = build.BuilderV1
		res, err = send()
	}
	if err != nil {
		return fmt.Errorf("building image %s for service %q: %w", tag, svc.Name, err)
	}
	defer func() {
		res.Body.Close()
		if opts.Version == build.BuilderBuildKit {
			b.dropUploadsLater()
		}
	}()
	// A failed build is not an HTTP error: it arrives as errorDetail in
	// the stream, after the log lines that explain it.
	var failure, imageID string
	progress := newBuildProgress(spec.Stdout)
	err = eachMessage(res.Body, func(m jsonstream.Message) {
		switch {
		case m.Aux != nil:
			if !progress.aux(m.ID, m.Aux) {
				imageID = cmp.Or(builtImageID(m.ID, m.Aux), imageID)
			}
		case m.Error != nil:
			failure = m.Error.Message
		case m.Stream != "":
			_, _ = io.WriteString(spec.Stdout, m.Stream)
		case m.Status != "":
			fmt.Fprintln(spec.Stdout, strings.TrimSpace(m.ID+" "+m.Status))
		}
	})
	if failure != "" {
		return fmt.Errorf("building image %s for service %q: %s: %w", tag, svc.Name, strings.TrimSpace(failure), ErrBuildFailed)
	}
	if err != nil {
		return fmt.Errorf("reading build output of image %s for service %q: %w", tag, svc.Name, err)
	}
	// The engine read the whole context to build from it; a writer that
	// did not finish (the engine stopped reading) leaves no record.
	res.Body.Close()
	if werr := <-written; werr == nil && imageID != "" && idx.Dockerfile != nil {
		b.keepRecord(&buildRecord{
			ImageID: imageID, Tag: tag, Dir: dir,
			Index: idx.Entries, Dockerfile: idx.Dockerfile, DockerfilePath: idx.dockerfile,
			Target: bc.Target, BuildKit: opts.Version == build.BuilderBuildKit,
		})
	}
	return nil
}

// eachMessage decodes a JSON message stream (build or pull output).
func eachMessage(r io.Reader, f func(jsonstream.Message)) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		f(m)
	}
}

// dockerfileFor says which name to pass as the Dockerfile, and the files
// to add to the context for it when it is not a file inside the context.
func dockerfileFor(dir, dockerfile, inline string) (string, map[string][]byte, error) {
	if inline != "" {
		return inlineDockerfile, map[string][]byte{inlineDockerfile: []byte(inline)}, nil
	}
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		return filepath.ToSlash(dockerfile), nil, nil
	}
	rel, err := filepath.Rel(dir, dockerfile)
	if err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.ToSlash(rel), nil, nil
	}
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		return "", nil, fmt.Errorf("reading dockerfile: %w", err)
	}
	return inlineDockerfile, map[string][]byte{inlineDockerfile: data}, nil
}

// writeContext writes dir as a tar to w, leaving out what .dockerignore
// excludes (with the same pattern semantics as the docker CLI), but always
// keeping the Dockerfile and .dockerignore, which the builder needs.
//
// idx, when not nil, gets every entry sent (see contextIndex).
func writeContext(w io.Writer, dir, dockerfile string, extra map[string][]byte, idx *contextIndex) error {
	var patterns []string
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("reading %s: %w", filepath.Join(dir, ".dockerignore"), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading .dockerignore: %w", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", filepath.Join(dir, ".dockerignore"), err)
	}
	tw := tar.NewWriter(w)
	parents := map[string]patternmatcher.MatchInfo{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		keep := rel == dockerfile || rel == ".dockerignore"
		excluded, info, err := pm.MatchesUsingParentResults(rel, parents[filepath.ToSlash(filepath.Dir(rel))])
		if err != nil {
			return fmt.Errorf("matching %s against .dockerignore: %w", rel, err)
		}
		if d.IsDir() {
			parents[rel] = info
		}
		if excluded && !keep {
			// A later !pattern may re-include something below an excluded
			// directory, so only skip the walk when there is none.
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		return addFile(tw, path, rel, d, idx)
	})
	if err != nil {
		return fmt.Errorf("archiving build context %s: %w", dir, err)
	}
	for name, data := range extra {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, dup := idx.entry(name)
		if err := writeContent(tw, bytes.NewReader(data), idx.add(hdr)); err != nil {
			return err
		}
		if dup {
			idx.sentTwice(name)
		}
	}
	idx.finish()
	return tw.Close()
}

// writeContent copies an entry's content into the tar, and into the
// index's hash when there is one.
func writeContent(tw *tar.Writer, r io.Reader, h io.Writer) error {
	if h == nil {
		_, err := io.Copy(tw, r)
		return err
	}
	if _, err := io.Copy(io.MultiWriter(tw, h), r); err != nil {
		return err
	}
	h.(*entryHash).done()
	return nil
}

func addFile(tw *tar.Writer, path, rel string, d fs.DirEntry, idx *contextIndex) error {
	fi, err := d.Info()
	if err != nil {
		return err
	}
	var link string
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	case !fi.Mode().IsRegular() && !fi.IsDir():
		return nil // sockets, devices and pipes have no place in an image
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = rel
	if fi.IsDir() {
		hdr.Name += "/"
	}
	// Host ownership means nothing in the image; the builder uses root.
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	h := idx.add(hdr)
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeContent(tw, f, h)
}

// ensureImage returns the ID of the service's image, pulling it only when
// the engine does not have it.
func (b *Backend) ensureImage(ctx context.Context, spec runner.Spec) (string, error) {
	p, svc := spec.Project, spec.Service
	ref := imageName(p, svc)
	img, err := b.cli.ImageInspect(ctx, ref)
	if err == nil {
		return img.ID, nil
	}
	if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspecting image %s for service %q: %w", ref, svc.Name, err)
	}
	if svc.Compose.Build != nil {
		return "", fmt.Errorf("image %s for service %q was not built: %w", ref, svc.Name, ErrImageUnavailable)
	}
	if builder := builderOf(p, ref); builder != nil {
		// Another service builds this image: build it, as compose does,
		// rather than pull a name that may exist nowhere.
		bs := spec
		bs.Service = builder
		if err := b.Build(ctx, bs); err != nil {
			return "", fmt.Errorf("building image %s (built by service %q) for service %q: %w", ref, builder.Name, svc.Name, err)
		}
		if img, err := b.cli.ImageInspect(ctx, ref); err == nil {
			return img.ID, nil
		}
	}
	if svc.Compose.PullPolicy == "never" {
		return "", fmt.Errorf("image %s for service %q is not available locally and pull_policy is never; build it or fix image: (%w)", ref, svc.Name, ErrImageUnavailable)
	}
	if err := b.pull(ctx, spec.Status, ref); err != nil {
		return "", fmt.Errorf("image %s for service %q is not available locally and could not be pulled: %w; build it or fix image: (%w)", ref, svc.Name, err, ErrImageUnavailable)
	}
	img, err = b.cli.ImageInspect(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("inspecting image %s for service %q after pulling it: %w", ref, svc.Name, err)
	}
	return img.ID, nil
}

// builderOf is the service of p (enabled or not) that builds image ref,
// or nil.
func builderOf(p *project.Project, ref string) *project.Service {
	for _, s := range p.Services {
		if s.Compose.Build != nil && imageName(p, s) == ref {
			return s
		}
	}
	if p.Compose == nil {
		return nil
	}
	for name, sc := range p.Compose.DisabledServices {
		if sc.Build != nil && sc.Image == ref {
			return &project.Service{Name: name, Compose: sc}
		}
	}
	return nil
}

// pull pulls ref, writing one line per layer and step to status (not one
// per progress tick).
func (b *Backend) pull(ctx context.Context, status io.Writer, ref string) error {
	fmt.Fprintf(status, "pulling image %s\n", ref)
	resp, err := b.cli.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer resp.Close()
	last := map[string]string{}
	for m, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return err
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
		if m.Status == "" || last[m.ID] == m.Status {
			continue
		}
		last[m.ID] = m.Status
		fmt.Fprintln(status, strings.TrimSpace(m.ID+" "+m.Status))
	}
	return nil
}
