package logstore

import "errors"

var (
	// ErrClosed reports a write to, or through, a closed Store.
	ErrClosed = errors.New("log store closed")
	// ErrInvalidService reports a service name that cannot name a log file.
	ErrInvalidService = errors.New("invalid service name")
	// ErrInvalidOptions reports Options or a Query out of range.
	ErrInvalidOptions = errors.New("invalid options")
)
