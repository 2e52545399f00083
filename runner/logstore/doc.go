// Package logstore keeps each service's output in a size-bounded log file
// that any process can read, and fans the same lines out to live
// subscribers.
//
//	service stdout ──Writer(svc, Stdout)──┐
//	service stderr ──Writer(svc, Stderr)──┼─► split lines ─┬─► <dir>/<svc>.log ──rotate──► <svc>.log.1 … .log.<Keep>
//	devstack status ─Writer(svc, System)──┘  (per service  │           ▲
//	                                         lock, 64 KiB  │           └── Read(dir, Query): devstack logs, even
//	                                         cap per line) │               after the supervisor has exited
//	                                                       └─► Subscribe: bounded channel per subscriber,
//	                                                           drops (and says so) rather than block
//
// One line on disk is
//
//	<timestamp> <stream> <text>\n
//
// where timestamp is RFC 3339 in UTC with exactly nine fractional digits
// (so it parses as time.RFC3339Nano and sorts as text), stream is out, err
// or sys, and text is one line of output without its newline (and without a
// trailing carriage return).
//
// A service's files hold one ordered sequence: <svc>.log.<Keep> is the
// oldest, <svc>.log the newest. Lines are appended with one write per batch
// and a file is only ever replaced by renaming, so a reader that opens the
// files while no rotation happens (Read checks, and retries) sees every line
// exactly once.
//
// A Store assumes it is the only writer of its directory.
package logstore
