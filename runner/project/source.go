package project

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	yaml4 "go.yaml.in/yaml/v4"
	"gopkg.in/yaml.v3"
)

// sources holds our own yaml.v3 parse of every file the load reads (the -f
// files plus what they include or extend). compose-go's errors and its
// merged model carry no positions, so we parse the files a second time to
// turn a key path into file:line, and to report syntax errors with a line.
type sources struct {
	workDir string // for display paths
	// files in search order: the top-level files last-first (a later -f
	// overrides an earlier one, so it is the likelier culprit), then the
	// included and extended files in discovery order.
	files []*source
	main  string        // the first -f file, absolute
	env   types.Mapping // for interpolating include/extends paths and ports
}

type source struct {
	path string       // absolute
	docs []*yaml.Node // document nodes; compose accepts several per file
}

// parseSources parses the top-level files and, transitively, the files
// they include or extend. A file that fails to parse is an *Error with the
// line; a referenced file that does not exist is left for compose-go to
// report, since it knows the resolution rules (remote includes etc.).
func parseSources(workDir string, files []string, env types.Mapping) (*sources, error) {
	s := &sources{workDir: workDir, env: env, main: files[0]}
	seen := map[string]bool{}
	var top, rest []*source
	queue := slices.Clone(files)
	for i := 0; i < len(queue); i++ {
		path := queue[i]
		if seen[path] || path == "-" { // stdin: compose-go reads it; no positions
			continue
		}
		seen[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			if i < len(files) {
				return nil, &Error{File: s.display(path), Msg: fmt.Sprintf("cannot read the file (%s); check the -f path", errText(err)), Err: ErrNoFile}
			}
			continue
		}
		src := &source{path: path}
		if err := src.parse(data); err != nil {
			return nil, s.syntaxError(path, len(strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")), err)
		}
		if i < len(files) {
			top = append(top, src)
		} else {
			rest = append(rest, src)
		}
		queue = append(queue, s.references(src)...)
	}
	slices.Reverse(top)
	s.files = append(top, rest...)
	return s, nil
}

// parse checks data with the YAML parser compose-go uses (so "is this valid
// YAML" gets compose's answer, and the error its problem position), then
// builds the yaml.v3 node trees used for positions. Should yaml.v3 reject
// what compose's parser accepts, the file just has no positions.
func (src *source) parse(data []byte) error {
	dec4 := yaml4.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml4.Node
		err := dec4.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			return nil
		}
		src.docs = append(src.docs, &doc)
	}
}

// yamlMarkRE matches the "line N[, column M]: " marks in a parse error.
var yamlMarkRE = regexp.MustCompile(`line (\d+)(?:, column \d+)?: `)

// syntaxError positions a parse error. The message may hold a context mark
// ("while parsing a block mapping at line 1, column 3: ") before the
// problem's mark; the last mark is the problem's. go.yaml.in/yaml/v4 prints
// parser errors' lines 0-based and scanner errors' 1-based (its scanner adds
// one, its parser does not) and keeps both types internal, hence the check
// of the type's name; the err_bad_yaml goldens catch a change.
func (s *sources) syntaxError(path string, lines int, err error) error {
	e := &Error{File: s.display(path), Err: ErrSyntax}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if all := yamlMarkRE.FindAllStringSubmatchIndex(msg, -1); all != nil {
		line := func(m []int) int {
			n, _ := strconv.Atoi(msg[m[2]:m[3]])
			if reflect.TypeOf(err).Name() == "ParserError" {
				n++
			}
			return n
		}
		last := all[len(all)-1]
		e.Line = line(last)
		// A problem at the end of the file (an unclosed [ or {) is better
		// shown where its context began.
		if e.Line > lines && len(all) > 1 {
			e.Line = line(all[0])
		}
		msg = msg[last[1]:]
	}
	e.Msg = fmt.Sprintf("invalid YAML: %s; fix the syntax there (check indentation, colons and quotes)", msg)
	return e
}

