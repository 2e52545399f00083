package docker

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// A Dockerfile reader for layerdiff.go: just enough of BuildKit's parser to
// find the instructions of the stage built and the words of a COPY. What it
// cannot read as BuildKit does, it declines (a "why"), never guesses.

// dfInstruction is one instruction of a Dockerfile.
type dfInstruction struct {
	Cmd  string // the keyword, upper case
	Args string // the rest, continuation lines joined as BuildKit joins them
	Line int    // where it starts, from 1
}

// dfStage is one FROM and the instructions after it.
type dfStage struct {
	Name string // the AS name, lower case; "" when none
	Base string // the image (or stage) it starts from
	Ins  []dfInstruction
}

var (
	dfDirective    = regexp.MustCompile(`^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`)
	dfContinuation = regexp.MustCompile(`\\[ \t]*$`)
)

// parseDockerfile splits a Dockerfile into stages.
func parseDockerfile(data []byte) ([]dfStage, string) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	// Parser directives come first, as comments: a frontend of its own
	// (syntax=) may read COPY otherwise, and another escape character
	// changes what a line means.
	for _, ln := range lines {
		t := strings.TrimSpace(ln)
		if !strings.HasPrefix(t, "#") {
			break
		}
		m := dfDirective.FindStringSubmatch(t)
		if m == nil {
			continue
		}
		switch key := strings.ToLower(m[1]); {
		case key == "syntax":
			return nil, fmt.Sprintf("the Dockerfile names a frontend of its own (# syntax=%s)", m[2])
		case key == "escape" && m[2] != `\`:
			return nil, fmt.Sprintf("the Dockerfile sets another escape character (# escape=%s)", m[2])
		}
	}
	var (
		stages []dfStage
		cur    strings.Builder
		start  int
		open   bool // a continuation line is pending
	)
	flush := func() string {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		open = false
		if text == "" {
			return ""
		}
		cmd, args := text, ""
		if i := strings.IndexAny(text, " \t"); i >= 0 {
			cmd, args = text[:i], text[i+1:]
		}
		in := dfInstruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			stages = append(stages, parseFrom(in.Args))
			return ""
		}
		if len(stages) == 0 {
			if in.Cmd != "ARG" {
				return fmt.Sprintf("the Dockerfile has %s before its first FROM (line %d)", in.Cmd, in.Line)
			}
			return "" // a global ARG: COPY words with $ are declined anyway
		}
		st := &stages[len(stages)-1]
		st.Ins = append(st.Ins, in)
		return ""
	}
	for i, ln := range lines {
		trimmed := strings.TrimLeft(ln, " \t")
		if strings.HasPrefix(trimmed, "#") {
			continue // comments go, inside a continuation too
		}
		if strings.TrimSpace(ln) == "" {
			continue // BuildKit skips empty continuation lines too
		}
		if !open {
			start = i + 1
			ln = trimmed
		}
		if dfContinuation.MatchString(ln) {
			cur.WriteString(dfContinuation.ReplaceAllString(ln, ""))
			open = true
			continue
		}
		cur.WriteString(ln)
		if why := flush(); why != "" {
			return nil, why
		}
	}
	if why := flush(); why != "" {
		return nil, why
	}
	if len(stages) == 0 {
		return nil, "the Dockerfile has no FROM"
	}
	return stages, ""
}

// parseFrom reads `FROM [--platform=…] image [AS name]`.
func parseFrom(args string) dfStage {
	f := strings.Fields(args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--") {
		f = f[1:]
	}
	var st dfStage
	if len(f) > 0 {
		st.Base = f[0]
	}
	if len(f) >= 3 && strings.EqualFold(f[1], "as") {
		st.Name = strings.ToLower(f[2])
	}
	return st
}

// finalStage is the stage a build with target builds, and whether it
// starts from nothing (FROM scratch, not from another stage).
func finalStage(stages []dfStage, target string) (dfStage, bool, string) {
	i := len(stages) - 1
	if target != "" {
		i = -1
		for j, st := range stages {
			if st.Name == strings.ToLower(target) {
				i = j
			}
		}
		if i < 0 {
			return dfStage{}, false, fmt.Sprintf("the Dockerfile has no stage %q (build.target)", target)
		}
	}
	st := stages[i]
	scratch := st.Base == "scratch"
	for _, other := range stages[:i] {
		if other.Name != "" && other.Name == strings.ToLower(st.Base) {
			scratch = false
		}
	}
	return st, scratch, ""
}

// copyArgs is a COPY that takes only files of the build context.
type copyArgs struct {
	Srcs []string
	Dst  string
	Text string // as BuildKit writes it in the image history, without " # buildkit"
}

// parseCopy reads a COPY's arguments. It declines what makes the layer's
// content depend on more than the words and the context: flags (which the
// history leaves out: --from, --chown, --chmod, --link …), variables,
// wildcards, quotes and escapes (the shell lexer's), URLs and heredocs.
func parseCopy(in dfInstruction) (copyArgs, string) {
	at := fmt.Sprintf("COPY on line %d", in.Line)
	if strings.Contains(in.Args, "<<") {
		return copyArgs{}, at + " has a heredoc"
	}
	var words []string
	if strings.HasPrefix(in.Args, "[") {
		if err := json.Unmarshal([]byte(in.Args), &words); err != nil {
			return copyArgs{}, at + " is not a JSON array of strings"
		}
	} else {
		words = strings.Fields(in.Args)
	}
	if len(words) < 2 {
		return copyArgs{}, at + " names no source or no destination"
	}
	for i, w := range words {
		switch {
		case strings.HasPrefix(w, "-"):
			return copyArgs{}, fmt.Sprintf("%s has flags (%s), which the image history leaves out", at, w)
		case strings.Contains(w, "$"):
			return copyArgs{}, fmt.Sprintf("%s uses a variable (%s)", at, w)
		case w == "" || strings.ContainsAny(w, " \t\n\"'\\"):
			return copyArgs{}, fmt.Sprintf("%s has a quoted, escaped or empty word (%q)", at, w)
		case strings.Contains(w, "://"):
			return copyArgs{}, fmt.Sprintf("%s copies from a URL (%s)", at, w)
		case i < len(words)-1 && strings.ContainsAny(w, "*?["):
			return copyArgs{}, fmt.Sprintf("%s has a wildcard (%s)", at, w)
		}
	}
	return copyArgs{
		Srcs: words[:len(words)-1],
		Dst:  words[len(words)-1],
		Text: "COPY " + strings.Join(words, " "),
	}, ""
}
