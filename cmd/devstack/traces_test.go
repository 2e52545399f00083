package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
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