// references lists the local files src includes (include:) or extends
// (services.*.extends.file), as absolute paths.
func (s *sources) references(src *source) []string {
	dir := filepath.Dir(src.path)
	var out []string
	add := func(n *yaml.Node) {
		if n == nil || n.Kind != yaml.ScalarNode || n.Value == "" {
			return
		}
		p := s.interpolate(n.Value)
		if strings.Contains(p, "://") {
			return // remote (git, oci): compose-go's business
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		out = append(out, filepath.Clean(p))
	}
	for _, doc := range src.docs {
		root := docRoot(doc)
		if inc := mapValue(root, "include"); inc != nil && inc.Kind == yaml.SequenceNode {
			for _, item := range inc.Content {
				if item.Kind == yaml.ScalarNode {
					add(item)
					continue
				}
				path := mapValue(item, "path")
				if path != nil && path.Kind == yaml.SequenceNode {
					for _, p := range path.Content {
						add(p)
					}
				} else {
					add(path)
				}
			}
		}
		services := mapValue(root, "services")
		if services == nil || services.Kind != yaml.MappingNode {
			continue
		}
		for i := 1; i < len(services.Content); i += 2 {
			add(mapValue(mapValue(services.Content[i], "extends"), "file"))
		}
	}
	return out
}

// interpolate substitutes variables the way compose does, without warning:
// the load itself reports unset variables.
func (s *sources) interpolate(v string) string {
	out, err := template.SubstituteWithOptions(v, func(k string) (string, bool) {
		val, ok := s.env[k]
		return val, ok
	}, template.WithoutLogging)
	if err != nil {
		return v
	}
	return out
}

// display is path relative to the working directory when it lies below it.
func (s *sources) display(path string) string {
	if rel, err := filepath.Rel(s.workDir, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

// locate finds the key at path (e.g. services, web, ports, 0) and returns the
// display file and its line. It falls back to the deepest prefix of path that
// exists, and to the first file with line 0 when nothing matches, so an error
// always names a file.
func (s *sources) locate(path ...string) (string, int) {
	bestFile, bestLine, bestDepth := "", 0, 0
	for _, src := range s.files {
		for _, doc := range src.docs {
			line, depth := lookup(docRoot(doc), path)
			if depth > bestDepth {
				bestFile, bestLine, bestDepth = src.path, line, depth
			}
			if depth == len(path) {
				return s.display(src.path), line
			}
		}
	}
	if bestFile == "" {
		return s.display(s.primary()), 0
	}
	return s.display(bestFile), bestLine
}

// primary is the first -f file (compose's main file).
func (s *sources) primary() string { return s.main }

// lookup walks path from n and returns the line of the deepest key reached
// and how many path elements matched.
func lookup(n *yaml.Node, path []string) (line, depth int) {
	for i, key := range path {
		if n == nil {
			return line, i
		}
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == key {
					line, next = n.Content[j].Line, n.Content[j+1]
				}
			}
			if next == nil {
				// a "<<" merge key may hold it; it is still on this line range
				return line, i
			}
			n = next
		case yaml.SequenceNode:
			// A numeric key is an index; any other key matches an item by
			// its scalar value (depends_on: [db], ports: ["80:80"]).
			var next *yaml.Node
			if idx, err := strconv.Atoi(key); err == nil && idx >= 0 && idx < len(n.Content) {
				next = n.Content[idx]
			}
			for _, item := range n.Content {
				if next == nil && item.Kind == yaml.ScalarNode && item.Value == key {
					next = item
				}
			}
			if next == nil {
				return line, i
			}
			n, line = next, next.Line
		default:
			return line, i
		}
	}
	return line, len(path)
}

// findVariable returns the first place a scalar references $name or
// ${name...}, searching files in order.
func (s *sources) findVariable(name string) (string, int) {
	re := regexp.MustCompile(`\$(\{` + regexp.QuoteMeta(name) + `[}:?+\-]|` + regexp.QuoteMeta(name) + `\b)`)
	for _, src := range s.files {
		for _, doc := range src.docs {
			if line := findScalar(doc, re); line > 0 {
				return s.display(src.path), line
			}
		}
	}
	return "", 0
}

// inExtension reports whether the first reference to $name or ${name}
// is inside an x-devstack block (x-devstack.run, x-devstack.build).
func (s *sources) inExtension(name string) bool {
	re := regexp.MustCompile(`\$(\{` + regexp.QuoteMeta(name) + `[}:?+\-]|` + regexp.QuoteMeta(name) + `\b)`)
	var walk func(n *yaml.Node, inExt bool) (found, inside bool)
	walk = func(n *yaml.Node, inExt bool) (bool, bool) {
		if n.Kind == yaml.ScalarNode {
			return re.MatchString(strings.ReplaceAll(n.Value, "$$", "")), inExt
		}
		for i, c := range n.Content {
			ext := inExt
			if n.Kind == yaml.MappingNode && i%2 == 1 && n.Content[i-1].Value == extKey {
				ext = true
			}
			if found, inside := walk(c, ext); found {
				return true, inside
			}
		}
		return false, false
	}
	for _, src := range s.files {
		for _, doc := range src.docs {
			if found, inside := walk(doc, false); found {
				return inside
			}
		}
	}
	return false
}

func findScalar(n *yaml.Node, re *regexp.Regexp) int {
	if n.Kind == yaml.ScalarNode && re.MatchString(strings.ReplaceAll(n.Value, "$$", "")) {
		return n.Line
	}
	for _, c := range n.Content {
		if line := findScalar(c, re); line > 0 {
			return line
		}
	}
	return 0
}

func docRoot(doc *yaml.Node) *yaml.Node {
	if doc != nil && doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return doc
}

// mapValue returns the value of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// errText is an error's text without a trailing period, fit to embed.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return strings.TrimSuffix(err.Error(), ".")
}

// checkPortSyntax parses every short-syntax port (after interpolation) so a
// bad one is reported with its service and line; compose-go's own message
// ("Invalid hostPort: 80800") names neither.
func (s *sources) checkPortSyntax() error {
	for _, src := range s.files {
		for _, doc := range src.docs {
			services := mapValue(docRoot(doc), "services")
			if services == nil || services.Kind != yaml.MappingNode {
				continue
			}
			for i := 0; i+1 < len(services.Content); i += 2 {
				name := services.Content[i].Value
				ports := mapValue(services.Content[i+1], "ports")
				if ports == nil || ports.Kind != yaml.SequenceNode {
					continue
				}
				for _, item := range ports.Content {
					if item.Kind != yaml.ScalarNode {
						continue
					}
					if _, err := types.ParsePortConfig(s.interpolate(item.Value)); err != nil {
						return &Error{File: s.display(src.path), Line: item.Line, Service: name, Key: "ports", Err: ErrBadPort,
							Msg: portMsg(item.Value, lowerFirst(err.Error()))}
					}
				}
			}
		}
	}
	return nil
}

// portMsg is the one sentence for every bad port.
func portMsg(spec, why string) string {
	return fmt.Sprintf("port %q is not valid (%s); write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL] with ports between 1 and 65535", spec, why)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
