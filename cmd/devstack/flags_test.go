package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// A mistyped flag value gets an error that names the flag and the value,
// says what the value should look like and where the flags are described,
// and not the parser's own words.
func TestBadFlagValuesSayWhatToWrite(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"traces", "--status", "abc"}, "--status \"abc\": want an HTTP status (404), a class (4xx, 5xx) or a range (500-504)"},
		{[]string{"traces", "--status", "9999"}, "--status \"9999\": want an HTTP status (404), a class (4xx, 5xx) or a range (500-504), within 100 to 599"},
		{[]string{"traces", "--status", "6xx"}, "--status \"6xx\": want an HTTP status"},
		{[]string{"traces", "--status", "504-500"}, "--status \"504-500\": the range ends before it starts"},
		{[]string{"traces", "--min-duration", "5"}, "--min-duration \"5\": want a duration with a unit, like 200ms, 2s or 5m"},
		{[]string{"traces", "--min-duration", "-1s"}, "--min-duration -1s: want a duration of zero or more"},
		{[]string{"traces", "--errors=maybe"}, "--errors \"maybe\": want true or false"},
		{[]string{"traces", "-n", "ten"}, "--limit \"ten\": want a whole number"},
		{[]string{"up", "-d", "--wait-timeout", "-1s"}, "--wait-timeout -1s: want a duration of zero (no limit) or more"},
		{[]string{"up", "-d", "--wait-timeout", "-5"}, "--wait-timeout -5s: want a duration of zero (no limit) or more"},
		{[]string{"up", "-d", "--wait-timeout", "soon"}, "--wait-timeout \"soon\": want seconds, as docker compose takes them (60), or a duration with a unit (2m)"},
		{[]string{"traces", "-n", "-5"}, "--limit -5: want how many traces to list"},
		// docker compose's -t takes whole seconds, and so does devstack's.
		{[]string{"stop", "-t", "1.5"}, "--timeout \"1.5\": want whole seconds, as docker compose takes them (-t 0: SIGKILL right after the stop signal, -t 5: five seconds to stop) (see `devstack stop --help`)"},
		{[]string{"stop", "-t", "2s"}, "--timeout \"2s\": want whole seconds without a unit, as docker compose takes them: -t 2"},
		{[]string{"restart", "--timeout", "1m"}, "--timeout \"1m\": want whole seconds without a unit, as docker compose takes them: -t 60"},
		{[]string{"down", "-t", "-1"}, "--timeout \"-1\": want 0 or more seconds; 0 sends SIGKILL right after the stop signal (see `devstack down --help`)"},
		{[]string{"up", "--timeout=500ms"}, "--timeout \"500ms\": want whole seconds, as docker compose takes them"},
		{[]string{"start", "-t", "1"}, "unknown shorthand flag: 't' in -t"}, // compose's start has none either
		{[]string{"traces", "export", "-n", "-5"}, "--limit -5: want how many recent traces to export"},
		{[]string{"traces", "--bogus"}, "unknown flag: --bogus (see `devstack traces --help`)"},
		{[]string{"trace", "--width", "wide", "0af7651916cd43dd8448eb211c80319c"}, "--width \"wide\": want a whole number (see `devstack trace --help`)"},
		// docker compose's order: the project's flags before the command.
		{[]string{"up", "-f", "other.yaml"}, "the project's flags (-f, -p, --profile, --env-file, --project-directory) go before the command, e.g. `devstack -f other.yaml up`"},
		{[]string{"ps", "--project-name", "x"}, "unknown flag: --project-name: the project's flags"},
		{[]string{"down", "-x"}, "unknown shorthand flag: 'x' in -x (see `devstack down --help`)"},
		{[]string{"trace"}, "trace takes one trace id"},
		{[]string{"traces", "export", "123"}, "trace id \"123\": want 32 hex digits"},
		{[]string{"trace", "00000000000000000000000000000000"}, "all zeros is never a trace id"},
		{[]string{"trace", "--width", "5", "0af7651916cd43dd8448eb211c80319c"}, "--width 5: want 60 to 1000 columns"},
		{[]string{"trace", "--width", "2000000000", "0af7651916cd43dd8448eb211c80319c"}, "--width 2000000000: want 60 to 1000 columns"},
		{[]string{"traces", "--since", "-1h"}, "--since -1h: want how long ago, e.g. 10m"},
		{[]string{"logs", "--since", "2099-01-01T00:00:00Z"}, "--since 2099-01-01T00:00:00Z: that is in the future"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		root := newRootCmd(&out, &errb)
		root.SetArgs(tc.args)
		err := root.Execute()
		if err == nil {
			t.Errorf("devstack %s: no error", strings.Join(tc.args, " "))
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "strconv") || strings.Contains(err.Error(), "time: ") {
			t.Errorf("devstack %s:\n got %s\nwant %s", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// -t/--timeout reads as docker compose's: whole seconds, 0 included; and
// when it is not given, the stop is the file's (no grace at all).
func TestStopTimeoutFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the grace, "" for none
	}{
		{nil, ""},
		{[]string{"-t", "0"}, "0s"},
		{[]string{"-t", "5"}, "5s"},
		{[]string{"--timeout", "30"}, "30s"},
		{[]string{"--timeout=2"}, "2s"},
		{[]string{"-t3"}, "3s"},
	} {
		for _, name := range []string{"stop", "restart", "down", "up"} {
			var cmd *cobra.Command
			for _, c := range newRootCmd(io.Discard, io.Discard).Commands() {
				if c.Name() == name {
					cmd = c
				}
			}
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Errorf("%s %v: %v", name, tc.args, err)
				continue
			}
			o := cmd.Flags().Lookup("timeout").Value.(*stopTimeout).options()
			got := ""
			if o.Grace != nil {
				got = o.Grace.String()
			}
			if got != tc.want {
				t.Errorf("%s %v: grace %q, want %q", name, tc.args, got, tc.want)
			}
		}
	}
}

// Trace ids are read as users copy them: any case, and 64-bit B3 ids
// (16 hex digits) as devstack stores them, the high half zero.
func TestParseTraceArg(t *testing.T) {
	for in, want := range map[string]string{
		"0AF7651916CD43DD8448EB211C80319C": "0af7651916cd43dd8448eb211c80319c",
		"64fe8b2a57d3eff7":                 "000000000000000064fe8b2a57d3eff7",
	} {
		id, err := parseTraceArg(in)
		if err != nil || id.String() != want {
			t.Errorf("parseTraceArg(%q) = %s, %v; want %s", in, id, err, want)
		}
	}
}
