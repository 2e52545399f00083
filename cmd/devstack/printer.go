package main

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sync"
	"time"
)

// printer writes merged service logs with a coloured "name | " prefix, as
// docker compose does. One mutex keeps lines whole.
type printer struct {
	mu         sync.Mutex
	w          io.Writer
	color      bool
	timestamps bool
	noPrefix   bool // logs --no-log-prefix
	width      int
}

// colours cycle per service; chosen by name hash so a service keeps its
// colour across runs.
var colours = []string{"36", "33", "32", "35", "34", "96", "93", "92", "95", "94"}

func newPrinter(w io.Writer, noColor, timestamps bool, names []string) *printer {
	p := &printer{w: w, color: !noColor && os.Getenv("NO_COLOR") == "" && isTerminal(w), timestamps: timestamps}
	for _, n := range names {
		p.width = max(p.width, len(n))
	}
	return p
}

func (p *printer) colour(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return colours[h.Sum32()%uint32(len(colours))]
}

// line prints one service line; stream "sys" is devstack's own.
func (p *printer) line(t time.Time, service, stream, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prefix := fmt.Sprintf("%-*s | ", p.width, service)
	if p.noPrefix {
		prefix = ""
	} else if p.color {
		prefix = "\x1b[" + p.colour(service) + "m" + prefix + "\x1b[0m"
		if stream == "sys" {
			text = "\x1b[2m" + text + "\x1b[0m"
		}
	}
	if p.timestamps {
		prefix = t.Local().Format("15:04:05.000") + " " + prefix
	}
	fmt.Fprintln(p.w, prefix+text)
}

// note prints a devstack line not tied to one service.
func (p *printer) note(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.color {
		text = "\x1b[1m" + text + "\x1b[0m"
	}
	fmt.Fprintln(p.w, text)
}

// isTerminal reports whether w is a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
