package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy/fault"
)

// echo pushes back the rules it was configured with plus one, asks for a
// restart of each service an event names, and has one command.
type echo struct {
	gotCfg chan sdk.Config
	pushed chan error // what PushRules in Start returned
	host   sdk.Host
}

func (e *echo) Info() sdk.Info { return sdk.Info{Name: "echo", Version: "1.2.3"} }

func (e *echo) Start(_ context.Context, cfg sdk.Config, host sdk.Host) error {
	e.gotCfg <- cfg
	e.host = host
	rs := cfg.Rules
	rs.Rules = append(rs.Rules, fault.Rule{ID: "new", Service: "b", Fault: fault.Fault{Kind: fault.Abort, Status: 503}})
	e.pushed <- host.PushRules(rs)
	return nil
}

func (e *echo) HandleEvent(_ context.Context, ev sdk.Event) {
	_ = e.host.Act(sdk.Action{Kind: sdk.Restart, Services: []string{ev.Service}, Reason: ev.Kind})
}

func (e *echo) Command(_ context.Context, name string, args []byte) ([]byte, error) {
	if name == "push" {
		return nil, e.host.PushRules(sdk.RuleSet{})
	}
	if name != "upper" {
		return nil, errors.New("no command " + name + "; try upper")
	}
	var s string
	if err := json.Unmarshal(args, &s); err != nil {
		return nil, err
	}
	return json.Marshal(s + "!")
}

var _ interface {
	sdk.Plugin
	sdk.EventHandler
	sdk.Commander
} = (*echo)(nil)

