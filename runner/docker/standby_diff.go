package docker

import (
	"context"
	"io/fs"
)

// imageChange is one file that a reload puts in a standby: Dst in the
// container, From on this host (the build context's file).
type imageChange struct {
	Dst, From string
	Mode      fs.FileMode
	Size      int64
	Sum       [32]byte
}

// imageChanges are the files that differ between images oldID and newID,
// or why they cannot be known exactly.
func (b *Backend) imageChanges(ctx context.Context, oldID, newID string) ([]imageChange, string) {
	return nil, "the image changed, and this devstack cannot tell which files changed"
}
