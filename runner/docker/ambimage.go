package docker

import (
	"archive/tar"
	"cmp"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// The ambassador image holds the running devstack executable and nothing
// else but what the dynamic loader needs to start it (FROM scratch):
//
//	/devstack                              the binary, as `devstack ambassador`
//	/lib64/ld-linux-x86-64.so.2            its PT_INTERP, when dynamically linked
//	/lib/x86_64-linux-gnu/libc.so.6 …      its DT_NEEDED libraries, transitively
//
// It is imported through the engine from a tar made on the fly (no
// registry, no builder), tagged devstack-ambassador:<sha256 of the binary>
// and made once per binary: a later run of the same devstack reuses it.
const (
	ambassadorRepo = "devstack-ambassador"
	ambassadorBin  = "/devstack"
	roleAmbassador = "ambassador" // the value of LabelRole
)

// errAmbassadorUnsupported wraps the reasons an ambassador cannot be made
// from this executable at all; Start then runs services without one.
var errAmbassadorUnsupported = errors.New("no ambassador image can be made from this devstack executable")

// ambassadorImage returns the ambassador image's tag and ID, importing it
// on first use. A failure that retrying cannot fix (the executable is not
// a Linux ELF file for the engine's architecture) is remembered.
func (b *Backend) ambassadorImage(ctx context.Context) (ref, id string, err error) {
	b.ambMu.Lock()
	defer b.ambMu.Unlock()
	if b.ambErr != nil {
		return "", "", b.ambErr
	}
	if b.ambID != "" {
		return b.ambRef, b.ambID, nil
	}
	ref, id, err = b.makeAmbassadorImage(ctx)
	if errors.Is(err, errAmbassadorUnsupported) {
		b.ambErr = err
	}
	if err != nil {
		return "", "", err
	}
	b.ambRef, b.ambID = ref, id
	return ref, id, nil
}

// devstackRootfs is rootfsFor the devstack executable (ambExe, else the
// running one), on the engine's platform, with the executable's path.
func (b *Backend) devstackRootfs(ctx context.Context) (string, []rootFile, error) {
	exe := b.ambExe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return "", nil, fmt.Errorf("finding the devstack executable: %w", err)
		}
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	v, err := b.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("asking the engine its platform: %w", err)
	}
	files, err := rootfsFor(exe, v.Os, v.Arch)
	return exe, files, err
}

func (b *Backend) makeAmbassadorImage(ctx context.Context) (string, string, error) {
	exe, files, err := b.devstackRootfs(ctx)
	if err != nil {
		return "", "", err
	}
	sum, err := fileSum(exe)
	if err != nil {
		return "", "", err
	}
	ref := ambassadorRepo + ":" + sum[:12]
	if img, err := b.cli.ImageInspect(ctx, ref); err == nil {
		return ref, img.ID, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", "", fmt.Errorf("inspecting image %s: %w", ref, err)
	}

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeRootfs(pw, files)) }()
	defer pr.Close() // unblocks the writer when the engine stops reading early
	res, err := b.cli.ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, ref, client.ImageImportOptions{
		Message: "devstack ambassador from " + exe,
		Changes: []string{
			`ENTRYPOINT ["` + ambassadorBin + `", "ambassador"]`,
			// The libraries are where the host has them; the loader of a
			// scratch image has no ld.so.cache to find them with.
			"ENV LD_LIBRARY_PATH=" + strings.Join(libDirs(files), ":"),
			// Names are resolved by Go, never through NSS modules that the
			// image lacks.
			"ENV GODEBUG=netdns=go",
			"LABEL " + LabelRole + "=" + roleAmbassador,
		},
	})
	if err != nil {
		return "", "", fmt.Errorf("importing image %s: %w", ref, err)
	}
	defer res.Close()
	var failure string
	err = eachMessage(res, func(m jsonstream.Message) {
		if m.Error != nil {
			failure = m.Error.Message
		}
	})
	if failure != "" {
		return "", "", fmt.Errorf("importing image %s: %s", ref, failure)
	}
	if err != nil {
		return "", "", fmt.Errorf("importing image %s: %w", ref, err)
	}
	img, err := b.cli.ImageInspect(ctx, ref)
	if err != nil {
		return "", "", fmt.Errorf("inspecting image %s after importing it: %w", ref, err)
	}
	return ref, img.ID, nil
}

// rootFile is one file of the image: its path there and where its bytes
// come from on the host (symlinks resolved).
type rootFile struct {
	path, src string
	mode      int64
}

