// Package sdk helps write Pontus test plugins in Go.
//
// A plugin is a WASI command module (build it with
// GOOS=wasip1 GOARCH=wasm go build -o x.wasm) that Pontus runs in a sandbox
// with the checkout mounted read-only at /src. The plugin reports its tests
// on stdout in TAP 14 and exits 1 when anything failed; this package does both
// for you:
//
//	func main() {
//		sdk.Main(func(t *sdk.T) {
//			err := sdk.WalkFiles("/src", func(path string, data []byte) {
//				t.Run(path, func(t *sdk.T) {
//					if bytes.Contains(data, []byte("TODO")) {
//						t.Fail("contains TODO")
//					}
//				})
//			})
//			if err != nil {
//				t.Fail(err.Error())
//			}
//		})
//	}
//
// T mirrors the parts of testing.T a checker needs: Run for subtests, Fail
// and Failf to record a failure and carry on, Fatal and Fatalf to record one
// and stop the test, Skip to stop it as skipped, and Log for notes kept with
// the result. Each subtest runs in its own goroutine so that Fatal and Skip
// can stop it and a panic fails only that test.
//
// The package is a module of its own with no dependencies beyond the
// standard library, so a plugin depends on nothing else of Pontus; it builds
// both for wasip1 and natively, so a plugin's logic can be unit-tested with
// plain go test. Source holds its own source, from which `pontus plugin new`
// writes a copy beside a new plugin.
package sdk

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Main runs body, writes its results to stdout as TAP 14 and exits: 0 when
// every test passed or was skipped, 1 when anything failed.
func Main(body func(t *T)) {
	name := "plugin"
	if len(os.Args) > 0 && os.Args[0] != "" {
		name = strings.TrimSuffix(filepath.Base(os.Args[0]), ".wasm")
	}
	os.Exit(RunTo(os.Stdout, name, body))
}

// RunTo runs body, writes TAP 14 to w and returns the exit code Main would
// use. name labels failures recorded on the top-level T itself (outside any
// subtest). It is what Main calls; plugin unit tests can call it directly.
func RunTo(w io.Writer, name string, body func(t *T)) int {
	rep := &reporter{w: w}
	rep.line(0, "TAP version 14")
	root := &T{name: name, rep: rep}
	root.run(body)
	root.mu.Lock()
	defer root.mu.Unlock()
	if len(root.msgs) > 0 || root.panicked {
		// Failures recorded outside any subtest get a test point of their
		// own, so the harness shows them next to the others.
		root.n++
		rep.testPoint(0, root.n, &T{name: name, failed: true, msgs: root.msgs})
	}
	plan := fmt.Sprintf("1..%d", root.n)
	if root.n == 0 && root.skipped && root.skipReason != "" {
		plan += " # SKIP " + oneLine(root.skipReason)
	}
	rep.line(0, plan)
	if root.failed {
		return 1
	}
	return 0
}

// T is one test: the top-level plugin body or a subtest. Fail, Failf, Log,
// Logf, Failed and Name may be called from any goroutine; Run, Fatal, Skip
// and their f forms only from the goroutine running the test, like
// testing.T.
type T struct {
	name  string
	depth int // indentation of this test's children: 4*depth spaces
	rep   *reporter

	mu         sync.Mutex
	n          int // subtests run so far
	failed     bool
	panicked   bool
	skipped    bool
	skipReason string
	msgs       []string // failure messages and logs, in order
	header     bool     // "# Subtest:" line printed
}

// Name is the test's name as given to Run.
func (t *T) Name() string { return t.name }

// Failed reports whether the test or any of its subtests has failed.
func (t *T) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// Fail marks the test failed with msg and lets it carry on.
func (t *T) Fail(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	t.msgs = append(t.msgs, msg)
}

// Failf is Fail with a format.
func (t *T) Failf(format string, args ...any) { t.Fail(fmt.Sprintf(format, args...)) }

