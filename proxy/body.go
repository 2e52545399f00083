package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// Message bodies on the goroutine HTTP/1 path: relayed by their framing,
// never buffered whole, optionally captured (the first bytes) and paced
// (an injected bandwidth limit).

// copyBody copies one message body by its framing and returns its payload
// size. flush makes streamed bodies reach the client as they arrive:
// whenever the source has nothing more buffered, dst is flushed. pace,
// when not nil, holds the bytes back to its rate.
func copyBody(dst *bufio.Writer, src *bufio.Reader, h *head, flush, untilClose bool, capt *capture, pace *throttle) (int64, error) {
	switch {
	case h.chunked:
		return copyChunked(dst, src, flush, capt, pace)
	case h.contentLength > 0:
		return copyN(dst, src, h.contentLength, flush, capt, pace)
	case untilClose:
		return copyN(dst, src, -1, flush, capt, pace)
	}
	return 0, nil
}

// copyN copies n bytes (until EOF when n < 0).
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64, flush bool, capt *capture, pace *throttle) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for n < 0 || total < n {
		want := len(buf)
		if n >= 0 {
			want = int(min(int64(want), n-total))
		}
		want = pace.chunk(want)
		k, err := src.Read(buf[:want])
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return total, werr
			}
			capt.add(buf[:k])
			total += int64(k)
			if pace != nil {
				if err := dst.Flush(); err != nil {
					return total, err
				}
				pace.pace(k)
				if pace.exhausted() {
					return total, errLimitData
				}
			} else if flush && src.Buffered() == 0 {
				if err := dst.Flush(); err != nil {
					return total, err
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && n < 0 {
				return total, nil
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
	}
	return total, nil
}

// copyChunked relays a chunked body verbatim (sizes, extensions and
// trailers included) and returns the payload size.
func copyChunked(dst *bufio.Writer, src *bufio.Reader, flush bool, capt *capture, pace *throttle) (int64, error) {
	var total int64
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return total, err
		}
		dst.Write(line)
		sizeStr, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		size, err := strconv.ParseInt(string(bytes.TrimSpace(sizeStr)), 16, 64)
		if err != nil || size < 0 {
			return total, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			// Trailers, then the blank line.
			for {
				t, err := src.ReadSlice('\n')
				if err != nil {
					return total, err
				}
				dst.Write(t)
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return total, nil
				}
			}
		}
		n, err := copyN(dst, src, size, false, capt, pace)
		total += n
		if err != nil {
			return total, err
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil {
			return total, err
		}
		dst.Write(crlf)
		if flush && src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, err
			}
		}
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(ne.Err.Error(), "reset")
}

// capture keeps the first max bytes of a body, when body capture is on.
// A nil *capture captures nothing, at no cost.
type capture struct {
	buf []byte
	max int
}

func (s *Server) capture() *capture {
	if s.opts.CaptureBodies <= 0 {
		return nil
	}
	return &capture{max: s.opts.CaptureBodies}
}

func (c *capture) add(p []byte) {
	if c == nil || len(c.buf) >= c.max {
		return
	}
	c.buf = append(c.buf, p[:min(len(p), c.max-len(c.buf))]...)
}

func (c *capture) String() string {
	if c == nil {
		return ""
	}
	return string(c.buf)
}
