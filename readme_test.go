package scoped_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestReadmeSnippetsCompile extracts every ```go block of README.md, each a
// whole file, and vets it as a package of this module, so that the README
// cannot drift from the API.
func TestReadmeSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no go snippets")
	}
	// A directory starting with "_" is part of the module but left out of
	// ./..., so the snippets build with the module's go.mod without
	// becoming packages of it.
	dir, err := os.MkdirTemp("internal", "_readme")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var pkgs []string
	for i, b := range blocks {
		src := b[1]
		if !bytes.HasPrefix(src, []byte("package ")) {
			t.Errorf("README snippet %d does not start with a package clause:\n%s", i+1, src)
			continue
		}
		pkg := filepath.Join(dir, fmt.Sprintf("snippet%d", i+1))
		if err := os.Mkdir(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, "snippet.go"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, "./"+filepath.ToSlash(pkg))
	}
	out, err := exec.Command("go", append([]string{"vet"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("README snippets do not vet (snippetN is the Nth ```go block):\n%s", out)
	}
}
