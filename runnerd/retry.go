package runnerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// maxRetries bounds Job.settings.retries on the runner's side, whatever the
// control plane sent.
const maxRetries = 10

// A retry unit is what one re-run runs: one failed test alone, or the whole
// step again (whole), answering for every test that failed in it.
type retryUnit struct {
	label string   // for the log: "TestX", "step tests"
	names []string // the failed tests the unit answers for
	step  jobStep  // what to run
	whole bool
}

// retryFailed re-runs what failed in a step that failed, up to
// job.settings.retries times each: each failed test alone where the test
// runner allows it (go test -run, a unittest id, a pytest node id), else the
// whole step. A test that passes on a re-run becomes FLAKY, with runs set
// to how many times it ran; one that fails every time stays as it was. The
// step passes when every failure turned out flaky (run alone), or when the
// whole step passed on a re-run. The re-runs share what is left of the
// step's timeout (budget); a re-run that times out or is canceled ends the
// step so.
func (r *Runner) retryFailed(ctx context.Context, job *pontusv1.Job, dir string, s jobStep, res testrun.Result, stream *logStream, budget time.Duration) testrun.Result {
	retries := min(int(job.GetSettings().GetRetries()), maxRetries)
	if retries <= 0 || res.Status != testrun.Failed {
		return res
	}
	failed := failedLeaves(res.Tests)
	units, alone := r.retryUnits(dir, s, failed)
	if !alone {
		units = []retryUnit{{label: "step " + s.name, names: testNames(failed), step: s, whole: true}}
	}
	byName := make(map[string]*pontusv1.TestCase, len(res.Tests))
	for _, tc := range res.Tests {
		byName[tc.GetName()] = tc
	}
	deadline := time.Now().Add(budget)
	for _, u := range units {
		passed, runs, stop := r.retryUnit(ctx, job, dir, u, retries, deadline, byName, stream)
		if stop.Status != 0 {
			stop.Tests = res.Tests
			return stop
		}
		if !u.whole {
			continue
		}
		if !passed {
			return res
		}
		if len(res.Tests) == 0 {
			// No per-test results to mark: the step itself was flaky.
			res.Tests = []*pontusv1.TestCase{{Name: s.name, Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FLAKY,
				Message: "the step failed, then passed when run again", Runs: int32(runs)}}
		}
	}
	settleParents(res.Tests)
	for _, tc := range res.Tests {
		if bad(tc.GetOutcome()) {
			return res
		}
	}
	res.Status, res.ExitCode, res.Reason = testrun.Passed, 0, ""
	return res
}

// retryUnit runs u up to retries times, until it passes. It returns whether
// it passed, how many times it ran in all, and a non-zero result when a run
// timed out or was canceled (the step ends with it).
func (r *Runner) retryUnit(ctx context.Context, job *pontusv1.Job, dir string, u retryUnit, retries int, deadline time.Time,
	byName map[string]*pontusv1.TestCase, stream *logStream) (bool, int, testrun.Result) {
	pending := slices.Clone(u.names)
	runs := 1
	for i := 1; i <= retries; i++ {
		left := time.Until(deadline)
		if left <= 0 {
			stream.Printf("[pontus: not retrying %s: the step's timeout is spent]", u.label)
			return false, runs, testrun.Result{}
		}
		stream.Printf("[pontus: retrying %s (%d of %d)]", u.label, i, retries)
		st := u.step
		st.budget = left
		rr := r.runStepLogged(ctx, job, dir, st, stream)
		runs++
		if rr.Status == testrun.TimedOut || rr.Status == testrun.Canceled {
			if rr.Status == testrun.TimedOut {
				rr.Reason = fmt.Sprintf("timed out while retrying %s (a step and its retries share the timeout)", u.label)
			}
			rr.ExitCode = -1
			return false, runs, rr
		}
		got := map[string]pontusv1.TestOutcome{}
		for _, tc := range r.stepTests(dir, st, rr, stream) {
			got[tc.GetName()] = tc.GetOutcome()
		}
		passed := rr.Status == testrun.Passed
		still := pending[:0]
		for _, name := range pending {
			tc := byName[name]
			tc.Runs = int32(runs)
			o, seen := got[name]
			// A test run alone must be seen passing; a whole step that
			// passed vouches for its tests.
			ok := seen && o == pontusv1.TestOutcome_TEST_OUTCOME_PASSED && (passed || u.whole) || !seen && passed && u.whole
			if !ok {
				still = append(still, name)
				continue
			}
			tc.Outcome = pontusv1.TestOutcome_TEST_OUTCOME_FLAKY
			stream.Printf("[pontus: %s failed, then passed on run %d of %d: FLAKY]", name, runs, retries+1)
		}
		pending = still
		if u.whole && passed {
			stream.Printf("[pontus: %s passed on run %d of %d]", u.label, runs, retries+1)
			return true, runs, testrun.Result{}
		}
		if !u.whole && len(pending) == 0 {
			return true, runs, testrun.Result{}
		}
	}
	for _, name := range pending {
		stream.Printf("[pontus: %s failed all %d runs]", name, runs)
	}
	if u.whole && len(u.names) == 0 {
		stream.Printf("[pontus: %s failed all %d runs]", u.label, runs)
	}
	return false, runs, testrun.Result{}
}

