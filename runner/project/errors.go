package project

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinels for the classes of load failure. Every user-facing failure is an
// *Error that unwraps to one of these, so callers (the CLI's exit codes,
// tests) can tell them apart with errors.Is without parsing messages.
var (
	// ErrNoFile: no -f was given and no default file exists in the directory.
	ErrNoFile = errors.New("no project file")
	// ErrSyntax: a file is not valid YAML.
	ErrSyntax = errors.New("invalid yaml")
	// ErrUnknownKey: a key is not part of the Compose schema or of x-devstack.
	ErrUnknownKey = errors.New("unknown key")
	// ErrInvalid: a value has the wrong type or an unsupported value.
	ErrInvalid = errors.New("invalid value")
	// ErrCycle: depends_on forms a cycle.
	ErrCycle = errors.New("dependency cycle")
	// ErrUnknownService: depends_on or LoadOptions.Services names a service
	// that does not exist (or is not enabled).
	ErrUnknownService = errors.New("unknown service")
	// ErrMissingVariable: a required variable (${VAR:?} / ${VAR?}) is unset.
	ErrMissingVariable = errors.New("missing variable")
	// ErrBadPort: a port mapping does not parse or is out of range.
	ErrBadPort = errors.New("invalid port")
	// ErrNotRunnable: a service has neither x-devstack.run nor image/build.
	ErrNotRunnable = errors.New("service has no way to run")
)

// Error is a user-facing load error: one sentence that says where (file and
// line), what (service and key), the observed fact and the fix. It renders as
//
//	devstack.yaml:14: service "gateway": x-devstack key "runn" is not allowed; did you mean "run"?
type Error struct {
	// File is the file the problem is in, relative to the working directory
	// when it lies below it, else absolute. Empty when no file applies.
	File string
	// Line is the 1-based line in File; 0 when unknown.
	Line int
	// Service is the service concerned, if any.
	Service string
	// Key is the dotted key path concerned (e.g. "x-devstack.run"), if any.
	// It is not rendered; Msg already names it in words.
	Key string
	// Msg is the rest of the sentence: the fact and the fix.
	Msg string
	// Err is the sentinel this error belongs to (see Unwrap).
	Err error
}

// Error renders the sentence. The `service "x": ` prefix is left out when Msg
// already starts by naming the service, so messages can read naturally
// ("service \"x\" has no way to run; ...").
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Service != "" && !strings.HasPrefix(e.Msg, fmt.Sprintf("service %q ", e.Service)) {
		fmt.Fprintf(&b, "service %q: ", e.Service)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the sentinel, so errors.Is(err, ErrCycle) works.
func (e *Error) Unwrap() error { return e.Err }
