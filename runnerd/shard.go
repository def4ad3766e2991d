package runnerd

import (
	"bufio"
	"cmp"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Sharding. Every shard of a build checks out the same commit, lists the
// same test units from the same files and computes the same partition from
// the same durations (Job.known_tests), so the shards together run each
// unit exactly once without talking to each other. Units are Python test
// modules (tests/test*.py) when unittest discovers the tests, Go test,
// fuzz and example functions when go test runs them natively, and every
// other step (a plugin, a tests/*.wasm module, a test_command, sandboxed
// Go tests) as a whole.

// testUnit is one indivisible piece of a job's tests.
type testUnit struct {
	key  string // "py:mod", "go:importpath.TestX" or "step:name"
	step int    // index of the step it comes from
	arg  string // the module or function name the narrowed step runs
}

// maxUnits bounds the units a runner lists (and the size of the -run
// patterns it builds).
const maxUnits = 20000

// shardSteps narrows a sharded job's steps to its own part of the units.
// It returns the steps to run and a line for the log.
func shardSteps(job *pontusv1.Job, dir string, steps []jobStep) ([]jobStep, string) {
	n, index := int(job.GetShardCount()), int(job.GetShardIndex())
	if n <= 1 {
		return steps, ""
	}
	var units []testUnit
	for i, s := range steps {
		units = append(units, stepUnits(dir, i, s)...)
	}
	if len(units) > maxUnits {
		units = units[:maxUnits]
	}
	mine := partition(units, weights(units, job.GetKnownTests()), n)[index]
	byStep := map[int][]testUnit{}
	for _, u := range mine {
		byStep[u.step] = append(byStep[u.step], u)
	}
	var out []jobStep
	var names []string
	for i, s := range steps {
		us := byStep[i]
		if len(us) == 0 {
			continue
		}
		for _, u := range us {
			names = append(names, strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(u.key, "py:"), "go:"), "step:"))
		}
		out = append(out, narrow(dir, s, us)...)
	}
	note := fmt.Sprintf("[pontus: shard %d of %d: %d of %d test units", index+1, n, len(mine), len(units))
	if len(names) > 0 {
		const shown = 20
		note += ": " + strings.Join(names[:min(len(names), shown)], ", ")
		if len(names) > shown {
			note += fmt.Sprintf(", … (%d more)", len(names)-shown)
		}
	}
	return out, note + "]"
}

// stepUnits lists the units of step i.
func stepUnits(dir string, i int, s jobStep) []testUnit {
	var units []testUnit
	switch stepKind(s) {
	case "unittest":
		for _, m := range pythonModules(dir) {
			units = append(units, testUnit{key: "py:" + m, step: i, arg: m})
		}
	case "pytest":
		for _, f := range pytestFiles(dir) {
			mod := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(f, "tests/"), ".py"), "/", ".")
			units = append(units, testUnit{key: "py:" + mod, step: i, arg: f})
		}
	case "go":
		units = goTestUnits(dir, i)
	}
	if len(units) == 0 {
		return []testUnit{{key: "step:" + s.name, step: i}}
	}
	return units
}

// stepKind says which detected test step s is: "unittest", "pytest", "go",
// or "" for any other step (run whole).
func stepKind(s jobStep) string {
	st := s.native
	switch {
	case st == nil || !st.detected:
		return ""
	case st.junit != "" && slices.Contains(st.argv, "pytest") && st.argv[len(st.argv)-1] == "tests":
		return "pytest"
	case len(st.argv) > 2 && st.argv[0] == "python3" && st.argv[2] == "unittest":
		return "unittest"
	case st.argv[0] == "go":
		return "go"
	}
	return ""
}

// pytestFiles lists the files pytest collects by default under tests/
// (test_*.py and *_test.py), as paths from the checkout.
func pytestFiles(dir string) []string {
	var files []string
	root := filepath.Join(dir, "tests")
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || len(files) > maxUnits {
			return filepath.SkipDir
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "__pycache__" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(name, ".py") && (strings.HasPrefix(name, "test_") || strings.HasSuffix(name, "_test.py")) {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	return files
}

var pyModule = regexp.MustCompile(`^test[A-Za-z0-9_]*$`)

// pythonModules lists the modules unittest discovery would load from
// tests/ (test*.py), or nil when tests/ has packages, which discovery
// also searches and a module list would miss.
func pythonModules(dir string) []string {
	entries, err := os.ReadDir(filepath.Join(dir, "tests"))
	if err != nil {
		return nil
	}
	var mods []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(dir, "tests", e.Name(), "__init__.py")); err == nil {
				return nil
			}
			continue
		}
		if m, ok := strings.CutSuffix(e.Name(), ".py"); ok && e.Type().IsRegular() && pyModule.MatchString(m) {
			mods = append(mods, m)
		}
	}
	return mods
}

