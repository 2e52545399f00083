package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/devstack/devstack/plugins/sdk"
)

// errFatal marks a launch error that restarting cannot fix.
type errFatal struct{ err error }

func (e *errFatal) Error() string { return e.err.Error() }
func (e *errFatal) Unwrap() error { return e.err }

// errHung is a plugin that stopped answering; it is killed outright.
type errHung struct{ err error }

func (e *errHung) Error() string { return e.err.Error() }
func (e *errHung) Unwrap() error { return e.err }

// supervise runs one plugin until ctx ends, restarting it with backoff.
func (h *Host) supervise(ctx context.Context, r *running) {
	defer h.wg.Done()
	backoff := h.o.MinBackoff
	for attempt := 0; ; attempt++ {
		began := time.Now()
		err := h.runOnce(ctx, r, attempt > 0)
		if ctx.Err() != nil {
			r.set(func(s *Status) { s.State, s.Pid = Stopped, 0 })
			closeOnce(r.ready)
			return
		}
		var fatal *errFatal
		if errors.As(err, &fatal) {
			h.logf("%s failed and will not be restarted: %v", r.spec.Name, err)
			r.set(func(s *Status) { s.State, s.Pid, s.LastError = Failed, 0, err.Error() })
			closeOnce(r.ready)
			return
		}
		if time.Since(began) >= h.o.StableAfter {
			backoff = h.o.MinBackoff
		}
		h.logf("%s stopped (%v); the proxy keeps its rules; restarting in %s", r.spec.Name, err, backoff)
		r.set(func(s *Status) { s.State, s.Pid, s.LastError = Restarting, 0, err.Error(); s.Restarts++ })
		closeOnce(r.ready)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			r.set(func(s *Status) { s.State = Stopped })
			return
		case <-t.C:
		}
		backoff = min(backoff*2, h.o.MaxBackoff)
	}
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// runOnce launches the plugin and serves its session until it ends, the
// plugin dies or stops answering, or ctx ends.
func (h *Host) runOnce(ctx context.Context, r *running, restarted bool) (err error) {
	cmd, sc, err := h.command(r.spec)
	if err != nil {
		return &errFatal{err}
	}
	dieWithHost(cmd)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginSet(nil),
		Cmd:              cmd,
		SecureConfig:     sc,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           h.hclogger(r.spec.Name),
		Stderr:           &prefixWriter{w: h.o.Log, prefix: "plugin " + r.spec.Name + ": "},
		StartTimeout:     15 * time.Second,
	})
	pid := 0
	sock := "" // the plugin's unix socket, once known
	defer func() {
		r.mu.Lock()
		r.conn = nil
		r.mu.Unlock()
		var hung *errHung
		if errors.As(err, &hung) && pid > 0 {
			// go-plugin's Kill first asks the plugin to shut down, and a
			// stopped process never answers that call.
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		client.Kill()
		// go-plugin makes the socket in TMPDIR; a plugin that is killed
		// or exits without closing its listener leaves it there.
		if sock != "" {
			_ = os.Remove(sock)
		}
	}()
	rpc, err := client.Client()
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return &errFatal{fmt.Errorf("%s does not have the sha256 the project file gives; rebuild it or update the checksum", r.spec.Path)}
		}
		return fmt.Errorf("starting: %w", err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	conn := raw.(*sdk.Conn)
	ictx, cancel := context.WithTimeout(ctx, h.o.PingTimeout)
	info, err := conn.Info(ictx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && isProtocolErr(err) {
			return &errFatal{err}
		}
		return fmt.Errorf("asking its name: %w", err)
	}
	rules, _ := r.snapshotRules()
	sctx, cancelSession := context.WithCancel(ctx)
	defer cancelSession()
	sess, err := conn.Session(sctx, sdk.Config{Project: h.o.Project, Services: h.o.Services(), Options: r.spec.Options, Rules: rules, Restarted: restarted})
	if err != nil {
		return fmt.Errorf("opening its session: %w", err)
	}
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
		if rc.Addr != nil && rc.Addr.Network() == "unix" {
			sock = rc.Addr.String()
		}
	}
	r.mu.Lock()
	r.conn = conn
	r.st.State, r.st.Version, r.st.Pid = Running, info.Version, pid
	r.mu.Unlock()
	if restarted {
		h.logf("%s is back (pid %d)", r.spec.Name, pid)
	}
	closeOnce(r.ready)

	done := make(chan error, 3)
	go func() { done <- h.receive(r, sess) }()
	go func() { done <- h.ping(sctx, conn) }()
	go func() { done <- sendEvents(sctx, r, sess) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	return err
}

