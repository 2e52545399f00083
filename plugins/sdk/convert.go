package sdk

import (
	"fmt"
	"time"

	"github.com/devstack/devstack/plugins/sdk/internal/pluginpb"
	"github.com/devstack/devstack/proxy/fault"
)

// The wire types never leave this package: these convert at the edge.

func toRuleSet(rs RuleSet) *pluginpb.RuleSet {
	out := &pluginpb.RuleSet{HeaderTrigger: rs.HeaderTrigger, Rules: make([]*pluginpb.Rule, len(rs.Rules))}
	for i, r := range rs.Rules {
		pr := &pluginpb.Rule{
			Id: r.ID, Service: r.Service, Caller: r.Caller, Route: r.Route, Method: r.Method,
			Direction: uint32(r.Direction), Probability: r.Probability, First: int64(r.First),
			Fault: &pluginpb.Fault{
				Kind: r.Fault.Kind.String(), DurationNanos: int64(r.Fault.Duration), JitterNanos: int64(r.Fault.Jitter),
				Dist: r.Fault.Dist.String(), Status: int32(r.Fault.Status), Body: r.Fault.Body, Rate: r.Fault.Rate, Chunk: int64(r.Fault.Chunk), Bytes: r.Fault.Bytes,
			},
		}
		if h := r.Header; h != nil {
			pr.Header = &pluginpb.HeaderMatch{Name: h.Name, Value: h.Value, Regex: h.Regex}
		}
		if !r.Expires.IsZero() {
			pr.ExpiresUnixNano = r.Expires.UnixNano()
		}
		out.Rules[i] = pr
	}
	return out
}

func fromRuleSet(p *pluginpb.RuleSet) (RuleSet, error) {
	rs := RuleSet{HeaderTrigger: p.GetHeaderTrigger()}
	for _, pr := range p.GetRules() {
		pf := pr.GetFault()
		k, err := fault.ParseKind(pf.GetKind())
		if err != nil {
			return RuleSet{}, fmt.Errorf("rule %s: %w", pr.GetId(), err)
		}
		d, err := fault.ParseDist(pf.GetDist())
		if err != nil {
			return RuleSet{}, fmt.Errorf("rule %s: %w", pr.GetId(), err)
		}
		r := fault.Rule{
			ID: pr.GetId(), Service: pr.GetService(), Caller: pr.GetCaller(), Route: pr.GetRoute(), Method: pr.GetMethod(),
			Direction: fault.Direction(pr.GetDirection()), Probability: pr.GetProbability(), First: int(pr.GetFirst()),
			Fault: fault.Fault{
				Kind: k, Duration: time.Duration(pf.GetDurationNanos()), Jitter: time.Duration(pf.GetJitterNanos()), Dist: d,
				Status: int(pf.GetStatus()), Body: pf.GetBody(), Rate: pf.GetRate(), Chunk: int(pf.GetChunk()), Bytes: pf.GetBytes(),
			},
		}
		if h := pr.GetHeader(); h != nil {
			r.Header = &fault.HeaderMatch{Name: h.GetName(), Value: h.GetValue(), Regex: h.GetRegex()}
		}
		if n := pr.GetExpiresUnixNano(); n != 0 {
			r.Expires = time.Unix(0, n)
		}
		rs.Rules = append(rs.Rules, r)
	}
	return rs, nil
}

func toConfig(c Config) *pluginpb.Config {
	out := &pluginpb.Config{Project: c.Project, Options: c.Options, Rules: toRuleSet(c.Rules), Restarted: c.Restarted}
	for _, s := range c.Services {
		ps := &pluginpb.Service{Name: s.Name}
		for _, p := range s.Ports {
			ps.Ports = append(ps.Ports, &pluginpb.Port{Listen: p.Listen, Upstream: p.Upstream, Protocol: p.Protocol})
		}
		out.Services = append(out.Services, ps)
	}
	return out
}

func fromConfig(p *pluginpb.Config) (Config, error) {
	rs, err := fromRuleSet(p.GetRules())
	if err != nil {
		return Config{}, err
	}
	c := Config{Project: p.GetProject(), Options: p.GetOptions(), Rules: rs, Restarted: p.GetRestarted()}
	for _, s := range p.GetServices() {
		svc := Service{Name: s.GetName()}
		for _, pp := range s.GetPorts() {
			svc.Ports = append(svc.Ports, Port{Listen: pp.GetListen(), Upstream: pp.GetUpstream(), Protocol: pp.GetProtocol()})
		}
		c.Services = append(c.Services, svc)
	}
	return c, nil
}

func toEvent(e Event) *pluginpb.Event {
	return &pluginpb.Event{Service: e.Service, Kind: e.Kind, Message: e.Message, TimeUnixNano: e.Time.UnixNano(),
		Intent: e.Intent, Cause: e.Cause}
}

func fromEvent(p *pluginpb.Event) Event {
	return Event{Service: p.GetService(), Kind: p.GetKind(), Message: p.GetMessage(), Time: time.Unix(0, p.GetTimeUnixNano()),
		Intent: p.GetIntent(), Cause: p.GetCause()}
}

func toAction(a Action) *pluginpb.Action {
	out := &pluginpb.Action{Kind: string(a.Kind), Services: a.Services, Reason: a.Reason}
	if !a.Seen.IsZero() {
		out.SeenUnixNano = a.Seen.UnixNano()
	}
	for _, f := range a.Files {
		out.Files = append(out.Files, &pluginpb.FileCopy{Src: f.Src, Dst: f.Dst, Removed: f.Removed})
	}
	for _, c := range a.Exec {
		out.Exec = append(out.Exec, &pluginpb.Exec{Command: c.Command, WorkingDir: c.WorkingDir, Environment: c.Env, User: c.User})
	}
	return out
}

func fromAction(p *pluginpb.Action) Action {
	a := Action{Kind: ActionKind(p.GetKind()), Services: p.GetServices(), Reason: p.GetReason()}
	if n := p.GetSeenUnixNano(); n != 0 {
		a.Seen = time.Unix(0, n)
	}
	for _, f := range p.GetFiles() {
		a.Files = append(a.Files, FileCopy{Src: f.GetSrc(), Dst: f.GetDst(), Removed: f.GetRemoved()})
	}
	for _, c := range p.GetExec() {
		a.Exec = append(a.Exec, Command{Command: c.GetCommand(), WorkingDir: c.GetWorkingDir(), Env: c.GetEnvironment(), User: c.GetUser()})
	}
	return a
}
