package docker

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/devstack/devstack/runner/project"
)

// imageChange is one file that a reload puts in a standby: Dst in the
// container, From on this host (the build context's file).
type imageChange struct {
	Dst, From string
	Mode      fs.FileMode
	Size      int64
	Sum       [32]byte
}

// imageChanges are the regular files that differ between images oldID
// and newID (imageDiff), or why they cannot be put in a standby.
// Directories need nothing: the holder makes a file's parents.
func (b *Backend) imageChanges(ctx context.Context, oldID, newID string) ([]imageChange, string) {
	changes, why, err := b.imageDiff(ctx, oldID, newID)
	if err != nil {
		return nil, "telling what changed in the image: " + err.Error()
	}
	if why != "" {
		return nil, why
	}
	rec := b.buildRecord(newID)
	var out []imageChange
	for _, c := range changes {
		switch {
		case c.Link != "":
			return nil, "symlink " + c.Dst + " changed"
		case c.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0:
			return nil, c.Dst + " has a setuid, setgid or sticky bit"
		case c.Dir && c.Mode.Perm() != 0o755:
			// The holder makes a placed file's parents 0755.
			return nil, fmt.Sprintf("directory %s has mode %#o", c.Dst, c.Mode.Perm())
		case c.Dir:
			continue
		}
		out = append(out, imageChange{Dst: c.Dst, From: filepath.Join(rec.Dir, filepath.FromSlash(c.Rel)), Mode: c.Mode.Perm(), Size: c.Size, Sum: c.Sum})
	}
	return out, ""
}

// underMount names the service's mount that dst is in, "" when none: a
// file placed there would go to the volume, not the image's layer.
func underMount(svc *project.Service, dst string) string {
	var targets []string
	for _, v := range svc.Compose.Volumes {
		targets = append(targets, v.Target)
	}
	for _, t := range svc.Compose.Tmpfs {
		target, _, _ := strings.Cut(t, ":")
		targets = append(targets, target)
	}
	for _, t := range targets {
		t = path.Clean("/" + t)
		if dst == t || strings.HasPrefix(dst, strings.TrimSuffix(t, "/")+"/") {
			return t
		}
	}
	return ""
}
