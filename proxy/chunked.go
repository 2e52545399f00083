package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// chunkScanner follows a chunked body as its bytes go by, to find where it
// ends and how much payload it carried, without changing a byte: the event
// loop relays bodies as they arrive.
type chunkScanner struct {
	state int
	left  int64  // data bytes left in the current chunk
	line  []byte // a size or trailer line, while it is incomplete
}

const (
	chunkSize    = iota // a chunk-size line, with its extensions
	chunkData           // the chunk's data
	chunkDataEnd        // the CRLF after the data
	chunkTrailer        // trailer lines after the last chunk, up to a blank one
)

const maxChunkLine = 4 << 10

var errChunkLine = errors.New("chunk-size or trailer line too long")

// scan consumes b up to the end of the body. It returns how many bytes of
// b belong to the body, how many of those are payload, and whether the
// body ended.
func (c *chunkScanner) scan(b []byte) (n int, payload int64, done bool, err error) {
	for n < len(b) {
		if c.state == chunkData {
			k := int(min(c.left, int64(len(b)-n)))
			n += k
			payload += int64(k)
			if c.left -= int64(k); c.left == 0 {
				c.state = chunkDataEnd
			}
			continue
		}
		i := bytes.IndexByte(b[n:], '\n')
		if i < 0 {
			c.line = append(c.line, b[n:]...)
			if len(c.line) > maxChunkLine {
				return len(b), payload, false, errChunkLine
			}
			return len(b), payload, false, nil
		}
		c.line = append(c.line, b[n:n+i+1]...)
		n += i + 1
		line := bytes.TrimRight(c.line, "\r\n")
		c.line = c.line[:0]
		if len(line) > maxChunkLine {
			return n, payload, false, errChunkLine
		}
		switch c.state {
		case chunkSize:
			sizeStr, _, _ := bytes.Cut(line, []byte(";"))
			size, perr := strconv.ParseInt(string(bytes.TrimSpace(sizeStr)), 16, 64)
			if perr != nil || size < 0 {
				return n, payload, false, fmt.Errorf("bad chunk size %q", line)
			}
			if size == 0 {
				c.state = chunkTrailer
			} else {
				c.state, c.left = chunkData, size
			}
		case chunkDataEnd:
			if len(line) != 0 {
				return n, payload, false, errors.New("chunk data not followed by CRLF")
			}
			c.state = chunkSize
		case chunkTrailer:
			if len(line) == 0 {
				return n, payload, true, nil
			}
		}
	}
	return n, payload, false, nil
}
