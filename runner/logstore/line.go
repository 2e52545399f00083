package logstore

import (
	"bytes"
	"fmt"
	"time"
)

// Stream says where a line came from.
//
// The names are the on-disk format, so String is written out by hand rather
// than generated: renaming a constant must not change the files.
type Stream int

const (
	// Stdout is the service's standard output, "out" on disk.
	Stdout Stream = 1
	// Stderr is the service's standard error, "err" on disk.
	Stderr Stream = 2
	// System is devstack's own status about the service ("started pid
	// 123", "exited with code 1, restarting in 400ms"), "sys" on disk.
	System Stream = 3
)

// String returns the on-disk name: out, err or sys.
func (s Stream) String() string {
	switch s {
	case Stdout:
		return "out"
	case Stderr:
		return "err"
	case System:
		return "sys"
	}
	return fmt.Sprintf("Stream(%d)", int(s))
}

func (s Stream) valid() bool { return s >= Stdout && s <= System }

func parseStream(b []byte) (Stream, bool) {
	switch string(b) {
	case "out":
		return Stdout, true
	case "err":
		return Stderr, true
	case "sys":
		return System, true
	}
	return 0, false
}

// Line is one line of a service's log.
type Line struct {
	Time    time.Time // when the line was completed, UTC
	Service string
	Stream  Stream
	Text    string // without the newline
}

// timeLayout is RFC 3339 with a fixed nine-digit fraction, so every
// timestamp has the same width. time.RFC3339Nano parses it.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// recordOverhead is the size of a record without its text: timestamp,
// space, stream, space, newline.
const recordOverhead = len("2006-01-02T15:04:05.000000000Z") + 1 + 3 + 1 + 1

// appendRecord appends the on-disk form of one line to b.
func appendRecord(b []byte, t time.Time, stream Stream, text []byte) []byte {
	b = t.UTC().AppendFormat(b, timeLayout)
	b = append(b, ' ')
	b = append(b, stream.String()...)
	b = append(b, ' ')
	b = append(b, text...)
	return append(b, '\n')
}

// parseRecord parses one on-disk line without its newline.
func parseRecord(b []byte, service string) (Line, bool) {
	ts, rest, ok := bytes.Cut(b, []byte{' '})
	if !ok {
		return Line{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Line{}, false
	}
	st, text, _ := bytes.Cut(rest, []byte{' '})
	stream, ok := parseStream(st)
	if !ok {
		return Line{}, false
	}
	return Line{Time: t.UTC(), Service: service, Stream: stream, Text: string(text)}, true
}
