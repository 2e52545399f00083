package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// pluginChildren lists the plugin processes whose parent is pid.
func pluginChildren(t *testing.T, pid int) []int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(rest) < 2 || rest[1] != strconv.Itoa(pid) {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
		if strings.Contains(string(cmdline), "plugin\x00") {
			kids = append(kids, child)
		}
	}
	return kids
}

const pluginLeakStack = `
name: pluginleak
services:
  idle:
    x-devstack: {run: "while :; do sleep 1; done"}
`

// The supervisor's plugins never outlive it: not after down, and not
// when the supervisor is SIGKILLed and gets no chance to stop them (they
// piled up by the dozen on a machine that ran the tests a few times).
func TestPluginsDieWithTheSupervisor(t *testing.T) {
	for _, killed := range []bool{false, true} {
		t.Run(fmt.Sprintf("supervisor killed=%v", killed), func(t *testing.T) {
			c := newCLI(t, writeProject(t, pluginLeakStack))
			c.must("up", "-d")
			sup := supervisorPID(t, c)
			plugins := pluginChildren(t, sup)
			if len(plugins) == 0 {
				t.Fatalf("the supervisor (pid %d) runs no plugin process: nothing to check", sup)
			}
			if killed {
				if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			} else {
				c.must("down")
			}
			for _, p := range plugins {
				waitGone(t, p)
			}
		})
	}
}