func TestRoundTrip(t *testing.T) {
	p := &echo{gotCfg: make(chan sdk.Config, 1), pushed: make(chan error, 1)}
	client, _ := plugin.TestPluginGRPCConn(t, false, sdk.PluginSet(p))
	defer client.Close()
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	conn := raw.(*sdk.Conn)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	info, err := conn.Info(ctx)
	if err != nil || info != (sdk.Info{Name: "echo", Version: "1.2.3"}) {
		t.Fatalf("info %+v %v", info, err)
	}

	exp := time.Unix(2000000000, 0)
	old := fault.Rule{ID: "old", Service: "a", Caller: "c", Route: "/x*", Method: "GET", Probability: 0.5, First: 3, Expires: exp,
		Direction: fault.Response, Header: &fault.HeaderMatch{Name: "h", Regex: "v+"},
		Fault: fault.Fault{Kind: fault.Latency, Duration: time.Second, Jitter: time.Millisecond, Dist: fault.Normal, Status: 7, Body: "b", Rate: 9, Chunk: 3, Bytes: 11}}
	cfg := sdk.Config{Project: "shop", Options: []byte(`{"x":1}`), Restarted: true,
		Services: []sdk.Service{{Name: "a", Ports: []sdk.Port{{Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2", Protocol: "http"}}}},
		Rules:    sdk.RuleSet{HeaderTrigger: true, Rules: []fault.Rule{old}}}
	sess, err := conn.Session(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := <-p.gotCfg
	if got.Project != "shop" || string(got.Options) != `{"x":1}` || !got.Restarted || len(got.Services) != 1 || got.Services[0].Ports[0].Upstream != "127.0.0.1:2" {
		t.Errorf("config %+v", got)
	}
	m, err := sess.Recv()
	if err != nil || m.Rules == nil {
		t.Fatalf("recv %+v %v", m, err)
	}
	if !m.Rules.HeaderTrigger || len(m.Rules.Rules) != 2 {
		t.Fatalf("rules %+v", m.Rules)
	}
	// PushRules waits for the host to say it applied them.
	select {
	case err := <-p.pushed:
		t.Fatalf("PushRules returned (%v) before the host applied the rules", err)
	default:
	}
	if m.Seq == 0 {
		t.Fatal("a rule set came without a seq to acknowledge")
	}
	if err := sess.Applied(m.Seq, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-p.pushed; err != nil {
		t.Fatalf("PushRules after the host applied the rules: %v", err)
	}
	back := m.Rules.Rules[0]
	if back.Fault != old.Fault || *back.Header != *old.Header || !back.Expires.Equal(exp) ||
		back.Route != old.Route || back.Caller != old.Caller || back.Method != old.Method || back.First != 3 || back.Probability != 0.5 || back.Direction != fault.Response {
		t.Errorf("rule came back as %+v", back)
	}

	if err := sess.Send(sdk.Event{Service: "payments", Kind: "exited", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	m, err = sess.Recv()
	if err != nil || m.Action == nil || m.Action.Kind != sdk.Restart || !slices.Equal(m.Action.Services, []string{"payments"}) || m.Action.Reason != "exited" {
		t.Fatalf("action %+v %v", m.Action, err)
	}

	out, err := conn.Command(ctx, "upper", []byte(`"hi"`))
	if err != nil || string(out) != `"hi!"` {
		t.Errorf("command: %s %v", out, err)
	}
	_, err = conn.Command(ctx, "nope", nil)
	var ce *sdk.CommandError
	if !errors.As(err, &ce) || ce.Msg != "no command nope; try upper" {
		t.Errorf("command error %#v", err)
	}

	// A rule set the host refuses: the plugin's PushRules says why.
	pushErr := make(chan error, 1)
	go func() { _, err := conn.Command(ctx, "push", nil); pushErr <- err }()
	m, err = sess.Recv()
	if err != nil || m.Rules == nil || m.Seq == 0 {
		t.Fatalf("recv %+v %v", m, err)
	}
	if err := sess.Applied(m.Seq, errors.New("route glob [ is not closed")); err != nil {
		t.Fatal(err)
	}
	if err := <-pushErr; !errors.As(err, &ce) || ce.Msg != "route glob [ is not closed" {
		t.Errorf("push the host refused: %#v", err)
	}

	if err := sess.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after CloseSend: %v", err)
	}
}

// mirror answers each event with a sync action carrying what it got: the
// event's intent and cause, its time as Seen, and one file.
type mirror struct{ host sdk.Host }

func (m *mirror) Info() sdk.Info { return sdk.Info{Name: "mirror"} }

func (m *mirror) Start(_ context.Context, _ sdk.Config, host sdk.Host) error {
	m.host = host
	return nil
}

func (m *mirror) HandleEvent(_ context.Context, ev sdk.Event) {
	_ = m.host.Act(sdk.Action{Kind: sdk.Exec, Services: []string{ev.Service}, Reason: ev.Intent + "/" + ev.Cause, Seen: ev.Time,
		Files: []sdk.FileCopy{{Src: "/src/a.go", Dst: "/app/a.go"}, {Src: "/src/b.go", Dst: "/app/b.go", Removed: true}},
		Exec:  []sdk.Command{{Command: []string{"make", "assets"}, WorkingDir: "/app", Env: []string{"A=1"}, User: "nobody"}, {Command: []string{"true"}}}})
}

func TestIntentSeenFilesAndExecCrossTheWire(t *testing.T) {
	client, _ := plugin.TestPluginGRPCConn(t, false, sdk.PluginSet(&mirror{}))
	defer client.Close()
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := raw.(*sdk.Conn).Session(t.Context(), sdk.Config{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 123)
	if err := sess.Send(sdk.Event{Service: "web", Kind: "stopping", Intent: "coming back", Cause: "main.go changed", Time: at}); err != nil {
		t.Fatal(err)
	}
	m, err := sess.Recv()
	if err != nil || m.Action == nil {
		t.Fatalf("recv %+v %v", m, err)
	}
	a := m.Action
	want := []sdk.FileCopy{{Src: "/src/a.go", Dst: "/app/a.go"}, {Src: "/src/b.go", Dst: "/app/b.go", Removed: true}}
	if a.Kind != sdk.Exec || a.Reason != "coming back/main.go changed" || !a.Seen.Equal(at) || !slices.Equal(a.Files, want) {
		t.Fatalf("action came back as %+v", a)
	}
	if len(a.Exec) != 2 || !slices.Equal(a.Exec[0].Command, []string{"make", "assets"}) || a.Exec[0].WorkingDir != "/app" ||
		!slices.Equal(a.Exec[0].Env, []string{"A=1"}) || a.Exec[0].User != "nobody" || !slices.Equal(a.Exec[1].Command, []string{"true"}) {
		t.Fatalf("exec commands came back as %+v", a.Exec)
	}
	sess.CloseSend()
}

// pusher pushes a rule set for each event, from its event handler.
type pusher struct{ host sdk.Host }

func (p *pusher) Info() sdk.Info { return sdk.Info{Name: "pusher"} }

func (p *pusher) Start(_ context.Context, _ sdk.Config, host sdk.Host) error {
	p.host = host
	return nil
}

func (p *pusher) HandleEvent(_ context.Context, ev sdk.Event) {
	_ = p.host.PushRules(sdk.RuleSet{Rules: []fault.Rule{{ID: ev.Service, Service: ev.Service, Fault: fault.Fault{Kind: fault.Reset}}}})
}

// An event handler that waits on the host (PushRules) while more events
// arrive must not stop the session reading the acknowledgement it waits
// for.
func TestEventHandlerMayWaitOnTheHost(t *testing.T) {
	client, _ := plugin.TestPluginGRPCConn(t, false, sdk.PluginSet(&pusher{}))
	defer client.Close()
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sess, err := raw.(*sdk.Conn).Session(ctx, sdk.Config{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		if err := sess.Send(sdk.Event{Service: n, Kind: "exited"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		m, err := sess.Recv()
		if err != nil || m.Rules == nil || len(m.Rules.Rules) != 1 || m.Rules.Rules[0].ID != n {
			t.Fatalf("want the rule set for %s, got %+v %v", n, m.Rules, err)
		}
		if err := sess.Applied(m.Seq, nil); err != nil {
			t.Fatal(err)
		}
	}
	sess.CloseSend()
}
