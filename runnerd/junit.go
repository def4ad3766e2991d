package runnerd

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pontus-ci/pontus/internal/testreport"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Bounds on the search for JUnit reports in a checkout.
const (
	junitMaxVisited = 20000
	junitMaxFiles   = 200
)

// junitTests returns the test cases of the JUnit XML files in the checkout
// at dir matching patterns, or nil when there are none. Symlinks are not
// followed, so a hostile repository cannot point the runner elsewhere.
func junitTests(dir string, patterns []string) []*pontusv1.TestCase {
	if len(patterns) == 0 {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil
	}
	defer root.Close()
	var cases []*pontusv1.TestCase
	visited, files := 0, 0
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		visited++
		if err != nil || visited > junitMaxVisited || files >= junitMaxFiles {
			return filepath.SkipAll
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), ".xml") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || !matchAny(filepath.ToSlash(rel), patterns) {
			return nil
		}
		// Opened inside the checkout, without following a symlink or
		// blocking on a FIFO, and checked again once open: a process of
		// another job (the same step_user) may have swapped the file or a
		// directory above it since the walk saw it.
		f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		files++
		got, _ := testreport.ParseJUnit(f)
		cases = append(cases, got...)
		return nil
	})
	return cases
}

// matchAny reports whether the slash-separated path rel matches one of the
// patterns, where a "**/" segment matches any number of directories.
func matchAny(rel string, patterns []string) bool {
	for _, p := range patterns {
		if matchGlob(p, rel) {
			return true
		}
	}
	return false
}

func matchGlob(pattern, name string) bool {
	before, after, found := strings.Cut(pattern, "**/")
	if !found {
		ok, _ := path.Match(pattern, name)
		return ok
	}
	if before != "" {
		if !strings.HasPrefix(name, before) {
			return false
		}
		name = name[len(before):]
	}
	// "**/" matches zero or more leading directories.
	for {
		if matchGlob(after, name) {
			return true
		}
		i := strings.IndexByte(name, '/')
		if i < 0 {
			return false
		}
		name = name[i+1:]
	}
}
