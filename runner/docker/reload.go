package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
)

var (
	_ runner.Rebuilder = (*Backend)(nil)
	_ runner.Syncer    = (*Backend)(nil)
)

// Rebuild implements runner.Rebuilder: the service's x-devstack.build,
// if any, runs on the host first (see hostBuild), then the image is built
// again from its context, even when this backend built it before (Build
// builds once per backend's life, for the services that share it).
func (b *Backend) Rebuild(ctx context.Context, spec runner.Spec) error {
	if err := hostBuild(ctx, spec); err != nil {
		return err
	}
	if spec.Service.Compose.Build == nil {
		return b.Build(ctx, spec)
	}
	tag := imageName(spec.Project, spec.Service)
	key := tag + "\x00" + hashLabels(map[string]string{}, spec.Service.Compose.Build)[LabelConfigHash]
	b.mu.Lock()
	if bo, ok := b.builds[key]; ok {
		select {
		case <-bo.done:
			delete(b.builds, key) // done: build afresh
		default: // under way: wait for it below, as a start would
		}
	}
	b.mu.Unlock()
	before := b.imageID(ctx, tag)
	if err := b.build(ctx, spec); err != nil {
		return err
	}
	if after := b.imageID(ctx, tag); before != "" && after != before {
		b.mu.Lock()
		if b.replaced == nil {
			b.replaced = map[string]bool{}
		}
		b.replaced[before] = true
		b.mu.Unlock()
	}
	b.quitting.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		b.dropReplaced(ctx)
	})
	return nil
}

// imageID is the ID of the image ref names, "" when there is none.
func (b *Backend) imageID(ctx context.Context, ref string) string {
	img, err := b.cli.ImageInspect(ctx, ref)
	if err != nil {
		return ""
	}
	return img.ID
}

// dropReplaced removes the images that a rebuild took the tag from, once
// no container uses them: every hot reload of a container service builds
// an image, and the one it replaced, untagged, would stay behind (10 MB
// a reload for the shop, the size of what changed for any image). Off the
// reload's path: at the next rebuild (the replaced container is gone by
// then) and at down. An image still in use, tagged again meanwhile, or
// the parent of another stays, as `docker rmi` would leave it.
func (b *Backend) dropReplaced(ctx context.Context) {
	b.mu.Lock()
	ids := slices.Collect(maps.Keys(b.replaced))
	b.mu.Unlock()
	for _, id := range ids {
		_, err := b.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true})
		if err == nil || cerrdefs.IsNotFound(err) {
			b.mu.Lock()
			delete(b.replaced, id)
			b.mu.Unlock()
		}
	}
}

// Sync implements runner.Syncer: the files are copied into each of the
// instance's containers through the Engine API (PUT /archive, a tar of
// them at their absolute paths), so an image without a shell or tar (FROM
// scratch) takes them too. Removals run rm in the container, which such an
// image cannot; the error says so.
func (b *Backend) Sync(ctx context.Context, inst runner.Instance, files []runner.FileCopy) error {
	di, ok := inst.(*Instance)
	if !ok {
		return fmt.Errorf("sync: %s is not a container instance", inst.ID())
	}
	archive, n, removed, err := syncArchive(files)
	if err != nil {
		return err
	}
	for _, id := range di.containerIDs() {
		name := shortID(id)
		if n > 0 {
			if _, err := b.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: bytes.NewReader(archive), AllowOverwriteDirWithFile: false}); err != nil {
				return fmt.Errorf("sync: copying %d file(s) into container %s: %w", n, name, err)
			}
		}
		if len(removed) > 0 {
			code, err := b.Exec(ctx, id, ExecOptions{Cmd: append([]string{"rm", "-rf", "--"}, removed...), Stdout: io.Discard, Stderr: io.Discard})
			if err != nil || code != 0 {
				return fmt.Errorf("sync: removing %s in container %s needs rm in its image (exit %d, %v); use sync+restart or rebuild for removals", strings.Join(removed, ", "), name, code, err)
			}
		}
	}
	return nil
}

// syncArchive is the tar that copies files in at their absolute paths
// (parents first, so the engine makes missing directories), with how
// many it holds, and the destinations of the removed ones.
func syncArchive(files []runner.FileCopy) ([]byte, int, []string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var removed []string
	n := 0
	for _, f := range files {
		dst := path.Clean("/" + strings.TrimPrefix(f.Dst, "/"))
		if f.Removed {
			removed = append(removed, dst)
			continue
		}
		data, err := os.ReadFile(f.Src)
		if errors.Is(err, os.ErrNotExist) {
			continue // gone again since the change
		}
		if err != nil {
			return nil, 0, nil, fmt.Errorf("sync: %w", err)
		}
		fi, err := os.Stat(f.Src)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("sync: %w", err)
		}
		// Parents first, so the engine makes missing directories.
		var parents []string
		for d := path.Dir(dst); d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(parents[i], "/") + "/", Mode: 0o755}); err != nil {
				return nil, 0, nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: int64(fi.Mode().Perm()), Size: int64(len(data)), ModTime: fi.ModTime()}); err != nil {
			return nil, 0, nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, 0, nil, err
		}
		n++
	}
	if err := tw.Close(); err != nil {
		return nil, 0, nil, err
	}
	return buf.Bytes(), n, removed, nil
}

// copySynced copies what hot reload synced into the service's earlier
// instances (runner.Spec.Synced) into container id before it starts.
// Removals need nothing: the container is new from its image.
func (b *Backend) copySynced(ctx context.Context, id string, files []runner.FileCopy) error {
	if len(files) == 0 {
		return nil
	}
	archive, n, _, err := syncArchive(files)
	if err != nil || n == 0 {
		return err
	}
	if _, err := b.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: bytes.NewReader(archive)}); err != nil {
		return fmt.Errorf("copying the %d file(s) synced into the service's earlier containers into container %s: %w", n, shortID(id), err)
	}
	return nil
}
