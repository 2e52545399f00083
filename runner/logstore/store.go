package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	defaultMaxBytes   = 10 << 20
	defaultKeep       = 1
	defaultSubBuffer  = 1024
	minMaxBytes       = 1 << 10
	maxLineBytes      = 64 << 10
	fileMode          = 0o600 // logs may carry secrets; only the user reads them
	dirMode           = 0o700
	logSuffix         = ".log"
	maxServiceNameLen = 200
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// MaxBytes bounds each <service>.log file, in bytes. A write that would
	// take the file past MaxBytes rotates it first, so a file never exceeds
	// it; a service uses at most (Keep+1)*MaxBytes on disk. Lines longer
	// than 64 KiB, or than fits in MaxBytes with its timestamp, are split.
	// Default 10 MiB; at least 1 KiB.
	MaxBytes int64
	// Keep is how many rotated files are kept per service: <service>.log.1
	// (newest) to <service>.log.<Keep> (oldest). Default 1; at least 1.
	Keep int
	// SubscriberBuffer is the channel capacity of each Subscribe call, in
	// lines. A subscriber that falls this far behind loses lines (see
	// Subscribe). Default 1024.
	SubscriberBuffer int
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = defaultMaxBytes
	}
	if o.Keep == 0 {
		o.Keep = defaultKeep
	}
	if o.SubscriberBuffer == 0 {
		o.SubscriberBuffer = defaultSubBuffer
	}
	switch {
	case o.MaxBytes < minMaxBytes:
		return o, fmt.Errorf("%w: MaxBytes %d is below %d", ErrInvalidOptions, o.MaxBytes, minMaxBytes)
	case o.Keep < 0:
		return o, fmt.Errorf("%w: Keep %d is negative", ErrInvalidOptions, o.Keep)
	case o.SubscriberBuffer < 0:
		return o, fmt.Errorf("%w: SubscriberBuffer %d is negative", ErrInvalidOptions, o.SubscriberBuffer)
	}
	return o, nil
}

// Store writes the log files of all services of one devstack instance in
// one directory and fans lines out to subscribers. It is safe for
// concurrent use.
type Store struct {
	dir     string
	opts    Options
	maxText int              // longest text of one line, in bytes
	now     func() time.Time // replaced in tests

	mu       sync.Mutex // guards services and closed
	services map[string]*service
	closed   bool

	subMu      sync.RWMutex // guards subs and subsClosed
	subs       map[*subscription]struct{}
	subsClosed bool
}

// service is the write side of one service's log. Its mutex serialises all
// streams of the service, so lines never interleave and file order is
// timestamp order.
type service struct {
	name string
	path string

	mu      sync.Mutex
	f       *os.File // nil until the first write, or after a failed open
	size    int64
	partial [System + 1][]byte // unterminated line per stream
	closed  bool
}

// Open returns a Store writing to dir, creating dir if needed. Existing log
// files are appended to.
func Open(dir string, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("opening log store: %w", err)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("opening log store: %w", err)
	}
	return &Store{
		dir:      dir,
		opts:     opts,
		maxText:  int(min(maxLineBytes, opts.MaxBytes-int64(recordOverhead))),
		now:      time.Now,
		services: make(map[string]*service),
		subs:     make(map[*subscription]struct{}),
	}, nil
}

// Writer returns a writer for one stream of service. It splits what it is
// given into lines; a partial last line waits for its newline, for Flush or
// for Close. Each line is appended to <dir>/<service>.log and published to
// subscribers. Writers of the same service are safe for concurrent use and
// never interleave within a line.
//
// Write consumes all of p and reports a failed file write as an error;
// subscribers got the lines all the same. An invalid service name gives a
// writer whose writes fail with ErrInvalidService. stream must be Stdout,
// Stderr or System; anything else panics.
func (s *Store) Writer(service string, stream Stream) io.Writer {
	if !stream.valid() {
		panic(fmt.Sprintf("logstore: invalid stream %d", int(stream)))
	}
	svc, err := s.service(service, true)
	if err != nil {
		return errWriter{err}
	}
	return &lineWriter{s: s, svc: svc, stream: stream}
}

// Flush writes out the partial lines of every stream of service, as when
// the service's process has exited.
func (s *Store) Flush(service string) error {
	svc, err := s.service(service, false)
	if err != nil || svc == nil {
		return err
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return s.flushLocked(svc)
}

// Close flushes partial lines, closes the files and ends every
// subscription (their channels are closed). Writes after Close fail with
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	services := make([]*service, 0, len(s.services))
	for _, svc := range s.services {
		services = append(services, svc)
	}
	s.mu.Unlock()

	var errs []error
	for _, svc := range services {
		svc.mu.Lock()
		errs = append(errs, s.flushLocked(svc))
		if svc.f != nil {
			if err := svc.f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("closing log of service %q: %w", svc.name, err))
			}
			svc.f = nil
		}
		svc.closed = true
		svc.mu.Unlock()
	}
	s.closeSubscriptions()
	return errors.Join(errs...)
}

// clock returns the current time in UTC without a monotonic reading, so
// that published lines equal the lines Read parses back.
func (s *Store) clock() time.Time { return s.now().UTC() }

