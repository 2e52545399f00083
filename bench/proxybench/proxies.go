package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

// Every proxy measured runs in a process of its own (-serve-proxy), as
// nginx does: a proxy sharing the bench's process would share its
// collector and its CPU with the others and with the latency client.
// With all three in the bench's process, devstack's rounds at 64 B and 32
// connections came out at 0.76–0.85x nginx; with devstack alone there, in
// runs interleaved with those, at 0.94–0.96x.

// serveProxy serves kind on listen in front of upstream until SIGTERM.
// devstack's kinds record into a span store in dir (or nowhere, with
// norec), and report what it recorded on the way out.
func serveProxy(kind, listen, upstream, dir string, norec bool, prof profiles) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if prof.mem != "" {
		runtime.MemProfileRate = 4096 // fine enough to see a few bytes a request
		defer prof.writeMem()
	}
	if prof.cpu != "" {
		f, err := os.Create(prof.cpu)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	switch kind {
	case "httputil":
		// A minimal httputil.ReverseProxy with a tuned transport.
		u, err := url.Parse("http://" + upstream)
		if err != nil {
			return err
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: rp}
		go srv.Serve(l)
		<-ctx.Done()
		return srv.Close()
	case "devstack", "devstack-goroutines":
	default:
		return fmt.Errorf("unknown proxy %q", kind)
	}
	runtime.GOMAXPROCS(proxy.SpareP()) // as the supervisor does
	var rec trace.Recorder = discard{}
	var st *store.Store
	if !norec {
		var err error
		st, err = store.Open(filepath.Join(dir, "spans"), store.Options{})
		if err != nil {
			return err
		}
		rec = st
	}
	// devstack-goroutines is the same proxy with every request on the
	// goroutine path (no event loop), to show what the loop is worth.
	ds := proxy.New(proxy.Options{Recorder: rec, NoEventLoop: kind == "devstack-goroutines"})
	if err := ds.SetRoutes([]proxy.Route{{Service: "upstream", Listen: listen, Upstream: upstream, Protocol: proxy.ProtoAuto}}); err != nil {
		return err
	}
	<-ctx.Done()
	ds.Close()
	if st != nil {
		err := st.Close()
		fmt.Fprintf(os.Stderr, "%s: spans recorded: %+v\n", kind, st.Stats())
		return err
	}
	return nil
}

// profiles are the files a proxy process writes its profiles to ("" for none).
type profiles struct{ cpu, mem string }

// writeMem writes the allocation profile: every allocation since the
// start, one sampled per 4 KiB allocated (see -sample_index in pprof).
func (p profiles) writeMem() {
	f, err := os.Create(p.mem)
	if err != nil {
		fmt.Fprintln(os.Stderr, "memprofile:", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "memprofile:", err)
	}
}

type discard struct{}

func (discard) Record(*trace.Span) {}
