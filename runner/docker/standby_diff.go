package docker

import (
	"context"
	"io/fs"
	"path/filepath"
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
		case c.Dir:
			continue
		case c.Link != "":
			return nil, "symlink " + c.Dst + " changed"
		}
		out = append(out, imageChange{Dst: c.Dst, From: filepath.Join(rec.Dir, filepath.FromSlash(c.Rel)), Mode: c.Mode.Perm(), Size: c.Size, Sum: c.Sum})
	}
	return out, ""
}
