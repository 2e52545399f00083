package holder

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by calls on a Client that was closed, or whose
// connection broke in an earlier call (a late answer could otherwise be
// read as the next call's).
var ErrClosed = errors.New("holder connection closed")

// Error is a request the holder received and refused: a start whose
// placement failed or that came second, a probe that could not run. A
// transport failure is never an *Error.
type Error struct {
	Op  string // "start" or "probe"
	Msg string // the holder's message, naming the path at fault
}

func (e *Error) Error() string { return fmt.Sprintf("holder %s: %s", e.Op, e.Msg) }
