package holder

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Client is one connection to a holder. Its methods may be called from
// several goroutines; they take turns, since answers come back in order.
type Client struct {
	mu   sync.Mutex // one request in flight
	conn net.Conn
	r    *bufio.Reader
	err  error // set once the connection is unusable
}

// Dial connects to the holder listening at sock.
func Dial(ctx context.Context, sock string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connecting to holder: %w", err)
	}
	return &Client{conn: conn, r: bufio.NewReader(conn)}, nil
}

// Close closes the connection. Calls in flight fail.
func (c *Client) Close() error {
	err := c.conn.Close()
	c.mu.Lock()
	if c.err == nil {
		c.err = ErrClosed
	}
	c.mu.Unlock()
	return err
}

// Start asks the holder to remove the paths in remove, place the files in
// place and start the service's command. It answers the child's pid. The
// holder starts once: a second Start, or one after a failed placement, is
// refused with an *Error.
func (c *Client) Start(ctx context.Context, place []Place, remove []string) (pid int, err error) {
	resp, err := c.call(ctx, request{Op: opStart, Place: place, Remove: remove})
	if err != nil {
		return 0, err
	}
	if !resp.OK {
		return 0, fmt.Errorf("holder start: answer without ok or error")
	}
	return resp.PID, nil
}

// Probe runs argv once in the container, with its environment and working
// directory, and answers its exit code (128+n when killed by signal n) and
// combined output, capped at 4 KiB. Past timeout (30s when zero) the probe
// is killed and, as Docker reports it, the code is -1 and the output
// "Health check exceeded timeout (…)". err is an *Error when argv could
// not run at all (not found, not executable), else a transport failure;
// ctx must leave room for timeout.
func (c *Client) Probe(ctx context.Context, argv []string, timeout time.Duration) (code int, output string, err error) {
	resp, err := c.call(ctx, request{Op: opProbe, Argv: argv, TimeoutMS: timeout.Milliseconds()})
	if err != nil {
		return 0, "", err
	}
	if resp.Code == nil {
		return 0, "", fmt.Errorf("holder probe: answer without code or error")
	}
	return *resp.Code, resp.Output, nil
}

// call sends req and reads its answer, both within ctx. Any transport
// failure breaks the client for good.
func (c *Client) call(ctx context.Context, req request) (*response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, fmt.Errorf("holder %s: %w", req.Op, c.err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("holder %s: %w", req.Op, err)
	}
	dl, _ := ctx.Deadline() // zero: none
	if err := c.conn.SetDeadline(dl); err != nil {
		return nil, c.broken(req.Op, err)
	}
	// A cancel without a deadline ends the call too: a deadline in the
	// past wakes up the blocked read or write.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = c.conn.SetDeadline(time.Unix(1, 0))
	})
	defer func() {
		// Once it runs, let it finish: it must not move the next
		// call's deadline.
		if !stop() {
			<-fired
		}
	}()

	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("holder %s: encoding request: %w", req.Op, err)
	}
	if _, err := c.conn.Write(append(line, '\n')); err != nil {
		return nil, c.broken(req.Op, ctxErr(ctx, err))
	}
	ans, err := c.r.ReadBytes('\n')
	if err != nil {
		return nil, c.broken(req.Op, ctxErr(ctx, err))
	}
	var resp response
	if err := json.Unmarshal(ans, &resp); err != nil {
		return nil, c.broken(req.Op, fmt.Errorf("decoding answer %q: %w", ans, err))
	}
	if resp.Error != "" {
		return nil, &Error{Op: req.Op, Msg: resp.Error}
	}
	return &resp, nil
}

// broken marks the connection unusable and closes it.
func (c *Client) broken(op string, err error) error {
	c.err = fmt.Errorf("%w: an earlier call failed: %w", ErrClosed, err)
	_ = c.conn.Close()
	return fmt.Errorf("holder %s: %w", op, err)
}

// ctxErr prefers ctx's error to the i/o timeout it caused.
func ctxErr(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	// The conn's deadline is ctx's, and may fire a moment before ctx's
	// own timer has marked it done.
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}