// retryUnits returns one unit per failed test when every one of them can be
// run alone; alone is false otherwise (re-run the whole step).
func (r *Runner) retryUnits(dir string, s jobStep, failed []*pontusv1.TestCase) (units []retryUnit, alone bool) {
	if s.native == nil || len(failed) == 0 {
		return nil, false
	}
	for _, tc := range failed {
		st, ok := rerunStep(dir, *s.native, tc)
		if !ok {
			return nil, false
		}
		units = append(units, retryUnit{label: tc.GetName(), names: []string{tc.GetName()},
			step: jobStep{name: s.name, native: &st}})
	}
	return units, true
}

// rerunStep returns the command that runs only tc of the native step st
// (st with its arguments changed: its environment and other settings stay),
// or false when the step's test runner cannot run one test alone.
func rerunStep(dir string, st step, tc *pontusv1.TestCase) (step, bool) {
	argv := st.argv
	ns := st
	switch {
	case len(argv) >= 2 && argv[0] == "go" && argv[1] == "test":
		var ok bool
		ns.argv, ok = goRerun(argv, tc)
		return ns, ok
	case isPytest(argv):
		id, ok := pytestNodeID(dir, tc)
		if !ok {
			return step{}, false
		}
		prefix := pytestPrefix(argv)
		ns.argv = append(append(slices.Clone(prefix), optionsOnly(argv[len(prefix):])...), id)
		return ns, true
	case len(argv) >= 4 && strings.HasPrefix(argv[0], "python") && argv[1] == "-m" && argv[2] == "unittest":
		id, ok := unittestID(tc)
		if !ok {
			return step{}, false
		}
		top := unittestTopDir(argv[3:])
		ns.env = append(slices.Clip(st.env), "PYTHONPATH="+filepath.Join(dir, top))
		ns.argv = []string{argv[0], "-m", "unittest", "-v", id}
		return ns, true
	}
	return step{}, false
}

// goTestName is a name go test prints for a test or subtest.
var goTestName = regexp.MustCompile(`^Test[^\s/]*(/\S+)*$|^(Example|Benchmark|Fuzz)\S*$`)

// goValueFlags are go test's flags that may take their value as the next
// argument.
var goValueFlags = map[string]bool{"timeout": true, "tags": true, "p": true, "parallel": true, "cpu": true,
	"coverprofile": true, "covermode": true, "coverpkg": true, "skip": true, "shuffle": true, "exec": true,
	"ldflags": true, "gcflags": true, "mod": true, "o": true}

