package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrStateDirNotPrivate is returned when a project's state directory, or
// the directory holding it, can be written by another user: whoever can
// write there can replace the control socket or the token, or plant a
// symlink where the supervisor writes its log.
var ErrStateDirNotPrivate = errors.New("state directory is not private")

// EnsurePrivate makes dir, a project's state directory, if it is missing
// (mode 0700, its parents too), and checks that it is private whoever
// made it: a directory of the current user that others can only read or
// enter is repaired (chmod 0700: nobody else could have put anything in
// it); one that another user owns, or that others can write, is refused,
// with the fix in the message, since what is inside cannot be trusted.
// The directory holding dir may be shared (as /tmp is) only if it is
// sticky, so that nobody else can rename dir away.
func EnsurePrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	uid := os.Geteuid()
	parent := filepath.Dir(dir)
	if pi, err := os.Stat(parent); err == nil {
		if st, ok := pi.Sys().(*syscall.Stat_t); ok && pi.Mode()&0o002 != 0 && pi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("%w: %s, which holds %s, can be written by every user and is not sticky: another user could swap the state directory; "+
				"run `chmod o-w %s` (or `chmod +t %s`), or set DEVSTACK_STATE_DIR to a directory of your own", ErrStateDirNotPrivate, parent, dir, parent, parent)
		} else if ok && int(st.Uid) != uid && st.Uid != 0 && pi.Mode()&0o022 != 0 && pi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("%w: %s, which holds %s, belongs to user %d and others can write it; set DEVSTACK_STATE_DIR to a directory of your own",
				ErrStateDirNotPrivate, parent, dir, st.Uid)
		}
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("checking state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is a %s, not a directory; remove it (`rm %s`) and run the command again",
			ErrStateDirNotPrivate, dir, fi.Mode().Type(), dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("%w: %s belongs to user %d, not to you (user %d); another user could read your stack's token and control it: "+
			"remove it (`sudo rm -r %s`) or set DEVSTACK_STATE_DIR to a directory of your own", ErrStateDirNotPrivate, dir, st.Uid, uid, dir)
	}
	if fi.Mode()&0o022 != 0 {
		return fmt.Errorf("%w: %s can be written by other users (mode %v), so what is in it cannot be trusted; "+
			"check its content and run `chmod 700 %s`, or remove it (`rm -r %s`)", ErrStateDirNotPrivate, dir, fi.Mode().Perm(), dir, dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("making state directory %s private: %w", dir, err)
		}
	}
	return nil
}