func isProtocolErr(err error) bool { return strings.Contains(err.Error(), "plugin protocol") }

// command builds the plugin's command and, for an external plugin with a
// checksum, go-plugin's SecureConfig.
func (h *Host) command(s Spec) (*exec.Cmd, *plugin.SecureConfig, error) {
	if s.Path == "" {
		cmd, err := h.o.Builtin(s.Name)
		return cmd, nil, err
	}
	cmd := exec.Command(s.Path)
	if s.SHA256 == "" {
		return cmd, nil, nil
	}
	sum, err := hex.DecodeString(s.SHA256)
	if err != nil {
		return nil, nil, fmt.Errorf("sha256 %q is not hex: %w", s.SHA256, err)
	}
	return cmd, &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}, nil
}

// receive applies what the plugin sends until its session ends.
func (h *Host) receive(r *running, sess *sdk.Session) error {
	for {
		m, err := sess.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("it ended its session")
			}
			return fmt.Errorf("session: %w", err)
		}
		switch {
		case m.Rules != nil:
			r.mu.Lock()
			prev, had := r.rules, r.hasRules
			r.rules, r.hasRules = *m.Rules, true
			r.st.Rules = len(m.Rules.Rules)
			r.mu.Unlock()
			err := h.applyRules()
			if err != nil {
				h.logf("%s pushed rules the proxy cannot apply (%v); keeping the previous ones", r.spec.Name, err)
				r.mu.Lock()
				r.rules, r.hasRules, r.st.Rules = prev, had, len(prev.Rules)
				r.mu.Unlock()
			}
			if m.Seq != 0 {
				if err := sess.Applied(m.Seq, err); err != nil {
					return fmt.Errorf("session: %w", err)
				}
			}
		case m.Action != nil:
			a := *m.Action
			if h.o.Act == nil {
				h.logf("%s asked to %s %v, which this devstack does not allow", r.spec.Name, a.Kind, a.Services)
				continue
			}
			if err := h.o.Act(r.spec.Name, a); err != nil {
				h.logf("%s asked to %s %v: %v", r.spec.Name, a.Kind, a.Services, err)
			}
		}
	}
}

// ping probes the plugin; PingMisses misses in a row mean it hangs.
func (h *Host) ping(ctx context.Context, conn *sdk.Conn) error {
	t := time.NewTicker(h.o.PingEvery)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, h.o.PingTimeout)
		_, err := conn.Info(pctx)
		cancel()
		if err == nil {
			misses = 0
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if misses++; misses >= h.o.PingMisses {
			return &errHung{fmt.Errorf("it did not answer %d pings in a row (%w)", misses, err)}
		}
	}
}

// sendEvents forwards runner events to the plugin, in order.
func sendEvents(ctx context.Context, r *running, sess *sdk.Session) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-r.events:
			if err := sess.Send(ev); err != nil {
				return fmt.Errorf("sending an event: %w", err)
			}
		}
	}
}

// prefixWriter writes each whole line with a prefix: a plugin's stderr in
// the host's log. go-plugin hands it every raw line, also the structured
// (JSON) ones that it logs itself through the host's hclog logger at their
// own level; those are left out here, so a plugin's debug chatter never
// reaches the user and nothing shows twice. Plain lines (a panic's trace,
// a stray print) are kept.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := p.buf[:i]
		p.buf = p.buf[i+1:]
		if bytes.HasPrefix(line, []byte(`{"@level":`)) {
			continue
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, line); err != nil {
			return len(b), err
		}
	}
	return len(b), nil
}
