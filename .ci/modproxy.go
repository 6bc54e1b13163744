// Command modproxy writes the modules of this checkout into a file-system
// module proxy (GOPROXY=file://DIR), all at one version, as a release
// would publish them at once: so that CI builds them as a user fetches
// them, outside the workspace and with no replace (spec §11).
//
// Usage, from the repository root (the standard library only, so that it
// adds nothing to the root module's requirements):
//
//	go run .ci/modproxy.go -base v0.1.0 -out DIR MODULE_DIR...
//
// Each module's requirements of the others must all name -base. The
// modules are written at -base with a suffix that is a hash of their
// files, v0.1.0-ci-<hash>, and their requirements of each other rewritten
// to it: the go command never downloads a version twice, and a version
// whose content changed would silently build from its first download.
// The version is printed on stdout. DIR/<version> is the proxy's root.
//
// The files of a module are those git tracks or would track (untracked
// but not ignored) under its directory, less those of modules nested in
// it, as the go command packs a module from a repository.
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"
)

type module struct {
	dir   string   // relative to the repository root, "." for the root
	path  string   // module path
	gomod []byte   // its go.mod
	files []string // relative to dir, slash-separated, sorted
}

func main() {
	base := flag.String("base", "", "the version every module requires the others at, e.g. v0.1.0")
	out := flag.String("out", "", "directory under which the proxy is written, as OUT/<version>")
	flag.Parse()
	if *base == "" || *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: go run .ci/modproxy.go -base v0.1.0 -out DIR MODULE_DIR...")
		os.Exit(2)
	}
	version, err := run(*base, *out, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
	fmt.Println(version)
}

func run(base, out string, dirs []string) (string, error) {
	mods, err := load(dirs)
	if err != nil {
		return "", err
	}
	paths := map[string]bool{}
	for _, m := range mods {
		paths[m.path] = true
	}
	required := map[string]bool{}
	for _, m := range mods {
		if err := checkRequirements(m, paths, base, required); err != nil {
			return "", err
		}
	}
	if err := checkWorkspace(required, base); err != nil {
		return "", err
	}
	version := base + "-ci-" + hash(mods)
	root := filepath.Join(out, version)
	if _, err := os.Stat(filepath.Join(root, "complete")); err == nil {
		return version, nil // written before, for the same files
	}
	tmp, err := os.MkdirTemp(out, "partial-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for _, m := range mods {
		if err := write(tmp, m, rewrite(m.gomod, paths, version), version); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), nil, 0o644); err != nil {
		return "", err
	}
	// Another run may have written the same version meanwhile: either
	// copy is as good.
	if err := os.Rename(tmp, root); err != nil {
		if _, serr := os.Stat(filepath.Join(root, "complete")); serr != nil {
			return "", err
		}
	}
	return version, nil
}

// load reads the modules in dirs and assigns each file of the checkout to
// the innermost module holding it.
func load(dirs []string) ([]*module, error) {
	var mods []*module
	for _, d := range dirs {
		d = path.Clean(filepath.ToSlash(d))
		gomod, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err != nil {
			return nil, err
		}
		p := modulePath(gomod)
		if p == "" {
			return nil, fmt.Errorf("%s/go.mod: no module line", d)
		}
		mods = append(mods, &module{dir: d, path: p, gomod: gomod})
	}
	// git's list, NUL-separated: tracked files and untracked ones not ignored.
	list, err := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	for _, f := range strings.Split(string(list), "\x00") {
		if f == "" {
			continue
		}
		fi, err := os.Lstat(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree
		} else if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			continue // the go command packs regular files only
		}
		var owner *module // the innermost module holding f
		for _, m := range mods {
			if (m.dir == "." || strings.HasPrefix(f, m.dir+"/")) && (owner == nil || depth(m) > depth(owner)) {
				owner = m
			}
		}
		if owner == nil {
			continue
		}
		rel := f
		if owner.dir != "." {
			rel = strings.TrimPrefix(f, owner.dir+"/")
		}
		if underNestedModule(owner.dir, rel) {
			continue // in a module that is not among dirs (testdata, say)
		}
		owner.files = append(owner.files, rel)
	}
	for _, m := range mods {
		sort.Strings(m.files)
	}
	return mods, nil
}

// depth orders modules by nesting: the root first.
func depth(m *module) int {
	if m.dir == "." {
		return 0
	}
	return 1 + strings.Count(m.dir, "/")
}

