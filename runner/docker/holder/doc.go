// Package holder is the PID 1 of a container service's standby container
// and the client devstack uses to drive it.
//
// A standby is started ahead of a hot reload from the service's current
// image, with `devstack holder --socket PATH -- CMD...` as its command:
// the devstack binary and a directory devstack controls are bind-mounted
// into it. The holder listens on a unix socket in that directory and waits.
// On a reload, devstack prepares the changed files in the shared directory
// and asks the holder to start: the holder places them (symlinks into the
// shared directory, or copies), then starts the service's real command as
// its child. Healthchecks run through the holder too, which forks them far
// faster than a `docker exec`.
//
//	devstack (host)                         standby container
//	  Client ──start {place, remove}──▶ holder (PID 1) ──place──▶ /bin/shop → /.devstack/s/f/1
//	     │                                 │  └─fork/exec──▶ CMD... (the service)
//	     └───probe {argv, timeout}─────▶   └─fork/exec──▶ healthcheck, output capped at 4 KiB
//	                                    signals ──forwarded──▶ CMD; CMD's exit is the holder's
//
// The protocol is newline-delimited JSON over the unix socket: one request,
// one response, on any number of connections. Serve is Linux-only (the
// holder runs in Linux containers); the client builds anywhere.
package holder
