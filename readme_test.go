package scoped_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// snippetModules maps an import of one of this repository's other modules
// to its directory, in the order a snippet is given to them: a snippet that
// imports scopedriver (which requires scopedpgx) builds in scopedriver.
var snippetModules = []struct{ importPath, dir string }{
	{"github.com/go-scoped/scoped/scopedriver", "scopedriver"},
	{"github.com/go-scoped/scoped/scopedotel", "scopedotel"},
	{"github.com/go-scoped/scoped/scopedgrpc", "scopedgrpc"},
	{"github.com/go-scoped/scoped/scopedconnect", "scopedconnect"},
	{"github.com/go-scoped/scoped/scopedpgx", "scopedpgx"},
}

// TestDocSnippetsCompile extracts every ```go block of README.md and
// docs/*.md, each a whole file, and vets it as a package of the module its
// imports name (the root module unless it imports one of the others), so
// that the documentation cannot drift from the API.
func TestDocSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append([]string{"README.md"}, docs...)
	byModule := map[string][]snippet{}
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(text, -1) {
			s := snippet{name: fmt.Sprintf("%s snippet %d", doc, i+1), src: b[1]}
			f, err := parser.ParseFile(token.NewFileSet(), s.name, s.src, parser.ImportsOnly)
			if err != nil {
				t.Errorf("%s is not a whole Go file (package clause, imports): %v", s.name, err)
				continue
			}
			mod := "."
			for _, m := range snippetModules {
				if imports(f.Imports, m.importPath) {
					mod = m.dir
					break
				}
			}
			byModule[mod] = append(byModule[mod], s)
		}
	}
	if len(byModule["."]) == 0 {
		t.Fatal("README.md has no go snippets")
	}
	for mod, snippets := range byModule {
		t.Run(mod, func(t *testing.T) { vetSnippets(t, mod, snippets) })
	}
}

type snippet struct {
	name string
	src  []byte
}

func imports(specs []*ast.ImportSpec, prefix string) bool {
	for _, s := range specs {
		p, _ := strconv.Unquote(s.Path.Value)
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// vetSnippets writes each snippet as a package of the module in dir and
// runs go vet on them. A directory starting with "_" is part of the module
// but left out of ./..., so the snippets build with the module's go.mod
// without becoming packages of it. The root module's snippets build as
// this test is built (the workspace, or CI's module on its own); the other
// modules' through the workspace, which resolves them to this checkout.
func vetSnippets(t *testing.T, dir string, snippets []snippet) {
	cmd := exec.Command("go", "vet")
	if dir != "." {
		work, err := filepath.Abs("go.work")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(work); err != nil {
			t.Skipf("the %s snippets build in the workspace, and there is no go.work: %v", dir, err)
		}
		// GOFLAGS may name a -modfile for the root module (.ci/alone).
		cmd.Env = append(os.Environ(), "GOWORK="+work, "GOFLAGS=")
	}
	tmp, err := os.MkdirTemp(dir, "_docsnippets")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	legend := ""
	for i, s := range snippets {
		pkg := filepath.Join(tmp, fmt.Sprintf("snippet%d", i+1))
		if err := os.Mkdir(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, "snippet.go"), s.src, 0o644); err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(dir, pkg)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Args = append(cmd.Args, "./"+filepath.ToSlash(rel))
		legend += fmt.Sprintf("  snippet%d: %s\n", i+1, s.name)
	}
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("snippets do not vet in module %s:\n%s\nwhere\n%s", dir, out, legend)
	}
}
