package holder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// apply makes a start's changes to the container's files: first remove,
// then place. Removing first lets a directory of the old image become a
// file or a link of the new one (the rename over it would fail), and
// keeps a removal of a parent from undoing a file just placed in it. The
// service is not running yet, so nobody sees the steps in between. The
// first failure stops it; its error names the path at fault.
func apply(place []Place, remove []string) error {
	for _, p := range remove {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("removing %q: not an absolute path", p)
		}
		if filepath.Clean(p) == "/" {
			return errors.New("removing /: refused")
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	for _, f := range place {
		if err := placeFile(f); err != nil {
			return fmt.Errorf("placing %s: %w", f.Dst, err)
		}
	}
	return nil
}

// placeFile puts f.Dst in place with one rename, so that nothing ever
// sees it half written, whatever was there before.
func placeFile(f Place) error {
	if !filepath.IsAbs(f.Dst) {
		return fmt.Errorf("destination %q is not an absolute path", f.Dst)
	}
	if !filepath.IsAbs(f.Src) {
		return fmt.Errorf("source %q is not an absolute path", f.Src)
	}
	dst := filepath.Clean(f.Dst)
	if dst == "/" {
		return errors.New("cannot replace /")
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var tmp string
	var err error
	if f.Link {
		tmp, err = tempLink(f.Src, dst)
	} else {
		tmp, err = tempCopy(f.Src, dst, f.Mode)
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// tempName is a name beside dst that no one else uses: hidden, and short
// enough for NAME_MAX whatever dst's length.
func tempName(dst string) string {
	base := filepath.Base(dst)
	if len(base) > 100 {
		base = base[:100]
	}
	return filepath.Join(filepath.Dir(dst), "."+base+".devstack-"+strconv.FormatUint(rand.Uint64(), 36))
}

// tempLink makes a symlink to src beside dst. src must exist: a dangling
// link would only fail later, as a puzzling error of the service.
func tempLink(src, dst string) (string, error) {
	if _, err := os.Stat(src); err != nil {
		return "", err
	}
	for {
		tmp := tempName(dst)
		err := os.Symlink(src, tmp)
		if errors.Is(err, fs.ErrExist) {
			continue // a name taken: draw another
		}
		return tmp, err
	}
}

// tempCopy copies src beside dst, with mode (src's when zero).
func tempCopy(src, dst string, mode fs.FileMode) (tmp string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("source %s is not a regular file (%s)", src, fi.Mode().Type())
	}
	if mode == 0 {
		mode = fi.Mode()
	}
	mode &= fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	out, err := os.OpenFile(tempName(dst), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = out.Close()
			_ = os.Remove(out.Name())
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return "", fmt.Errorf("copying %s: %w", src, err)
	}
	// After the bytes: a write by a non-root owner clears set-id bits. And
	// explicitly, since the umask would narrow the mode OpenFile was given.
	if err := out.Chmod(mode); err != nil {
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return out.Name(), nil
}
