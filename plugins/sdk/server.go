package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
	if err := s.impl.Start(ctx, cfg, &streamHost{stream: stream}); err != nil {
		return status.Error(codes.Aborted, fmt.Sprintf("plugin %s: starting: %v", s.impl.Info().Name, err))
	}
	close(s.startedCh())
	eh, _ := s.impl.(EventHandler)
	for {
		m, err := stream.Recv()
		if err != nil {
			return ignoreEOF(err)
		}
		if ev := m.GetEvent(); ev != nil && eh != nil {
			eh.HandleEvent(ctx, fromEvent(ev))
		}
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
}

func (h *streamHost) send(m *pluginpb.PluginMessage) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.stream.Send(m); err != nil {
		return fmt.Errorf("sending to devstack: %w", err)
	}
	return nil
}

func (h *streamHost) PushRules(rs RuleSet) error {
	return h.send(&pluginpb.PluginMessage{Msg: &pluginpb.PluginMessage_Rules{Rules: toRuleSet(rs)}})
}

func (h *streamHost) Act(a Action) error {
	return h.send(&pluginpb.PluginMessage{Msg: &pluginpb.PluginMessage_Action{Action: toAction(a)}})
}
