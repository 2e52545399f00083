package supervisor

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// No package keeps mutable state in package variables: state is a field
// of what owns it. This catches the plain case, a package variable
// assigned (or incremented, or one of its fields or elements assigned)
// anywhere outside init, its own tests included (a test that changes a
// package variable changes it for every test running beside it).
// Tables, pools and interface assertions, which are never assigned, pass.
func TestNoPackageVariableIsWritten(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	writes, err := packageVarWrites(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		t.Errorf("%s; make it a field or an option of what owns it", w)
	}
}

// The check finds what it is for.
func TestPackageVarWritesFindsAWrite(t *testing.T) {
	dir := t.TempDir()
	src := map[string]string{
		"a.go":      "package a\n\nvar limit = 2\nvar cache = map[int]int{}\nvar table = [2]int{1, 2}\nvar count int\n\nfunc init() { limit = 3 }\n\nfunc f(limit int) int { limit++; count++; return table[0] + limit }\n",
		"b.go":      "package a\n\nfunc g() { cache[1] = 2 }\n",
		"a_test.go": "package a\n\nfunc h() { limit++ }\n",
	}
	for name, s := range src {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writes, err := packageVarWrites(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(writes)
	want := []string{"a.go:10:34: writes package variable count", "a_test.go:3:12: writes package variable limit", "b.go:3:12: writes package variable cache"}
	if len(writes) != len(want) {
		t.Fatalf("found %q; want %q", writes, want)
	}
	for i, w := range writes {
		if !strings.HasSuffix(w, want[i]) {
			t.Errorf("found %q; want %q", writes, want)
			break
		}
	}
}

// packageVarWrites lists the writes to package variables declared in
// non-test, non-generated files, in every package under root (examples,
// testdata and hidden directories aside).
func packageVarWrites(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if n := d.Name(); p != root && (n == "testdata" || n == "examples" || strings.HasPrefix(n, ".")) {
			return filepath.SkipDir
		}
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, p, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, pkg := range pkgs {
			out = append(out, varWrites(fset, pkg)...)
		}
		return nil
	})
	return out, err
}

func varWrites(fset *token.FileSet, pkg *ast.Package) []string {
	vars := map[string]bool{}
	top := map[*ast.ValueSpec]bool{} // their declarations
	for name, f := range pkg.Files {
		if strings.HasSuffix(name, "_test.go") || ast.IsGenerated(f) {
			continue
		}
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
				for _, s := range g.Specs {
					top[s.(*ast.ValueSpec)] = true
					for _, n := range s.(*ast.ValueSpec).Names {
						vars[n.Name] = n.Name != "_"
					}
				}
			}
		}
	}
	var out []string
	for _, f := range pkg.Files {
		if ast.IsGenerated(f) {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			var lhs []ast.Expr
			switch s := n.(type) {
			case *ast.FuncDecl:
				return !(s.Recv == nil && s.Name.Name == "init")
			case *ast.AssignStmt:
				if s.Tok != token.DEFINE {
					lhs = s.Lhs
				}
			case *ast.IncDecStmt:
				lhs = []ast.Expr{s.X}
			}
			for _, e := range lhs {
				if id := rootIdent(e); id != nil && vars[id.Name] && isPackageLevel(id, top) {
					out = append(out, fset.Position(e.Pos()).String()+": writes package variable "+id.Name)
				}
			}
			return true
		})
	}
	return out
}

// isPackageLevel reports whether id names a package variable, not a local
// one of the same name: the parser resolves names within a file, so a
// package variable is either unresolved (declared in another file) or
// resolved to a top-level declaration.
func isPackageLevel(id *ast.Ident, top map[*ast.ValueSpec]bool) bool {
	if id.Obj == nil {
		return true
	}
	vs, ok := id.Obj.Decl.(*ast.ValueSpec)
	return ok && top[vs]
}

// rootIdent is the variable an assignment target belongs to: x in x,
// x.f, x[i], *x.
func rootIdent(e ast.Expr) *ast.Ident {
	for {
		switch x := e.(type) {
		case *ast.Ident:
			return x
		case *ast.SelectorExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.StarExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		default:
			return nil
		}
	}
}
