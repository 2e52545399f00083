package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

func TestPrintTracesShowsTheQuery(t *testing.T) {
	var buf bytes.Buffer
	list := []trace.Summary{
		{Root: "gateway", Method: "GET", Route: "/checkout", Query: "region=EU", Status: 500, Start: time.Now(), Spans: 4, Ambiguous: 2},
		{Root: "gateway", Method: "GET", Route: "/checkout", Status: 200, Start: time.Now(), Spans: 4},
	}
	if err := printTraces(&buf, list); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if !strings.Contains(lines[1], "GET /checkout?region=EU → 500") || strings.Contains(lines[2], "?") {
		t.Errorf("the query must tell the two traces apart:\n%s", buf.String())
	}
	if f := strings.Fields(lines[0]); f[len(f)-1] != "GUESSED" {
		t.Errorf("no GUESSED column: %q", lines[0])
	}
	if f := strings.Fields(lines[1]); f[len(f)-1] != "2" {
		t.Errorf("guessed hops not counted: %q", lines[1])
	}
}

// A trace is found by a unique prefix of its id, as git finds a commit;
// an ambiguous prefix lists the traces it could mean, from the live
// store's log and from the summary file alike.
func TestTracePrefix(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]trace.TraceID{}
	for i, hex := range []string{"abcd1111000000000000000000000001", "abcd2222000000000000000000000002", "ef010000000000000000000000000003"} {
		id, ok := trace.ParseTraceID(hex)
		if !ok {
			t.Fatal(hex)
		}
		ids[hex] = id
		st.Record(&trace.Span{TraceID: id, SpanID: trace.NewSpanID(nil), Callee: "gateway", Method: "GET", Route: fmt.Sprintf("/r%d", i),
			Status: 200, GRPCStatus: -1, Start: time.Now().Add(time.Duration(i) * time.Millisecond), Duration: time.Millisecond})
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, viaSummary := range []bool{true, false} {
		src, err := openDisk(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		if (src.summary != nil) != viaSummary {
			if viaSummary {
				t.Fatal("no summary file after Close")
			}
			src.summary = nil // the replayed log, this time
		}
		ctx := t.Context()
		if id, err := resolvePrefix(ctx, src, "abcd1"); err != nil || id != ids["abcd1111000000000000000000000001"] {
			t.Errorf("unique prefix: %s, %v", id, err)
		}
		if id, err := resolvePrefix(ctx, src, "ef01"); err != nil || id != ids["ef010000000000000000000000000003"] {
			t.Errorf("unique prefix: %s, %v", id, err)
		}
		_, err = resolvePrefix(ctx, src, "abcd")
		if err == nil || !strings.Contains(err.Error(), "ambiguous") || !strings.Contains(err.Error(), "abcd1111000000000000000000000001  gateway GET /r0") ||
			!strings.Contains(err.Error(), "abcd2222000000000000000000000002  gateway GET /r1") {
			t.Errorf("ambiguous prefix: %v", err)
		}
		if _, err := resolvePrefix(ctx, src, "ffff"); err == nil || !strings.Contains(err.Error(), `no trace id starts with "ffff"`) {
			t.Errorf("unknown prefix: %v", err)
		}
		src.Close()
	}
	for in, want := range map[string]bool{"abcd": true, "ABCD1": true, "abc": false, "abcdef12": true, "abcdefgh": false, "0123456789abcdef": false, "xyz1": false, strings.Repeat("a", 32): false} {
		if _, got := traceIDPrefix(in); got != want {
			t.Errorf("traceIDPrefix(%q) = %v", in, got)
		}
	}
}

func TestWaterfallWidthFollowsTheTerminal(t *testing.T) {
	for _, c := range []struct {
		flag  int
		given bool
		term  int
		want  int
	}{
		{100, false, 0, 100},   // not a terminal: the default
		{100, false, 160, 160}, // a terminal: its width
		{100, false, 40, 60},   // too narrow: the least that draws
		{100, false, 5000, 1000},
		{120, true, 160, 120}, // --width wins
	} {
		if got := waterfallWidth(c.flag, c.given, c.term); got != c.want {
			t.Errorf("waterfallWidth(%d, %v, %d) = %d, want %d", c.flag, c.given, c.term, got, c.want)
		}
	}
}