// goTestUnits lists the test, fuzz and example functions of the Go
// packages under tests/, by parsing their _test.go files (no build needed).
func goTestUnits(dir string, step int) []testUnit {
	module := goModule(filepath.Join(dir, "go.mod"))
	if module == "" {
		return nil
	}
	var units []testUnit
	root := filepath.Join(dir, "tests")
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || len(units) > maxUnits {
			return filepath.SkipDir
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(d.Name(), "_test.go") || !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(path))
		pkg := "./" + filepath.ToSlash(rel)
		importPath := module + "/" + filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil // go test reports it
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !isTestFunc(fn.Name.Name) {
				continue
			}
			units = append(units, testUnit{key: "go:" + importPath + "." + fn.Name.Name, step: step, arg: pkg + " " + fn.Name.Name})
		}
		return nil
	})
	return units
}

// isTestFunc reports whether go test runs a top-level function of this
// name: Test, Fuzz or Example, then nothing or a non-lowercase rune.
func isTestFunc(name string) bool {
	for _, prefix := range []string{"Test", "Fuzz", "Example"} {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			r, _ := utf8.DecodeRuneInString(rest)
			return rest == "" || !unicode.IsLower(r)
		}
	}
	return false
}

// goModule is the module path declared in a go.mod, "" if none.
func goModule(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// weights gives each unit the recorded duration of its tests; a unit
// without any is taken to last as long as the average known one (all
// units weigh the same when none is known: balanced by count).
func weights(units []testUnit, known []*pontusv1.TestCase) []time.Duration {
	byKey := map[string]time.Duration{}
	for _, t := range known {
		d := t.GetDuration().AsDuration()
		step, _, _ := strings.Cut(t.GetName(), ": ")
		keys := []string{"step:" + step}
		// A Python test's module is a prefix of its suite: "mod.Class"
		// (unittest), "tests.sub.mod.Class" (pytest's JUnit classname).
		for _, suite := range []string{t.GetSuite(), strings.TrimPrefix(t.GetSuite(), "tests.")} {
			for i, c := range suite {
				if c == '.' {
					keys = append(keys, "py:"+suite[:i])
				}
			}
			keys = append(keys, "py:"+suite)
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		if !strings.Contains(t.GetName(), "/") { // a Go test's time includes its subtests'
			keys = append(keys, "go:"+t.GetSuite()+"."+t.GetName())
		}
		for _, key := range keys {
			byKey[key] += d
		}
	}
	w := make([]time.Duration, len(units))
	var sum time.Duration
	var n int
	for i, u := range units {
		if d, ok := byKey[u.key]; ok {
			w[i] = max(d, time.Millisecond)
			sum += w[i]
			n++
		}
	}
	avg := time.Second
	if n > 0 {
		avg = sum / time.Duration(n)
	}
	for i := range w {
		if w[i] == 0 {
			w[i] = avg
		}
	}
	return w
}

// partition splits units into n parts by longest processing time first:
// heaviest unit first (ties by key), each to the lightest part so far
// (ties to the lowest index). Deterministic, so every shard computes the
// same parts.
func partition(units []testUnit, w []time.Duration, n int) [][]testUnit {
	order := make([]int, len(units))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(w[b], w[a]); c != 0 {
			return c
		}
		return cmp.Compare(units[a].key, units[b].key)
	})
	parts := make([][]testUnit, n)
	load := make([]time.Duration, n)
	for _, i := range order {
		best := 0
		for p := 1; p < n; p++ {
			if load[p] < load[best] {
				best = p
			}
		}
		parts[best] = append(parts[best], units[i])
		load[best] += w[i]
	}
	for _, p := range parts {
		slices.SortFunc(p, func(a, b testUnit) int { return cmp.Or(cmp.Compare(a.step, b.step), cmp.Compare(a.key, b.key)) })
	}
	return parts
}

// narrow returns step s restricted to units us.
func narrow(dir string, s jobStep, us []testUnit) []jobStep {
	if us[0].arg == "" {
		return []jobStep{s} // a whole step
	}
	switch stepKind(s) {
	case "pytest":
		// The same command with this shard's files in place of tests/.
		st := *s.native
		st.argv = slices.Clone(st.argv[:len(st.argv)-1])
		for _, u := range us {
			st.argv = append(st.argv, u.arg)
		}
		return []jobStep{{name: s.name, native: &st}}
	case "unittest":
		// The modules discovery would import from tests/, named: the same
		// test ids, and a failed one can be re-run alone (retry.go).
		st := *s.native
		st.argv = []string{st.argv[0], "-m", "unittest", "-v"}
		for _, u := range us {
			st.argv = append(st.argv, u.arg)
		}
		st.env = append(slices.Clip(st.env), "PYTHONPATH="+filepath.Join(dir, "tests"))
		return []jobStep{{name: s.name, native: &st}}
	}
	// Go: one go test per package, running only its chosen functions.
	var pkgs []string
	funcs := map[string][]string{}
	for _, u := range us {
		pkg, fn, _ := strings.Cut(u.arg, " ")
		if funcs[pkg] == nil {
			pkgs = append(pkgs, pkg)
		}
		funcs[pkg] = append(funcs[pkg], fn)
	}
	var out []jobStep
	for _, pkg := range pkgs {
		st := *s.native
		st.argv = []string{"go", "test", "-v", "-run", "^(" + strings.Join(funcs[pkg], "|") + ")$", pkg}
		out = append(out, jobStep{name: s.name, native: &st})
	}
	return out
}