// underNestedModule reports whether rel, a file of the module in dir, lies
// under a directory with a go.mod of its own: such files are not part of
// the module.
func underNestedModule(dir, rel string) bool {
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if _, err := os.Stat(filepath.Join(dir, d, "go.mod")); err == nil {
			return true
		}
	}
	return false
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// requirement returns the module path and version a go.mod line requires,
// inside or outside a require block.
func requirement(fields []string, inBlock bool) (string, string, bool) {
	if !inBlock {
		if len(fields) < 3 || fields[0] != "require" {
			return "", "", false
		}
		fields = fields[1:]
	}
	if len(fields) < 2 {
		return "", "", false
	}
	return fields[0], fields[1], true
}

// eachLine calls fn for every line of gomod, with whether it lies inside a
// require block.
func eachLine(gomod []byte, fn func(line string, fields []string, inRequire bool)) {
	inRequire := false
	for _, line := range strings.SplitAfter(string(gomod), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "require" && f[1] == "(":
			fn(line, f, false)
			inRequire = true
			continue
		case inRequire && len(f) >= 1 && f[0] == ")":
			inRequire = false
		}
		fn(line, f, inRequire)
	}
}

// checkRequirements fails if m requires one of the modules at another
// version than base, or replaces one: a user gets neither. It adds the
// modules m requires to required.
func checkRequirements(m *module, paths map[string]bool, base string, required map[string]bool) error {
	var err error
	eachLine(m.gomod, func(line string, f []string, inRequire bool) {
		if len(f) >= 1 && f[0] == "replace" || strings.Contains(line, "=>") {
			err = errors.Join(err, fmt.Errorf("%s/go.mod has a replace: a user's build ignores it (go.work replaces for the workspace)", m.dir))
		}
		p, v, ok := requirement(f, inRequire)
		if !ok || !paths[p] {
			return
		}
		required[p] = true
		if v != base {
			err = errors.Join(err, fmt.Errorf("%s/go.mod requires %s %s, not %s: the modules are released at one version", m.dir, p, v, base))
		}
	})
	return err
}

// checkWorkspace fails unless go.work replaces every required module at
// base: the workspace would otherwise download that version's go.mod.
func checkWorkspace(required map[string]bool, base string) error {
	work, err := os.ReadFile("go.work")
	if err != nil {
		return err
	}
	replaced := map[string]bool{}
	for _, line := range strings.Split(string(work), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "replace" {
			f = f[1:]
		}
		if len(f) >= 3 && f[1] == base && f[2] == "=>" {
			replaced[f[0]] = true
		}
	}
	for p := range required {
		if !replaced[p] {
			err = errors.Join(err, fmt.Errorf("go.work does not replace %s %s => its directory", p, base))
		}
	}
	return err
}

// rewrite returns gomod with its requirements of the modules at version.
func rewrite(gomod []byte, paths map[string]bool, version string) []byte {
	var b strings.Builder
	eachLine(gomod, func(line string, f []string, inRequire bool) {
		if p, v, ok := requirement(f, inRequire); ok && paths[p] {
			line = strings.Replace(line, p+" "+v, p+" "+version, 1)
		}
		b.WriteString(line)
	})
	return []byte(b.String())
}

// hash is the first 12 hex digits of a SHA-256 of every module's path and
// files.
func hash(mods []*module) string {
	h := sha256.New()
	for _, m := range mods {
		fmt.Fprintf(h, "module %s\n", m.path)
		for _, f := range m.files {
			data, err := os.ReadFile(filepath.Join(m.dir, f))
			if err != nil {
				panic(err)
			}
			fmt.Fprintf(h, "%s %d\n", f, len(data))
			h.Write(data)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// write writes m into the proxy at root: list, .info, .mod and .zip.
func write(root string, m *module, gomod []byte, version string) error {
	dir := filepath.Join(root, filepath.FromSlash(escape(m.path)), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	info, _ := json.Marshal(struct{ Version, Time string }{version, time.Now().UTC().Format(time.RFC3339)})
	if err := os.WriteFile(filepath.Join(dir, "list"), []byte(version+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, version+".info"), info, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, version+".mod"), gomod, 0o644); err != nil {
		return err
	}
	zf, err := os.Create(filepath.Join(dir, version+".zip"))
	if err != nil {
		return err
	}
	zw := zip.NewWriter(zf)
	prefix := m.path + "@" + version + "/"
	for _, f := range m.files {
		data := gomod
		if f != "go.mod" {
			if data, err = os.ReadFile(filepath.Join(m.dir, f)); err != nil {
				return err
			}
		}
		w, err := zw.Create(prefix + f)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return zf.Close()
}

// escape is the module proxy's case encoding: an upper-case letter becomes
// '!' and its lower case.
func escape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
