package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// readChunk is how much Read reads at a time, from the end of a file.
	readChunk = 64 << 10
	// snapshotAttempts bounds the retries when a rotation races Read.
	snapshotAttempts = 5
)

// Query selects lines for Read.
type Query struct {
	// Services to read. Nil or empty means every service with a log file in
	// the directory. A service without files yields no lines.
	Services []string
	// Since drops lines older than Since. Zero means no lower bound.
	Since time.Time
	// Tail keeps only the last Tail lines of each service, after Since
	// applies. 0 means all.
	Tail int
}

// Read returns the lines of dir's log files that q selects, oldest first,
// the services merged by timestamp (equal timestamps keep the order of
// q.Services, or of the names). It needs no Store, so it works while a
// supervisor writes and after it has exited; a line still being written is
// left out.
//
// Each service's files are read from the end, newest file first, stopping
// as soon as Tail lines are found or a line is older than Since, so showing
// the last 100 lines of a 10 MiB log reads about 64 KiB. Files are assumed
// to be in time order, which holds unless the wall clock went back.
func Read(dir string, q Query) ([]Line, error) {
	if q.Tail < 0 {
		return nil, fmt.Errorf("reading logs: %w: Tail %d is negative", ErrInvalidOptions, q.Tail)
	}
	files, err := listLogs(dir)
	if err != nil {
		return nil, fmt.Errorf("reading logs: %w", err)
	}
	services := q.Services
	if len(services) == 0 {
		for name := range files {
			services = append(services, name)
		}
		slices.Sort(services)
	}
	perService := make([][]Line, 0, len(services))
	for _, name := range services {
		if _, ok := files[name]; !ok {
			continue // also keeps names like "../x" away from the file system
		}
		lines, err := readService(dir, name, q)
		if err != nil {
			return nil, fmt.Errorf("reading logs of service %q: %w", name, err)
		}
		perService = append(perService, lines)
	}
	return merge(perService), nil
}

// listLogs maps each service in dir to the indexes of its rotated files,
// descending (oldest first).
// Services lists the services with logs in dir, sorted.
func Services(dir string) ([]string, error) {
	files, err := listLogs(dir)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(files)), nil
}

func listLogs(dir string) (map[string][]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := make(map[string][]int)
	for _, e := range entries {
		name, n, ok := parseLogName(e.Name())
		if !ok {
			continue
		}
		if n > 0 {
			files[name] = append(files[name], n)
		} else if _, seen := files[name]; !seen {
			files[name] = nil
		}
	}
	for _, idx := range files {
		slices.Sort(idx)
		slices.Reverse(idx)
	}
	return files, nil
}

// parseLogName splits "<service>.log" (n = 0) or "<service>.log.<n>".
func parseLogName(file string) (service string, n int, ok bool) {
	if name, ok := strings.CutSuffix(file, logSuffix); ok && validService(name) {
		return name, 0, true
	}
	i := strings.LastIndex(file, logSuffix+".")
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(file[i+len(logSuffix)+1:])
	if err != nil || n <= 0 || !validService(file[:i]) {
		return "", 0, false
	}
	return file[:i], n, true
}

// readService returns the selected lines of one service, oldest first.
func readService(dir, name string, q Query) ([]Line, error) {
	files, err := openSnapshot(dir, name)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var rev []Line // newest first
	done := false
	for _, f := range files {
		err := scanBackward(f, func(raw []byte) bool {
			l, ok := parseRecord(raw, name)
			if !ok {
				return true // not ours; skip
			}
			if !q.Since.IsZero() && l.Time.Before(q.Since) {
				done = true
				return false
			}
			rev = append(rev, l)
			if q.Tail > 0 && len(rev) >= q.Tail {
				done = true
				return false
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
	}
	slices.Reverse(rev)
	return rev, nil
}

// openSnapshot opens a service's files, newest first, such that no rotation
// happened while opening them: if <name>.log is not the file opened first
// by the end, a rotation intervened and it starts over. Open files keep
// their content across later renames.
func openSnapshot(dir, name string) ([]*os.File, error) {
	base := filepath.Join(dir, name+logSuffix)
	var files []*os.File
	for attempt := 0; ; attempt++ {
		for _, f := range files {
			f.Close()
		}
		files = files[:0]
		cur, curInfo, err := openIfExists(base)
		if err != nil {
			return nil, err
		}
		if cur != nil {
			files = append(files, cur)
		}
		all, err := listLogs(dir)
		if err != nil {
			return nil, err
		}
		rotated := all[name]
		for i := len(rotated) - 1; i >= 0; i-- { // .1, .2, … newest first
			f, _, err := openIfExists(base + "." + strconv.Itoa(rotated[i]))
			if err != nil {
				return nil, err
			}
			if f != nil {
				files = append(files, f)
			}
		}
		after, err := os.Stat(base)
		unchanged := (curInfo == nil && errors.Is(err, fs.ErrNotExist)) ||
			(curInfo != nil && err == nil && os.SameFile(curInfo, after))
		if unchanged || attempt == snapshotAttempts-1 {
			return files, nil
		}
	}
}

func openIfExists(path string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// scanBackward calls fn with each newline-terminated line of f, without the
// newline, last line first, until fn returns false. Bytes after the last
// newline (a line still being written) are skipped. It holds one chunk plus
// the line that spans chunks.
func scanBackward(f *os.File, fn func(line []byte) bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	pos := fi.Size()
	var carry []byte // the end of a line whose start is in an earlier chunk, with its '\n'
	trimmed := false // the unterminated tail, if any, is gone
	for pos > 0 {
		n := min(int64(readChunk), pos)
		pos -= n
		data := make([]byte, int(n)+len(carry))
		if _, err := f.ReadAt(data[:n], pos); err != nil {
			return err
		}
		copy(data[n:], carry)
		if !trimmed {
			i := bytes.LastIndexByte(data, '\n')
			if i < 0 {
				carry = nil
				continue
			}
			data, trimmed = data[:i+1], true
		}
		// data ends with '\n'; emit every line that starts in it.
		end := len(data)
		for {
			i := bytes.LastIndexByte(data[:end-1], '\n')
			if i < 0 {
				break
			}
			if !fn(data[i+1 : end-1]) {
				return nil
			}
			end = i + 1
		}
		carry = data[:end]
	}
	if len(carry) > 0 {
		fn(carry[:len(carry)-1])
	}
	return nil
}

// merge merges per-service lines, each oldest first, by time. Ties go to
// the earlier service, and each service's own order is kept even if its
// clock went back.
func merge(perService [][]Line) []Line {
	total := 0
	for _, ls := range perService {
		total += len(ls)
	}
	out := make([]Line, 0, total)
	next := make([]int, len(perService))
	for len(out) < total {
		best := -1
		for i, ls := range perService {
			if next[i] == len(ls) {
				continue
			}
			if best < 0 || ls[next[i]].Time.Before(perService[best][next[best]].Time) {
				best = i
			}
		}
		out = append(out, perService[best][next[best]])
		next[best]++
	}
	return out
}