// rootfsFor lists the files of the ambassador image for executable exe:
// the binary itself, its interpreter, and the libraries it needs,
// transitively, each at the path where the loader looks for it. goos and
// goarch are the engine's platform, which exe must be built for.
func rootfsFor(exe, goos, goarch string) ([]rootFile, error) {
	if goos != "linux" {
		return nil, fmt.Errorf("the engine runs %s containers: %w", goos, errAmbassadorUnsupported)
	}
	f, err := elf.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("%s is not a Linux executable (%w): %w", exe, err, errAmbassadorUnsupported)
	}
	defer f.Close()
	if a := elfArch(f.Machine); a != goarch {
		return nil, fmt.Errorf("%s is built for %s, the engine runs %s: %w", exe, cmp.Or(a, f.Machine.String()), goarch, errAmbassadorUnsupported)
	}
	files := []rootFile{{path: ambassadorBin, src: exe, mode: 0o755}}
	interp, err := interpreter(f)
	if err != nil {
		return nil, fmt.Errorf("reading the interpreter of %s: %w", exe, err)
	}
	if interp == "" {
		return files, nil // static: the binary is all there is
	}
	src, err := filepath.EvalSymlinks(interp)
	if err != nil {
		return nil, fmt.Errorf("%s needs the loader %s: %w", exe, interp, err)
	}
	files = append(files, rootFile{path: interp, src: src, mode: 0o755})
	seen := map[string]bool{}
	queue := []*elf.File{f}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		needed, err := cur.ImportedLibraries()
		if err != nil {
			return nil, fmt.Errorf("reading the libraries %s needs: %w", exe, err)
		}
		for _, lib := range needed {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			at, src, lf, err := findLib(lib, searchDirs(cur, goarch), f)
			if err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", exe, lib, err)
			}
			defer lf.Close()
			if src != files[1].src { // libc names the loader too
				files = append(files, rootFile{path: at, src: src, mode: 0o755})
			}
			queue = append(queue, lf)
		}
	}
	return files, nil
}

// interpreter is f's PT_INTERP, or "" for a static executable.
func interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\x00"), nil
	}
	return "", nil
}

// searchDirs are where the loader looks for f's libraries: its RUNPATH
// (or RPATH), then the standard directories, multiarch first.
func searchDirs(f *elf.File, goarch string) []string {
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for d := range strings.SplitSeq(v, ":") {
				if d != "" && !strings.Contains(d, "$") { // $ORIGIN and co: not for a host binary
					dirs = append(dirs, d)
				}
			}
		}
	}
	if t := multiarch(goarch); t != "" {
		dirs = append(dirs, "/lib/"+t, "/usr/lib/"+t)
	}
	return append(dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib")
}

// multiarch is the Debian-style library directory name of an architecture.
func multiarch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	case "386":
		return "i386-linux-gnu"
	case "arm":
		return "arm-linux-gnueabihf"
	case "ppc64le":
		return "powerpc64le-linux-gnu"
	case "riscv64", "s390x":
		return goarch + "-linux-gnu"
	}
	return ""
}

// findLib finds library name in dirs, skipping files of another class or
// machine than exe (a 32-bit libc in /usr/lib32). It returns the path to
// put it at, the file its bytes come from, and the library opened.
func findLib(name string, dirs []string, exe *elf.File) (string, string, *elf.File, error) {
	if strings.Contains(name, "/") {
		dirs, name = []string{path.Dir(name)}, path.Base(name)
	}
	for _, d := range dirs {
		at := path.Join(d, name)
		src, err := filepath.EvalSymlinks(at)
		if err != nil {
			continue
		}
		lf, err := elf.Open(src)
		if err != nil {
			continue
		}
		if lf.Class != exe.Class || lf.Machine != exe.Machine {
			lf.Close()
			continue
		}
		return at, src, lf, nil
	}
	return "", "", nil, fmt.Errorf("not found in %s", strings.Join(dirs, ", "))
}

// libDirs are the directories the image has libraries in.
func libDirs(files []rootFile) []string {
	var dirs []string
	for _, f := range files[1:] {
		if d := path.Dir(f.path); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// writeRootfs writes files as a tar, parent directories first.
func writeRootfs(w io.Writer, files []rootFile) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{"/": true}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.path); !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		slices.Reverse(parents)
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
				return err
			}
		}
		if err := addRootFile(tw, f); err != nil {
			return fmt.Errorf("adding %s: %w", f.src, err)
		}
	}
	return tw.Close()
}

func addRootFile(tw *tar.Writer, f rootFile) error {
	src, err := os.Open(f.src)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, Size: fi.Size(), Typeflag: tar.TypeReg, ModTime: fi.ModTime()}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, src)
	return err
}

// fileSum is the hex sha256 of a file's content.
func fileSum(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// elfArch is the Go name of an ELF machine, "" when Go has none.
func elfArch(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_386:
		return "386"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_RISCV:
		return "riscv64"
	case elf.EM_PPC64:
		return "ppc64le"
	case elf.EM_S390:
		return "s390x"
	}
	return ""
}
