package proc

import "errors"

var (
	// ErrNoProcess reports that no process with the given pid exists.
	ErrNoProcess = errors.New("no such process")
	// ErrEmptyMarker reports an empty marker or marker prefix. An empty prefix
	// would match every devstack-managed process of every project.
	ErrEmptyMarker = errors.New("empty instance marker")
	// ErrPortInUse reports that a port is already bound by another socket.
	ErrPortInUse = errors.New("port already in use")
	// ErrSurvivors reports processes that outlived SIGKILL (for example
	// stuck in uninterruptible sleep) or that devstack may not signal.
	ErrSurvivors = errors.New("processes survived SIGKILL")
)
