package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// timeline is what happened during one timed command, for -timeline:
// the engine's events for the project (with the engine's timestamps) and
// each line the tool printed (stamped as it arrived), on one clock.
type timeline struct {
	mu      sync.Mutex
	start   time.Time
	entries []entry
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

type entry struct {
	at   time.Time
	from string // "engine" or the tool's name
	what string
}

// watchTimeline subscribes to the project's container events (by label)
// and network events (by name: they carry no container labels), and
// starts the clock. Events() returns once the subscriptions are in place.
func (e *engine) watchTimeline(ctx context.Context, label, proj string) *timeline {
	ctx, cancel := context.WithCancel(ctx)
	tl := &timeline{start: time.Now(), cancel: cancel}
	cf := make(client.Filters).Add("type", "container").Add("label", label)
	nf := make(client.Filters).Add("type", "network")
	for _, f := range []client.Filters{cf, nf} {
		ev := e.cli.Events(ctx, client.EventsListOptions{Filters: f})
		tl.done.Add(1)
		go func() {
			defer tl.done.Done()
			for {
				select {
				case m := <-ev.Messages:
					if a := string(m.Action); strings.HasPrefix(a, "exec_create") || strings.HasPrefix(a, "exec_start") {
						continue
					}
					if m.Type == events.NetworkEventType && !strings.HasPrefix(m.Actor.Attributes["name"], proj+"_") {
						continue
					}
					tl.add(time.Unix(0, m.TimeNano), "engine", describe(m))
				case <-ev.Err:
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return tl
}

// describe is one event as "container start gateway-1".
func describe(m events.Message) string {
	name := m.Actor.Attributes["name"]
	if strings.HasPrefix(string(m.Action), "exec_") {
		// A healthcheck probe: its end is enough.
		return fmt.Sprintf("probe ended %s (exit %s)", name, m.Actor.Attributes["exitCode"])
	}
	if m.Type == events.NetworkEventType {
		if c := m.Actor.Attributes["container"]; c != "" {
			return fmt.Sprintf("network %s %s (container %s)", m.Action, name, c[:min(12, len(c))])
		}
	}
	return fmt.Sprintf("%s %s %s", m.Type, m.Action, name)
}

func (tl *timeline) add(at time.Time, from, what string) {
	tl.mu.Lock()
	tl.entries = append(tl.entries, entry{at, from, what})
	tl.mu.Unlock()
}

// writer stamps each whole line written to it as an entry from from.
func (tl *timeline) writer(from string) io.Writer { return &lineStamper{tl: tl, from: from} }

type lineStamper struct {
	tl      *timeline
	from    string
	partial []byte
}

func (l *lineStamper) Write(b []byte) (int, error) {
	now := time.Now()
	l.partial = append(l.partial, b...)
	for {
		nl := bytes.IndexByte(l.partial, '\n')
		if nl < 0 {
			return len(b), nil
		}
		l.tl.add(now, l.from, string(l.partial[:nl]))
		l.partial = l.partial[nl+1:]
	}
}

// print stops the watch, waits a moment for the last events (the engine
// sends them as they happen; the stream may lag the command's exit by a
// few milliseconds) and prints the entries in time order, as offsets from
// the start, with the command's end.
func (tl *timeline) print(w io.Writer, title string, end time.Time) {
	time.Sleep(200 * time.Millisecond) // the bench's own report, not a wait on a condition
	tl.cancel()
	tl.done.Wait()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.entries = append(tl.entries, entry{end, "bench", "command returned"})
	slices.SortStableFunc(tl.entries, func(a, b entry) int { return a.at.Compare(b.at) })
	fmt.Fprintf(w, "    timeline: %s\n", title)
	var prev time.Duration
	for _, e := range tl.entries {
		off := e.at.Sub(tl.start)
		fmt.Fprintf(w, "    %+8.3fs %+6dms  %-8s %s\n", off.Seconds(), (off - prev).Milliseconds(), e.from, e.what)
		prev = off
	}
}
