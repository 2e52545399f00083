package logstore

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// subscription is one Subscribe call.
type subscription struct {
	services map[string]bool // nil: all

	mu      sync.Mutex // serialises sends with close
	ch      chan Line
	closed  bool
	dropped map[string]int // per service, not yet reported
}

// Subscribe returns a channel that receives every line written from now on
// for services (nil or empty: all services), and a cancel func that ends the
// subscription and closes the channel. Close also closes it. Calling cancel
// more than once is fine.
//
// Writers never wait for subscribers. The channel holds
// Options.SubscriberBuffer lines; when it is full, lines for this subscriber
// are dropped and counted per service. As soon as there is room again, the
// subscriber first receives, per service that lost lines, a System line
// "logstore: dropped N lines (subscriber too slow)", then the current line.
// Dropped lines are still on disk; Read can fetch them.
func (s *Store) Subscribe(services []string) (ch <-chan Line, cancel func()) {
	sub := &subscription{ch: make(chan Line, s.opts.SubscriberBuffer)}
	if len(services) > 0 {
		sub.services = make(map[string]bool, len(services))
		for _, name := range services {
			sub.services[name] = true
		}
	}
	s.subMu.Lock()
	if s.subsClosed {
		s.subMu.Unlock()
		sub.close()
		return sub.ch, func() {}
	}
	s.subs[sub] = struct{}{}
	s.subMu.Unlock()

	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			s.subMu.Lock()
			delete(s.subs, sub)
			s.subMu.Unlock()
			sub.close()
		})
	}
}

// publish offers lines to every interested subscriber without blocking.
func (s *Store) publish(service string, t time.Time, stream Stream, texts [][]byte) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	if len(s.subs) == 0 {
		return
	}
	for sub := range s.subs {
		if sub.services != nil && !sub.services[service] {
			continue
		}
		for _, text := range texts {
			sub.offer(Line{Time: t, Service: service, Stream: stream, Text: string(text)})
		}
	}
}

func (s *Store) closeSubscriptions() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.subsClosed = true
	for sub := range s.subs {
		sub.close()
		delete(s.subs, sub)
	}
}

// offer sends l unless the channel is full, reporting earlier drops first.
func (sub *subscription) offer(l Line) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed {
		return
	}
	if len(sub.dropped) > 0 {
		names := make([]string, 0, len(sub.dropped))
		for name := range sub.dropped {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			notice := Line{
				Time:    l.Time,
				Service: name,
				Stream:  System,
				Text:    fmt.Sprintf("logstore: dropped %d lines (subscriber too slow)", sub.dropped[name]),
			}
			select {
			case sub.ch <- notice:
				delete(sub.dropped, name)
			default:
				sub.drop(l.Service)
				return
			}
		}
	}
	select {
	case sub.ch <- l:
	default:
		sub.drop(l.Service)
	}
}

func (sub *subscription) drop(service string) {
	if sub.dropped == nil {
		sub.dropped = make(map[string]int)
	}
	sub.dropped[service]++
}

func (sub *subscription) close() {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if !sub.closed {
		sub.closed = true
		close(sub.ch)
	}
}
