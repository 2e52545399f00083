package process

import (
	"fmt"
	"maps"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"
	"golang.org/x/sys/unix"
)

// rlimits maps Compose's ulimits names to the kernel's resources.
var rlimits = map[string]int{
	"core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "data": unix.RLIMIT_DATA,
	"fsize": unix.RLIMIT_FSIZE, "locks": unix.RLIMIT_LOCKS, "memlock": unix.RLIMIT_MEMLOCK,
	"msgqueue": unix.RLIMIT_MSGQUEUE, "nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE,
	"nproc": unix.RLIMIT_NPROC, "rss": unix.RLIMIT_RSS, "rtprio": unix.RLIMIT_RTPRIO,
	"rttime": unix.RLIMIT_RTTIME, "sigpending": unix.RLIMIT_SIGPENDING, "stack": unix.RLIMIT_STACK,
	"as": unix.RLIMIT_AS,
}

// applyUlimits sets the service's ulimits on the started process (and so
// on what it starts from then on), as a container gets them.
func applyUlimits(pid int, ulimits map[string]*types.UlimitsConfig) error {
	for _, name := range slices.Sorted(maps.Keys(ulimits)) {
		res, ok := rlimits[name]
		if !ok {
			return fmt.Errorf("ulimit %q is not one the kernel knows (%v)", name, slices.Sorted(maps.Keys(rlimits)))
		}
		u := ulimits[name]
		soft, hard := uint64(u.Soft), uint64(u.Hard)
		if u.Single != 0 {
			soft, hard = uint64(u.Single), uint64(u.Single)
		}
		lim := unix.Rlimit{Cur: soft, Max: hard}
		if err := unix.Prlimit(pid, res, &lim, nil); err != nil {
			return fmt.Errorf("setting ulimit %s to %d:%d: %w (a process may lower its limits, not raise the hard one)", name, soft, hard, err)
		}
	}
	return nil
}
