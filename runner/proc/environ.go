//go:build linux

package proc

import (
	"bytes"
	"os"
)

// HealthcheckEnv is set on the healthcheck probes devstack runs itself
// (process services), to the name of the service they check; their
// children inherit it. The proxy's caller lookup reads it to tell
// devstack's own probe traffic from the stack's.
const HealthcheckEnv = "DEVSTACK_HEALTHCHECK"

// Getenv returns the value of key in the environment process pid was
// started with (the first, as getenv would), and whether it is there. A
// process that vanished, or that procfs does not let us read, has none.
func Getenv(pid int, key string) (string, bool) {
	b, err := os.ReadFile(procPath(pid, "environ"))
	if err != nil {
		return "", false
	}
	prefix := []byte(key + "=")
	for len(b) > 0 {
		var entry []byte
		entry, b, _ = bytes.Cut(b, []byte{0})
		if v, ok := bytes.CutPrefix(entry, prefix); ok {
			return string(v), true
		}
	}
	return "", false
}