// Fatal marks the test failed with msg and stops it: the rest of its
// function does not run. Call it only from the test's own goroutine.
func (t *T) Fatal(msg string) {
	t.Fail(msg)
	runtime.Goexit()
}

// Fatalf is Fatal with a format.
func (t *T) Fatalf(format string, args ...any) { t.Fatal(fmt.Sprintf(format, args...)) }

// Skip marks the test skipped with reason and stops it. A test that failed
// before it called Skip stays failed.
func (t *T) Skip(reason string) {
	t.mu.Lock()
	t.skipped = true
	t.skipReason = reason
	t.mu.Unlock()
	runtime.Goexit()
}

// Skipf is Skip with a format.
func (t *T) Skipf(format string, args ...any) { t.Skip(fmt.Sprintf(format, args...)) }

// Log records a note kept with the test's result (in its TAP diagnostics).
// On the top-level T it is printed at once as a TAP comment.
func (t *T) Log(msg string) {
	if t.depth == 0 {
		for _, l := range strings.Split(msg, "\n") {
			t.rep.line(0, "# "+l)
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.msgs = append(t.msgs, msg)
}

// Logf is Log with a format.
func (t *T) Logf(format string, args ...any) { t.Log(fmt.Sprintf(format, args...)) }

// Run runs f as a subtest of t named name, reports it and returns whether
// it passed (or was skipped). Subtests may nest; each level is a TAP 14
// child stream.
func (t *T) Run(name string, f func(t *T)) bool {
	t.mu.Lock()
	if !t.header && t.depth > 0 {
		// First child: introduce t's subtest stream, node-tap style, at
		// the indentation of t's own test point.
		t.rep.line(t.depth-1, "# Subtest: "+escape(t.name))
		t.header = true
	}
	t.mu.Unlock()

	child := &T{name: name, depth: t.depth + 1, rep: t.rep}
	child.run(f)

	child.mu.Lock()
	if child.header {
		child.rep.line(child.depth, fmt.Sprintf("1..%d", child.n))
	}
	failed := child.failed
	t.mu.Lock()
	t.n++
	t.rep.testPoint(t.depth, t.n, child)
	if failed {
		t.failed = true
	}
	t.mu.Unlock()
	child.mu.Unlock()
	return !failed
}

// run calls f(t) on a goroutine of its own, so that Goexit (Fatal, Skip)
// ends only this test, and turns a panic into a failure.
func (t *T) run(f func(t *T)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.mu.Lock()
				t.failed = true
				t.panicked = true
				t.msgs = append(t.msgs, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
				t.mu.Unlock()
			}
		}()
		f(t)
	}()
	<-done
}

// reporter writes TAP lines. It ignores write errors: a plugin whose stdout
// is gone has no one to tell.
type reporter struct {
	mu sync.Mutex
	w  io.Writer
}

func (r *reporter) line(depth int, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = io.WriteString(r.w, strings.Repeat("    ", depth)+s+"\n")
}

// testPoint writes "ok N - name" (or "not ok", or "# SKIP") and, when the
// test has messages, a YAML diagnostics block. c.mu must be held or c
// unshared.
func (r *reporter) testPoint(depth, n int, c *T) {
	status := "ok"
	if c.failed {
		status = "not ok"
	}
	line := fmt.Sprintf("%s %d - %s", status, n, escape(c.name))
	if c.skipped && !c.failed {
		line += " # SKIP"
		if c.skipReason != "" {
			line += " " + oneLine(c.skipReason)
		}
	}
	r.line(depth, line)
	if len(c.msgs) == 0 {
		return
	}
	key := "message"
	if !c.failed {
		key = "log"
	}
	r.line(depth, "  ---")
	r.line(depth, "  "+key+": "+yamlString(strings.Join(c.msgs, "\n")))
	r.line(depth, "  ...")
}

// escape makes a test name safe for a TAP description: one line, with the
// backslash and '#' escaped as TAP 14 requires.
func escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "#", `\#`)
	return oneLine(s)
}

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// yamlString quotes s as a YAML double-quoted scalar (a JSON string is one).
func yamlString(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
