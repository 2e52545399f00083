//go:build linux

package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

func procPath(pid int, name string) string {
	return procRoot + "/" + strconv.Itoa(pid) + "/" + name
}

// Identity names one process across pid reuse: the pid together with its
// start time in clock ticks since boot.
type Identity struct {
	PID       int
	StartTime uint64
}

// Self returns the identity of the calling process. If procfs cannot be read,
// StartTime is 0, which no live process matches, so Alive reports false.
func Self() Identity {
	pid := os.Getpid()
	id, err := Lookup(pid)
	if err != nil {
		return Identity{PID: pid}
	}
	return id
}

// Lookup returns the identity of the process that has pid now. It fails with
// an error wrapping ErrNoProcess when there is none.
func Lookup(pid int) (Identity, error) {
	start, err := StartTime(pid)
	if err != nil {
		return Identity{}, err
	}
	return Identity{PID: pid, StartTime: start}, nil
}

// Alive reports whether the process named by id still runs: a process with
// id.PID exists, started at id.StartTime and is not a zombie.
func (id Identity) Alive() bool {
	if id.PID <= 0 {
		return false
	}
	st, err := readStat(id.PID)
	return err == nil && st.startTime == id.StartTime && !st.dead()
}

// String formats id as "pid 123 (start 456)".
func (id Identity) String() string {
	return fmt.Sprintf("pid %d (start %d)", id.PID, id.StartTime)
}

// StartTime returns the start time of pid in clock ticks since boot, field 22
// of /proc/<pid>/stat. It fails with an error wrapping ErrNoProcess when
// there is no such process.
func StartTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return st.startTime, nil
}

// stat holds the fields of /proc/<pid>/stat that this package uses.
type stat struct {
	state     byte // field 3
	ppid      int  // field 4
	pgrp      int  // field 5
	startTime uint64
}

// dead reports a zombie (Z) or a dying (X, x) process.
func (s stat) dead() bool {
	return s.state == 'Z' || s.state == 'X' || s.state == 'x'
}

func readStat(pid int) (stat, error) {
	if pid <= 0 {
		return stat{}, fmt.Errorf("reading stat of pid %d: %w", pid, ErrNoProcess)
	}
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		// ESRCH: the process exited between open and read.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return stat{}, fmt.Errorf("reading stat of pid %d: %w", pid, ErrNoProcess)
		}
		return stat{}, fmt.Errorf("reading stat of pid %d: %w", pid, err)
	}
	st, err := parseStat(b)
	if err != nil {
		return stat{}, fmt.Errorf("parsing stat of pid %d: %w", pid, err)
	}
	return st, nil
}

// parseStat parses the content of /proc/<pid>/stat. Field 2 (comm) is wrapped
// in parentheses and may itself contain spaces and parentheses, so the fixed
// fields start after the last ')'.
func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("no ')' after comm")
	}
	// f[0] is field 3, so field n is f[n-3].
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return stat{}, fmt.Errorf("%d fields after comm, want at least 20", len(f))
	}
	if len(f[0]) != 1 {
		return stat{}, fmt.Errorf("state %q is not one letter", f[0])
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return stat{}, fmt.Errorf("ppid: %w", err)
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return stat{}, fmt.Errorf("pgrp: %w", err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("starttime: %w", err)
	}
	return stat{state: f[0][0], ppid: ppid, pgrp: pgrp, startTime: start}, nil
}

// listPIDs returns the pids of all processes (thread group leaders) visible
// in procfs, ascending.
func listPIDs() ([]int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n == "" || n[0] < '0' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// DescendsFrom reports whether pid is ancestor or one of its descendants,
// following parent pids up from pid.
func DescendsFrom(pid, ancestor int) bool {
	for range 64 { // deeper than any tree a supervisor makes
		if pid == ancestor {
			return true
		}
		if pid <= 1 {
			return false
		}
		st, err := readStat(pid)
		if err != nil {
			return false
		}
		pid = st.ppid
	}
	return false
}
