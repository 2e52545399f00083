//go:build !linux

package host

import "os/exec"

// dieWithHost: only Linux has a parent-death signal.
func dieWithHost(*exec.Cmd) {}
