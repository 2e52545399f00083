// Command tracesfill writes spans into a span store, as the proxy would
// record them, for bench/traces.sh: traces of the shop's shape (five
// hops each, with headers), started a millisecond apart an hour ago.
//
//	go run ./bench/tracesfill -spans 100000 DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

func main() {
	n := flag.Int("spans", 100_000, "how many spans to write (five per trace)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tracesfill [-spans N] DIR (a span store's directory, such as <state dir>/<project>/spans)")
		os.Exit(2)
	}
	if err := fill(flag.Arg(0), *n); err != nil {
		fmt.Fprintln(os.Stderr, "tracesfill:", err)
		os.Exit(1)
	}
}

func fill(dir string, n int) error {
	st, err := store.Open(dir, store.Options{MaxSpans: n})
	if err != nil {
		return err
	}
	hops := []string{"gateway", "orders", "inventory", "payments", "fraud"}
	start := time.Now().Add(-time.Hour)
	for i := range n / len(hops) {
		tid := trace.NewTraceID(nil)
		var parent trace.SpanID
		for j, callee := range hops {
			sp := trace.NewSpan()
			sp.TraceID, sp.SpanID, sp.ParentID = tid, trace.NewSpanID(nil), parent
			parent = sp.SpanID
			sp.Callee, sp.Protocol, sp.Method, sp.Route, sp.Status = callee, "http", "GET", "/"+callee, 200
			if j > 0 {
				sp.Caller = hops[j-1]
			}
			sp.Start = start.Add(time.Duration(i)*time.Millisecond + time.Duration(j)*100*time.Microsecond)
			sp.Duration = time.Duration(len(hops)-j) * time.Millisecond
			sp.RequestID = fmt.Sprintf("req-%d", i)
			sp.ReqHeaders = []trace.Header{{Name: "Host", Value: "localhost"}, {Name: "User-Agent", Value: "curl/8"},
				{Name: "Traceparent", Value: "00-" + tid.String() + "-" + parent.String() + "-01"}}
			st.Record(sp)
		}
		if i%1000 == 999 {
			st.Flush() // the store's buffer holds 8192 spans
		}
	}
	if err := st.Close(); err != nil {
		return err
	}
	fmt.Printf("%+v\n", st.Stats())
	return nil
}
