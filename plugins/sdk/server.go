package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/devstack/devstack/plugins/sdk/internal/pluginpb"
)

// grpcPlugin adapts a Plugin to go-plugin (impl is nil on the host side).
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Plugin
}

func (g *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPluginServer(s, &server{impl: g.impl})
	return nil
}

func (g *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Conn{c: pluginpb.NewPluginClient(c)}, nil
}

// server serves a Plugin over gRPC, in the plugin's process (one session
// per process: devstack starts a new process to start again).
type server struct {
	pluginpb.UnimplementedPluginServer
	impl    Plugin
	once    sync.Once
	started chan struct{} // closed once Start returned without error
}

func (s *server) startedCh() chan struct{} {
	s.once.Do(func() { s.started = make(chan struct{}) })
	return s.started
}

func (s *server) Info(context.Context, *pluginpb.Empty) (*pluginpb.InfoResponse, error) {
	i := s.impl.Info()
	return &pluginpb.InfoResponse{Name: i.Name, Version: i.Version, Protocol: ProtocolVersion}, nil
}

func (s *server) Command(ctx context.Context, req *pluginpb.CommandRequest) (*pluginpb.CommandResponse, error) {
	c, ok := s.impl.(Commander)
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "plugin %s has no commands", s.impl.Info().Name)
	}
	select { // a command never reaches a plugin that is not set up yet
	case <-s.startedCh():
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	out, err := c.Command(ctx, req.GetName(), req.GetArgs())
	if err != nil {
		// InvalidArgument tells the host it is the plugin's answer, to show
		// as it is, not a broken plugin.
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pluginpb.CommandResponse{Result: out}, nil
}

func (s *server) Session(stream pluginpb.Plugin_SessionServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	pc := first.GetConfig()
	if pc == nil {
		return status.Error(codes.FailedPrecondition, "a session starts with the config")
	}
	cfg, err := fromConfig(pc)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	// The plugin's context lives as long as the session: the host ends
	// the session when it stops the plugin.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	host := &streamHost{stream: stream, ctx: ctx, acks: map[uint64]chan string{}}
	// One goroutine reads the session from the start, so that the
	// acknowledgement of rules pushed in Start, or by an event handler,
	// is read while they wait for it; events queue for the handler.
	events := newEventQueue()
	recvErr := make(chan error, 1)
	go func() {
		defer events.close()
		for {
			m, err := stream.Recv()
			if err != nil {
				host.fail(err)
				recvErr <- ignoreEOF(err)
				cancel()
				return
			}
			switch {
			case m.GetApplied() != nil:
				host.acked(m.GetApplied())
			case m.GetEvent() != nil:
				events.put(fromEvent(m.GetEvent()))
			}
		}
	}()
	if err := s.impl.Start(ctx, cfg, host); err != nil {
		return status.Error(codes.Aborted, fmt.Sprintf("plugin %s: starting: %v", s.impl.Info().Name, err))
	}
	close(s.startedCh())
	eh, _ := s.impl.(EventHandler)
	for {
		ev, ok := events.get()
		if !ok {
			return <-recvErr
		}
		if eh != nil {
			eh.HandleEvent(ctx, ev)
		}
	}
}

// eventQueue hands runner events from the session's reader to the
// plugin's handler in order, without a bound: a handler that waits on the
// host (pushing rules) must never stop the reader that brings the answer.
type eventQueue struct {
	mu     sync.Mutex
	q      []Event
	closed bool
	more   chan struct{} // signalled (never blocking) on put and close
}

func newEventQueue() *eventQueue { return &eventQueue{more: make(chan struct{}, 1)} }

func (e *eventQueue) put(ev Event) {
	e.mu.Lock()
	e.q = append(e.q, ev)
	e.mu.Unlock()
	e.signal()
}

func (e *eventQueue) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.signal()
}

func (e *eventQueue) signal() {
	select {
	case e.more <- struct{}{}:
	default:
	}
}

// get returns the next event, or false once the queue is closed and empty.
func (e *eventQueue) get() (Event, bool) {
	for {
		e.mu.Lock()
		if len(e.q) > 0 {
			ev := e.q[0]
			e.q = e.q[1:]
			e.mu.Unlock()
			return ev, true
		}
		closed := e.closed
		e.mu.Unlock()
		if closed {
			return Event{}, false
		}
		<-e.more
	}
}

func ignoreEOF(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled || err.Error() == "EOF" {
		return nil
	}
	return err
}

// streamHost is the Host a plugin's Start gets: it sends on the session.
type streamHost struct {
	mu     sync.Mutex // a gRPC stream's Send is not safe for concurrent use
	stream pluginpb.Plugin_SessionServer
	ctx    context.Context // the session's

	amu  sync.Mutex
	seq  uint64
	acks map[uint64]chan string // a pushed rule set's seq → its answer
	err  error                  // set once the session ended
}

// ackTimeout bounds how long PushRules waits for devstack to say it
// applied the rules; a host that answers no acks at all is broken.
const ackTimeout = 10 * time.Second

func (h *streamHost) send(m *pluginpb.PluginMessage) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.stream.Send(m); err != nil {
		return fmt.Errorf("sending to devstack: %w", err)
	}
	return nil
}

// PushRules returns once devstack has applied rs (the proxy acts on it
// from its next request on), so that a command or a Toxiproxy API call
// answered after it is already true of the traffic; or an error saying
// why devstack refused it.
func (h *streamHost) PushRules(rs RuleSet) error {
	h.amu.Lock()
	if h.err != nil {
		h.amu.Unlock()
		return fmt.Errorf("sending to devstack: %w", h.err)
	}
	h.seq++
	seq, ack := h.seq, make(chan string, 1)
	h.acks[seq] = ack
	h.amu.Unlock()
	defer func() {
		h.amu.Lock()
		delete(h.acks, seq)
		h.amu.Unlock()
	}()
	m := toRuleSet(rs)
	m.Seq = seq
	if err := h.send(&pluginpb.PluginMessage{Msg: &pluginpb.PluginMessage_Rules{Rules: m}}); err != nil {
		return err
	}
	t := time.NewTimer(ackTimeout)
	defer t.Stop()
	select {
	case msg, ok := <-ack:
		switch {
		case !ok:
			return errors.New("devstack ended the session before applying the rules")
		case msg != "":
			return errors.New(msg)
		}
		return nil
	case <-h.ctx.Done():
		return errors.New("the session ended before devstack applied the rules")
	case <-t.C:
		return fmt.Errorf("devstack did not confirm the rules within %v", ackTimeout)
	}
}

// acked hands a RulesApplied to the PushRules waiting for it.
func (h *streamHost) acked(a *pluginpb.RulesApplied) {
	h.amu.Lock()
	defer h.amu.Unlock()
	if ch, ok := h.acks[a.GetSeq()]; ok {
		ch <- a.GetError()
		delete(h.acks, a.GetSeq())
	}
}

// fail ends every wait for an acknowledgement: the session is over.
func (h *streamHost) fail(err error) {
	h.amu.Lock()
	defer h.amu.Unlock()
	h.err = err
	for seq, ch := range h.acks {
		close(ch)
		delete(h.acks, seq)
	}
}

func (h *streamHost) Act(a Action) error {
	return h.send(&pluginpb.PluginMessage{Msg: &pluginpb.PluginMessage_Action{Action: toAction(a)}})
}
