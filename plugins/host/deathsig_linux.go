package host

import (
	"os/exec"
	"syscall"
)

// dieWithHost makes the kernel kill the plugin when the host process dies,
// however it dies: a SIGKILLed supervisor never gets to stop its plugins,
// and go-plugin's own cleanup runs only in a living host. (The signal goes
// when the thread that started the plugin exits; Go keeps its threads for
// the life of the process unless a locked goroutine ends, which the host
// never starts plugins from.)
func dieWithHost(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
