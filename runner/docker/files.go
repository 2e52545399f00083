package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner/project"
)

// filesHash stands for the secrets' and configs' contents in the config
// hash, so that a changed secret recreates the container (nil when there
// are none, which keeps the hash of other containers as it was).
func filesHash(files []project.File) map[string]string {
	if len(files) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, f := range files {
		sum := sha256.Sum256(append([]byte(fmt.Sprintf("%o:", f.Mode)), f.Content...))
		out[f.Target] = hex.EncodeToString(sum[:12])
	}
	return out
}

// copyFiles puts the service's secrets and configs into a created
// container, as docker compose does for a non-swarm project: at
// /run/secrets/<name> and the config's target, before it starts. Copying
// (not a bind mount) works for environment: and content: sources too, and
// leaves no secret in a file on the host.
func (b *Backend) copyFiles(ctx context.Context, id string, files []project.File) error {
	if len(files) == 0 {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	now := time.Now()
	for _, f := range files {
		rel := strings.TrimPrefix(f.Target, "/")
		// Parent directories first: a FROM scratch image has no /run.
		var parents []string
		for d := path.Dir(rel); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: now}); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: int64(f.Mode), Size: int64(len(f.Content)), ModTime: now}); err != nil {
			return err
		}
		if _, err := tw.Write(f.Content); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if _, err := b.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		return fmt.Errorf("copying secrets and configs into the container: %w", err)
	}
	return nil
}
