package supervisor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/devstack/devstack/runner/proc"
)

// orphanGrace is how long orphans get between SIGTERM and SIGKILL.
const orphanGrace = 5 * time.Second

// CleanOrphans stops what an earlier supervisor of the project left
// running after it was killed. The caller must hold the project's lock, so
// no live supervisor owns those processes.
//
// A process is ours only if it carries the project's DEVSTACK_INSTANCE
// marker in its environment, or is a recorded pid whose start time still
// matches: a pid that the system reused for an unrelated process matches
// neither, and is never touched.
func CleanOrphans(ctx context.Context, paths Paths, project string) (int, error) {
	pids := map[int]bool{}
	rec, err := readRecord(paths.State())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A corrupt record is no reason to refuse to start; markers below
		// still find everything.
		rec = nil
	}
	if rec != nil {
		for _, p := range rec.Instances {
			if (proc.Identity{PID: p.PID, StartTime: p.StartTime}).Alive() {
				pids[p.PID] = true
			}
		}
	}
	// Their cgroups find even those that cleared their environment (and
	// so their marker).
	scope := markerScope(project, paths.Dir)
	for _, pid := range proc.CgroupProcs(scope + "/") {
		pids[pid] = true
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orphanGrace)
		defer cancel()
		_ = proc.RemoveCgroups(rctx, scope+"/")
	}()
	found, err := proc.FindByMarkerPrefix(scope + "/")
	if err != nil {
		return 0, fmt.Errorf("looking for leftover processes: %w", err)
	}
	for _, ps := range found {
		for _, pid := range ps {
			pids[pid] = true
		}
	}
	if len(pids) == 0 {
		os.Remove(paths.State())
		return 0, nil
	}
	list := make([]int, 0, len(pids))
	for pid := range pids {
		list = append(list, pid)
	}
	if err := proc.KillTree(ctx, list, syscall.SIGTERM, orphanGrace); err != nil {
		return 0, fmt.Errorf("stopping leftover processes %v: %w", list, err)
	}
	os.Remove(paths.State())
	return len(list), nil
}

// markerScope starts the markers of a project's processes: its name and
// its state directory, so that two stacks of the same name (a test run
// with its own DEVSTACK_STATE_DIR beside your own stack) never clean up
// each other's processes.
func markerScope(project, stateDir string) string {
	h := fnv.New32a()
	h.Write([]byte(stateDir))
	return fmt.Sprintf("%s@%08x", project, h.Sum32())
}

// CleanOffline is `down` without a running supervisor: it takes the lock
// and stops whatever a killed supervisor left behind.
func CleanOffline(ctx context.Context, project string) (int, error) {
	if err := checkName(project); err != nil {
		return 0, err
	}
	paths := Paths{StateDir(project)}
	if _, err := os.Stat(paths.Dir); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	lock, err := tryLock(paths.Lock())
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	n, err := CleanOrphans(ctx, paths, project)
	os.Remove(paths.Socket())
	os.Remove(paths.Token())
	return n, err
}
