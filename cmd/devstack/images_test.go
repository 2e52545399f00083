package main

import (
	"context"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner/docker"
)

// testImages remembers which images and build cache records the engine
// had before the tests ran, so that the run can remove the ones it built
// (the shop's image, the ambassador's, the untagged images each rebuild
// leaves, and what BuildKit cached of those builds) and leave the machine
// as it found it.
type testImages struct {
	d      *docker.Backend
	before map[string]bool
	cached map[string]bool // build cache records, by ID
}

// snapshotImages lists the engine's images; nil when no engine answers.
func snapshotImages() *testImages {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := docker.New(ctx)
	if err != nil {
		return nil
	}
	imgs, err := d.Client().ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		d.Close()
		return nil
	}
	ti := &testImages{d: d, before: map[string]bool{}}
	for _, im := range imgs.Items {
		ti.before[im.ID] = true
	}
	if du, err := d.Client().DiskUsage(ctx, client.DiskUsageOptions{BuildCache: true, Verbose: true}); err == nil {
		ti.cached = map[string]bool{}
		for _, r := range du.BuildCache.Items {
			ti.cached[r.ID] = true
		}
	}
	return ti
}

// removeNew removes the devstack images (and untagged ones) that appeared
// during the run. An image a container still uses is left alone.
func (ti *testImages) removeNew() {
	if ti == nil {
		return
	}
	defer ti.d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	imgs, err := ti.d.Client().ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		return
	}
	for _, im := range imgs.Items {
		if ti.before[im.ID] || !ours(im.RepoTags) {
			continue
		}
		_, _ = ti.d.Client().ImageRemove(ctx, im.ID, client.ImageRemoveOptions{PruneChildren: true})
	}
	if ti.cached == nil {
		return
	}
	du, err := ti.d.Client().DiskUsage(ctx, client.DiskUsageOptions{BuildCache: true, Verbose: true})
	if err != nil {
		return
	}
	// One record at a time: the engine matches a record against every id
	// filter given at once. A record a build still uses stays.
	for _, r := range du.BuildCache.Items {
		if !ti.cached[r.ID] {
			_, _ = ti.d.Client().BuildCachePrune(ctx, client.BuildCachePruneOptions{Filters: make(client.Filters).Add("id", r.ID)})
		}
	}
}

// ours: untagged, or a tag that devstack or these tests make. The
// runner/docker tests' images (devstack-test*) are theirs to remove: go
// test runs packages side by side, and removing one while that package
// still runs fails its tests.
func ours(tags []string) bool {
	if len(tags) == 0 {
		return true
	}
	for _, t := range tags {
		if strings.HasPrefix(t, "devstack-test") {
			return false
		}
	}
	for _, t := range tags {
		if t == "<none>:<none>" || strings.HasPrefix(t, "devstack-") || strings.HasPrefix(t, "e2e-") {
			return true
		}
	}
	return false
}
