package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/devstack/devstack/plugins/sdk/internal/pluginpb"
)

// Conn is the host's side of a plugin connection, as go-plugin dispenses
// it. Plugin authors do not need it; devstack's plugin host does.
type Conn struct {
	c pluginpb.PluginClient
}

// CommandError is a command's error as the plugin wrote it: the user's
// mistake, to show as it is, not a broken plugin.
type CommandError struct{ Msg string }

func (e *CommandError) Error() string { return e.Msg }

// Info asks the plugin its name and version, and checks its protocol.
func (c *Conn) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &pluginpb.Empty{})
	if err != nil {
		return Info{}, err
	}
	if r.GetProtocol() != ProtocolVersion {
		return Info{}, fmt.Errorf("plugin %s speaks plugin protocol %d, this devstack speaks %d; rebuild the plugin against this devstack's plugins/sdk", r.GetName(), r.GetProtocol(), ProtocolVersion)
	}
	return Info{Name: r.GetName(), Version: r.GetVersion()}, nil
}

// Command runs a plugin command. An error the plugin returned is a
// *CommandError.
func (c *Conn) Command(ctx context.Context, name string, args []byte) ([]byte, error) {
	r, err := c.c.Command(ctx, &pluginpb.CommandRequest{Name: name, Args: args})
	if err != nil {
		if s, ok := status.FromError(err); ok && s.Code() == codes.InvalidArgument {
			return nil, &CommandError{Msg: s.Message()}
		}
		return nil, err
	}
	return r.GetResult(), nil
}

// Session opens the plugin's session with its config.
func (c *Conn) Session(ctx context.Context, cfg Config) (*Session, error) {
	st, err := c.c.Session(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&pluginpb.HostMessage{Msg: &pluginpb.HostMessage_Config{Config: toConfig(cfg)}}); err != nil {
		return nil, err
	}
	return &Session{st: st}, nil
}

// Session is an open plugin session. Send and Applied may be used from
// any goroutine, Recv from one.
type Session struct {
	mu sync.Mutex // a gRPC stream's Send is not safe for concurrent use
	st pluginpb.Plugin_SessionClient
}

// Send passes a runner event to the plugin.
func (s *Session) Send(ev Event) error {
	return s.send(&pluginpb.HostMessage{Msg: &pluginpb.HostMessage_Event{Event: toEvent(ev)}})
}

// Applied answers a rule set the plugin asked to hear about (its
// Message.Seq is not 0): nil once the proxy applies it, or why it could
// not. The plugin's PushRules returns with it.
func (s *Session) Applied(seq uint64, err error) error {
	a := &pluginpb.RulesApplied{Seq: seq}
	if err != nil {
		a.Error = err.Error()
	}
	return s.send(&pluginpb.HostMessage{Msg: &pluginpb.HostMessage_Applied{Applied: a}})
}

func (s *Session) send(m *pluginpb.HostMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Send(m)
}

// Message is what a plugin sends: a rule set or an action.
type Message struct {
	Rules  *RuleSet
	Action *Action
	// Seq is the rule set's number, which Applied answers; 0 when the
	// plugin wants no answer.
	Seq uint64
}

// Recv waits for the plugin's next message; io.EOF when it ended the
// session cleanly.
func (s *Session) Recv() (Message, error) {
	m, err := s.st.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Message{}, io.EOF
		}
		return Message{}, err
	}
	switch {
	case m.GetRules() != nil:
		rs, err := fromRuleSet(m.GetRules())
		if err != nil {
			return Message{}, fmt.Errorf("plugin sent a bad rule set: %w", err)
		}
		return Message{Rules: &rs, Seq: m.GetRules().GetSeq()}, nil
	case m.GetAction() != nil:
		a := fromAction(m.GetAction())
		return Message{Action: &a}, nil
	}
	return Message{}, nil
}

// CloseSend tells the plugin no more events come.
func (s *Session) CloseSend() error { return s.st.CloseSend() }
