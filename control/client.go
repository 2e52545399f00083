package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/trace"
)

// ErrNotRunning means no supervisor answers for the project.
var ErrNotRunning = errors.New("no devstack supervisor is running for this project")

// Client talks to one project's supervisor over its unix socket.
type Client struct {
	hc    *http.Client
	token string
}

// Dial returns a client for the supervisor listening on socket. It returns
// ErrNotRunning when nothing answers there, and an error that says so when
// the socket (or its directory) is another user's.
func Dial(ctx context.Context, socket, token string) (*Client, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "unix", socket)
	if errors.Is(err, fs.ErrPermission) {
		// Another user's stack: say so, rather than that none runs.
		return nil, fmt.Errorf("connecting to the supervisor at %s: permission denied: the project's state belongs to another user; run devstack as that user, or give this project another name (-p)", socket)
	}
	if err != nil {
		return nil, ErrNotRunning
	}
	conn.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{hc: &http.Client{Transport: tr}, token: token}, nil
}

const base = "http://devstack"

// Ps returns every service's status.
func (c *Client) Ps(ctx context.Context) ([]runner.ServiceStatus, error) {
	resp, err := c.get(ctx, "/v1/ps")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []runner.ServiceStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding ps: %w", err)
	}
	return out, nil
}

// Wait follows the initial up until it finishes, passing progress to fn.
func (c *Client) Wait(ctx context.Context, fn func(Message)) error {
	resp, err := c.get(ctx, "/v1/wait")
	if err != nil {
		return err
	}
	return readStream(resp, fn)
}

// Do runs an action (up, start, stop, restart) on services, passing
// progress to fn. o tunes the stops of stop and restart; up and start
// stop nothing and ignore it.
func (c *Client) Do(ctx context.Context, action string, services []string, o runner.StopOptions, fn func(Message)) error {
	return c.post(ctx, "/v1/"+action, request{Services: services, Grace: graceParam(o)}, fn)
}

// Down stops the stack, as o says; volumes also removes its named
// volumes.
func (c *Client) Down(ctx context.Context, volumes bool, o runner.StopOptions, fn func(Message)) error {
	return c.post(ctx, "/v1/down", request{Volumes: volumes, Grace: graceParam(o)}, fn)
}

// Handover asks the supervisor to make way for a new one (see
// Server.Handover), stopping its processes as o says; it exits after
// answering.
func (c *Client) Handover(ctx context.Context, o runner.StopOptions, fn func(Message)) error {
	return c.post(ctx, "/v1/handover", request{Grace: graceParam(o)}, fn)
}

// graceParam is o's grace on the wire (see request.Grace).
func graceParam(o runner.StopOptions) string {
	if o.Grace == nil {
		return ""
	}
	return o.Grace.String()
}

// post makes a mutating call with body as JSON and passes the streamed
// progress to fn.
func (c *Client) post(ctx context.Context, path string, body any, fn func(Message)) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("calling the supervisor: %w", err)
	}
	return readStream(resp, fn)
}

// LogQuery selects log lines.
type LogQuery struct {
	Services []string
	Tail     int
	Since    time.Time
	Follow   bool
}

// Logs streams log lines to fn until the query is done (or ctx ends when
// following).
func (c *Client) Logs(ctx context.Context, q LogQuery, fn func(LogLine)) error {
	v := url.Values{"service": q.Services}
	if q.Tail > 0 {
		v.Set("tail", strconv.Itoa(q.Tail))
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	resp, err := c.get(ctx, "/v1/logs?"+v.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var l LogLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading logs: %w", err)
		}
		fn(l)
	}
}

func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling the supervisor: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var m Message
	if err := json.NewDecoder(resp.Body).Decode(&m); err == nil && m.Error != "" {
		return errors.New(m.Error)
	}
	return fmt.Errorf("supervisor answered %s", resp.Status)
}

// readStream reads NDJSON Messages until the final one.
func readStream(resp *http.Response, fn func(Message)) error {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("decoding supervisor message: %w", err)
		}
		if m.Done {
			if m.Error != "" {
				return errors.New(m.Error)
			}
			return nil
		}
		if fn != nil {
			fn(m)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading from the supervisor: %w", err)
	}
	return errors.New("the supervisor closed the connection before answering; see its log for why")
}

// Traces lists trace summaries.
func (c *Client) Traces(ctx context.Context, q trace.Query) ([]trace.Summary, error) {
	var out []trace.Summary
	return out, c.getJSON(ctx, "/v1/traces?"+EncodeTraceQuery(q).Encode(), &out)
}

// Env says how to run service outside devstack, in its place.
func (c *Client) Env(ctx context.Context, service string) (runner.HostRun, error) {
	var out runner.HostRun
	return out, c.getJSON(ctx, "/v1/env/"+url.PathEscape(service), &out)
}

// Trace returns one trace's spans.
func (c *Client) Trace(ctx context.Context, id trace.TraceID) ([]*trace.Span, error) {
	var out []*trace.Span
	return out, c.getJSON(ctx, "/v1/traces/"+id.String(), &out)
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}
