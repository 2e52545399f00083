package main

import (
	"context"
	"runtime"

	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/runner/proc"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/supervisor"
)

// startStack builds a running stack for p in this process, the one place
// the CLI does: it picks each service's backend (newBackends; backend is
// up's --backend), starts the supervisor with them (its runner, proxy,
// span store and control API), and gives the runtime a P to spare, as this
// process now serves the proxy. `up` in the foreground and the background
// supervisor (`supervise`, which up -d starts) differ only in opts: where
// events and logs go. The caller closes the backends after the
// supervisor's Shutdown. warn, when not nil, is called with the chosen
// backends before the supervisor starts.
func startStack(ctx context.Context, p *project.Project, backend string, opts supervisor.Options, warn func(*backends)) (*supervisor.Supervisor, *backends, error) {
	be, err := newBackends(ctx, p, backend)
	if err != nil {
		return nil, nil, err
	}
	if warn != nil {
		warn(be)
	}
	if err := p.PickPorts(func(host string, port uint16) bool {
		return proc.PortFree(host, int(port)) == nil
	}); err != nil {
		be.Close()
		return nil, nil, err
	}
	opts.Project, opts.LockUntilExit = p, true
	if err := be.supervisorOptions(ctx, p, &opts); err != nil {
		be.Close()
		return nil, nil, err
	}
	runtime.GOMAXPROCS(proxy.SpareP()) // once per process: up and supervise each call this once
	sup, err := supervisor.Start(ctx, opts)
	if err != nil {
		be.Close()
		return nil, nil, err
	}
	return sup, be, nil
}
