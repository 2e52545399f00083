//go:build linux

package proc

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// MarkerEnv is the environment variable the supervisor sets on every service
// process; children inherit it. Its value is the instance marker, by
// convention "<project>/<service>/<nonce>".
const MarkerEnv = "DEVSTACK_INSTANCE"

// FindByMarker returns the pids, ascending, of all processes whose
// environment contains exactly MarkerEnv=marker. The calling process is never
// included, and processes that vanish, that procfs does not let us read
// (other users), or that run in another pid namespace (containers) are
// skipped.
//
// procfs shows the environment a process was started with; a process that
// clears or overwrites its environment block (setproctitle) is not found.
func FindByMarker(marker string) ([]int, error) {
	if marker == "" {
		return nil, fmt.Errorf("finding processes by marker: %w", ErrEmptyMarker)
	}
	found, err := scanMarkers(func(v string) bool { return v == marker })
	if err != nil {
		return nil, fmt.Errorf("finding processes by marker %q: %w", marker, err)
	}
	return found[marker], nil
}

// FindByMarkerPrefix is FindByMarker for every marker that starts with
// prefix, in one scan of /proc. It maps each marker found to its pids.
// Include the separator in prefix ("shop/", not "shop") so that project
// "shop" does not match project "shopping".
func FindByMarkerPrefix(prefix string) (map[string][]int, error) {
	if prefix == "" {
		return nil, fmt.Errorf("finding processes by marker prefix: %w", ErrEmptyMarker)
	}
	found, err := scanMarkers(func(v string) bool { return strings.HasPrefix(v, prefix) })
	if err != nil {
		return nil, fmt.Errorf("finding processes by marker prefix %q: %w", prefix, err)
	}
	return found, nil
}

func scanMarkers(match func(marker string) bool) (map[string][]int, error) {
	pids, err := listPIDs()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	// Processes in another pid namespace are a container's: the engine
	// runs them and devstack deals with them through the engine (a
	// container keeps its marker in its environment, and may outlive a
	// supervisor that a new one takes over from).
	ns, _ := os.Readlink("/proc/self/ns/pid")
	found := make(map[string][]int)
	for _, pid := range pids {
		if pid == self {
			continue
		}
		if ns != "" {
			if theirs, err := os.Readlink(procPath(pid, "ns/pid")); err != nil || theirs != ns {
				continue
			}
		}
		env, err := os.ReadFile(procPath(pid, "environ"))
		if err != nil {
			continue // exited, or not ours to read
		}
		if m, ok := markerValue(env); ok && match(m) {
			found[m] = append(found[m], pid)
		}
	}
	return found, nil
}

// markerValue returns the value of the first MarkerEnv entry in a
// NUL-separated environment block, the one getenv would return.
func markerValue(environ []byte) (string, bool) {
	const key = MarkerEnv + "="
	for len(environ) > 0 {
		var entry []byte
		entry, environ, _ = bytes.Cut(environ, []byte{0})
		if v, ok := bytes.CutPrefix(entry, []byte(key)); ok {
			return string(v), true
		}
	}
	return "", false
}