// goRerun is the command line that runs one Go test (or subtest) of its
// package with the step's own flags: go test FLAGS -count=1 -run
// '^TestX$/^sub$' PKG.
func goRerun(stepArgv []string, tc *pontusv1.TestCase) ([]string, bool) {
	name := tc.GetName()
	if !goTestName.MatchString(name) {
		return nil, false
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	argv := []string{"go", "test"}
	var patterns []string
	for i := 2; i < len(stepArgv); i++ {
		a := stepArgv[i]
		switch {
		case a == "-run" || a == "-count":
			i++ // and its value
		case strings.HasPrefix(a, "-run=") || strings.HasPrefix(a, "-count="):
		case goValueFlags[strings.TrimLeft(a, "-")] && i+1 < len(stepArgv):
			argv = append(argv, a, stepArgv[i+1])
			i++
		case strings.HasPrefix(a, "-"):
			argv = append(argv, a)
		default:
			patterns = append(patterns, a)
		}
	}
	argv = append(argv, "-count=1", "-run", strings.Join(parts, "/"))
	if pkg := tc.GetSuite(); pkg != "" && !strings.HasPrefix(pkg, "-") && !strings.ContainsAny(pkg, " \t") {
		argv = append(argv, pkg)
	} else {
		argv = append(argv, patterns...) // unknown package: the step's own
	}
	return argv, true
}

// unittestID turns "test_x (pkg.mod.Class.test_x)" (Python 3.11 and later)
// or "test_x (pkg.mod.Class)" (earlier), with or without a subtest suffix,
// into the id unittest runs alone: pkg.mod.Class.test_x.
func unittestID(tc *pontusv1.TestCase) (string, bool) {
	name := tc.GetName()
	method, rest, ok := strings.Cut(name, " (")
	if !ok {
		return "", false
	}
	path, _, ok := strings.Cut(rest, ")")
	if !ok || !dottedIdent.MatchString(path) || !ident.MatchString(method) {
		return "", false
	}
	if strings.HasSuffix(path, "."+method) {
		return path, true
	}
	return path + "." + method, true
}

var (
	ident       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	dottedIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$`)
)

// unittestTopDir is the directory discovery imports tests from: -t, else
// -s, else ".".
func unittestTopDir(args []string) string {
	start, top := ".", ""
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-s", "--start-directory":
			start = args[i+1]
		case "-t", "--top-level-directory":
			top = args[i+1]
		}
	}
	if top != "" {
		return filepath.Clean(top)
	}
	return filepath.Clean(start)
}

// isPytest reports whether argv runs pytest (pytest …, python3 -m pytest …).
func isPytest(argv []string) bool { return len(pytestPrefix(argv)) > 0 }

func pytestPrefix(argv []string) []string {
	switch {
	case len(argv) >= 1 && filepath.Base(argv[0]) == "pytest":
		return argv[:1:1]
	case len(argv) >= 3 && strings.HasPrefix(filepath.Base(argv[0]), "python") && argv[1] == "-m" && argv[2] == "pytest":
		return argv[:3:3]
	}
	return nil
}

// optionsOnly keeps the options of pytest's arguments (those starting with
// "-", with the value of those that take the next argument) and drops the
// paths to collect.
func optionsOnly(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case pytestValueFlags[a] && i+1 < len(args):
			out = append(out, a, args[i+1])
			i++
		case strings.HasPrefix(a, "-"):
			out = append(out, a)
		}
	}
	return out
}

// pytestValueFlags are pytest options whose value may be the next argument.
var pytestValueFlags = map[string]bool{"-p": true, "-k": true, "-m": true, "-c": true, "-o": true,
	"--rootdir": true, "--junitxml": true, "--junit-xml": true, "--basetemp": true, "--confcutdir": true}

// pytestNodeID is tc's pytest node id: its name when it is one
// ("tests/test_a.py::test_x[1]"), else built from a JUnit classname
// ("tests.test_a.TestC") whose module file exists in the checkout.
func pytestNodeID(dir string, tc *pontusv1.TestCase) (string, bool) {
	name := tc.GetName()
	if strings.HasPrefix(name, "-") || strings.ContainsAny(name, "\n\x00") {
		return "", false
	}
	if file, _, ok := strings.Cut(name, "::"); ok && strings.HasSuffix(file, ".py") {
		return name, true
	}
	parts := strings.Split(tc.GetSuite(), ".")
	for k := len(parts); k >= 1; k-- {
		file := filepath.Join(parts[:k]...) + ".py"
		if !filepath.IsLocal(file) {
			return "", false
		}
		if fi, err := os.Stat(filepath.Join(dir, file)); err == nil && fi.Mode().IsRegular() {
			return strings.Join(append([]string{filepath.ToSlash(file)}, append(parts[k:], name)...), "::"), true
		}
	}
	return "", false
}

// failedLeaves returns the failed (or errored) tests that have no failed
// subtest: a Go test fails with its subtests, which are re-run instead.
func failedLeaves(tests []*pontusv1.TestCase) []*pontusv1.TestCase {
	var out []*pontusv1.TestCase
	for _, tc := range tests {
		if !bad(tc.GetOutcome()) {
			continue
		}
		leaf := true
		for _, o := range tests {
			if bad(o.GetOutcome()) && strings.HasPrefix(o.GetName(), tc.GetName()+"/") {
				leaf = false
				break
			}
		}
		if leaf {
			out = append(out, tc)
		}
	}
	return out
}

// settleParents makes a failed Go test whose failed subtests all turned out
// flaky flaky itself, with the most runs of those subtests.
func settleParents(tests []*pontusv1.TestCase) {
	// Deepest first, so a grandparent sees its children settled.
	order := slices.Clone(tests)
	slices.SortStableFunc(order, func(a, b *pontusv1.TestCase) int {
		return strings.Count(b.GetName(), "/") - strings.Count(a.GetName(), "/")
	})
	for _, tc := range order {
		if !bad(tc.GetOutcome()) {
			continue
		}
		kids, flaky, runs := 0, 0, int32(0)
		for _, o := range tests {
			if rest, ok := strings.CutPrefix(o.GetName(), tc.GetName()+"/"); ok && !strings.Contains(rest, "/") {
				switch o.GetOutcome() {
				case pontusv1.TestOutcome_TEST_OUTCOME_FLAKY:
					kids++
					flaky++
					runs = max(runs, o.GetRuns())
				case pontusv1.TestOutcome_TEST_OUTCOME_FAILED, pontusv1.TestOutcome_TEST_OUTCOME_ERROR:
					kids++
				}
			}
		}
		if kids > 0 && flaky == kids {
			tc.Outcome, tc.Runs = pontusv1.TestOutcome_TEST_OUTCOME_FLAKY, runs
		}
	}
}

func bad(o pontusv1.TestOutcome) bool {
	return o == pontusv1.TestOutcome_TEST_OUTCOME_FAILED || o == pontusv1.TestOutcome_TEST_OUTCOME_ERROR
}

func testNames(tests []*pontusv1.TestCase) []string {
	names := make([]string, len(tests))
	for i, tc := range tests {
		names[i] = tc.GetName()
	}
	return names
}