// service returns the service named name, creating it if create is set.
func (s *Store) service(name string, create bool) (*service, error) {
	if !validService(name) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidService, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	svc := s.services[name]
	if svc == nil && create {
		svc = &service{name: name, path: filepath.Join(s.dir, name+logSuffix)}
		s.services[name] = svc
	}
	return svc, nil
}

// validService accepts Compose-style service names: a letter or digit, then
// letters, digits, '.', '_' or '-'. These are safe as file names.
func validService(name string) bool {
	if name == "" || len(name) > maxServiceNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

type lineWriter struct {
	s      *Store
	svc    *service
	stream Stream
}

func (w *lineWriter) Write(p []byte) (int, error) {
	svc := w.svc
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.closed {
		return 0, ErrClosed
	}
	n := len(p)
	now := w.s.clock()
	var texts [][]byte
	buf := svc.partial[w.stream]
	for len(p) > 0 {
		seg, rest, complete := bytes.Cut(p, []byte{'\n'})
		p = rest
		buf = append(buf, seg...)
		for len(buf) > w.s.maxText {
			cut := cutPoint(buf, w.s.maxText)
			texts = append(texts, bytes.Clone(buf[:cut]))
			buf = append(buf[:0], buf[cut:]...)
		}
		if complete {
			texts = append(texts, bytes.Clone(bytes.TrimSuffix(buf, []byte{'\r'})))
			buf = buf[:0]
		}
	}
	svc.partial[w.stream] = buf
	return n, w.s.emitLocked(svc, now, w.stream, texts)
}

// cutPoint returns where to split an overlong line of which the first max
// bytes fit: at max, moved back to the start of a UTF-8 sequence when that
// is at most three bytes back.
func cutPoint(b []byte, max int) int {
	for n := max; n > max-utf8.UTFMax && n > 0; n-- {
		if utf8.RuneStart(b[n]) {
			return n
		}
	}
	return max
}

// flushLocked emits the partial lines of svc. svc.mu must be held.
func (s *Store) flushLocked(svc *service) error {
	if svc.closed {
		return nil
	}
	now := s.clock()
	var errs []error
	for st := Stdout; st <= System; st++ {
		if len(svc.partial[st]) == 0 {
			continue
		}
		text := bytes.Clone(bytes.TrimSuffix(svc.partial[st], []byte{'\r'}))
		svc.partial[st] = svc.partial[st][:0]
		errs = append(errs, s.emitLocked(svc, now, st, [][]byte{text}))
	}
	return errors.Join(errs...)
}

// emitLocked appends complete lines to the service's file and publishes
// them. svc.mu must be held, which keeps publication in file order.
func (s *Store) emitLocked(svc *service, now time.Time, stream Stream, texts [][]byte) error {
	if len(texts) == 0 {
		return nil
	}
	err := s.appendLocked(svc, now, stream, texts)
	s.publish(svc.name, now, stream, texts)
	if err != nil {
		return fmt.Errorf("writing log of service %q: %w", svc.name, err)
	}
	return nil
}

// appendLocked writes the records, rotating before a record that would take
// the file past MaxBytes.
func (s *Store) appendLocked(svc *service, now time.Time, stream Stream, texts [][]byte) error {
	if err := svc.open(); err != nil {
		return err
	}
	var buf []byte
	for _, text := range texts {
		n := int64(recordOverhead + len(text))
		if svc.size+int64(len(buf))+n > s.opts.MaxBytes && svc.size+int64(len(buf)) > 0 {
			if err := svc.write(buf); err != nil {
				return err
			}
			buf = buf[:0]
			if err := svc.rotate(s.opts.Keep); err != nil {
				return err
			}
		}
		buf = appendRecord(buf, now, stream, text)
	}
	return svc.write(buf)
}

// open opens the service's current file for appending, unless it is open.
// A file left without a final newline (a crash mid-write) gets one, so that
// the next record starts on its own line.
func (svc *service) open() error {
	if svc.f != nil {
		return nil
	}
	f, err := os.OpenFile(svc.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, fileMode)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	svc.f, svc.size = f, fi.Size()
	if svc.size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, svc.size-1); err == nil && last[0] != '\n' {
			return svc.write([]byte{'\n'})
		}
	}
	return nil
}

func (svc *service) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if svc.f == nil {
		return errors.New("log file not open")
	}
	n, err := svc.f.Write(b)
	svc.size += int64(n)
	return err
}

// rotate shifts <svc>.log.<i> to .<i+1> (the oldest is replaced), renames
// <svc>.log to .log.1 and opens a new <svc>.log. If a rename fails, writing
// goes on in the current file.
func (svc *service) rotate(keep int) error {
	for i := keep; i >= 1; i-- {
		from := svc.path
		if i > 1 {
			from = svc.path + "." + strconv.Itoa(i-1)
		}
		err := os.Rename(from, svc.path+"."+strconv.Itoa(i))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotating: %w", err)
		}
	}
	err := svc.f.Close()
	svc.f, svc.size = nil, 0
	if err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	return svc.open()
}

// errWriter fails every write with err.
type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }
