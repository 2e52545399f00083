package holder

import "io/fs"

// Place is one file a start puts into the container before the service
// runs.
type Place struct {
	// Dst is the absolute path in the container the file ends up at. An
	// existing file there is replaced atomically (rename); missing parent
	// directories are made with mode 0755.
	Dst string `json:"dst"`
	// Src is the absolute path, as the holder sees it, of the prepared
	// file, normally in the directory shared with the host.
	Src string `json:"src"`
	// Mode is the copy's mode (permission bits and fs.ModeSetuid,
	// ModeSetgid, ModeSticky); zero keeps Src's. Unused with Link.
	Mode fs.FileMode `json:"mode,omitempty"`
	// Link makes Dst a symlink to Src instead of a copy: no bytes move, but
	// Src must stay where it is for as long as the container runs.
	Link bool `json:"link,omitempty"`
}

// Operations of the protocol.
const (
	opStart = "start"
	opProbe = "probe"
)

// request is one line a client sends.
type request struct {
	Op string `json:"op"`
	// start
	Place  []Place  `json:"place,omitempty"`
	Remove []string `json:"remove,omitempty"`
	// probe
	Argv      []string `json:"argv,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"`
}

// response is one line the holder answers: Error alone when the request
// failed; else OK and PID for a start, Code and Output for a probe.
type response struct {
	Error string `json:"error,omitempty"`

	OK  bool `json:"ok,omitempty"`
	PID int  `json:"pid,omitempty"`

	Code     *int   `json:"code,omitempty"` // a pointer: 0 is an answer
	Output   string `json:"output,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
}
