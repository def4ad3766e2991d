package runnerd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// noTestsReason is the ERROR reason when auto-detection finds nothing.
const noTestsReason = "no tests found: looked for tests/*.py (Python unittest or pytest) and go.mod + tests/*_test.go (Go)"

// step is what a job runs natively.
type step struct {
	argv []string
	// env is added to the step's environment.
	env []string
	// detected is true when the command was chosen from the checkout's files.
	detected bool
	// pytest says why the tests are a pytest suite ("conftest.py found");
	// the runner then chooses the interpreter and the JUnit file.
	pytest string
	// junit is the JUnit report the step writes outside the checkout.
	junit string
}

// detectTests chooses how to run the tests of the checkout in dir from
// what its files call for. ok is false when there is nothing to run.
func detectTests(dir string) (step, bool) {
	tests := filepath.Join(dir, "tests")
	if why := pytestWhy(dir); why != "" {
		return step{argv: []string{"python3", "-m", "pytest"}, pytest: why, detected: true}, true
	}
	if hasFile(tests, "*.py") {
		return step{
			argv: []string{"python3", "-m", "unittest", "discover", "-s", "tests", "-v"},
			// Unbuffered, so the test's prints and unittest's report stay in order.
			env:      []string{"PYTHONUNBUFFERED=1"},
			detected: true,
		}, true
	}
	if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && fi.Mode().IsRegular() && hasFile(tests, "*_test.go") {
		return step{argv: []string{"go", "test", "-v", "./tests/..."}, detected: true}, true
	}
	return step{}, false
}

// hasFile reports whether dir holds a regular file matching pattern.
func hasFile(dir, pattern string) bool {
	matches, _ := filepath.Glob(filepath.Join(dir, pattern))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// stepEnv is the environment of a job's step: environ (the runner's own)
// without Pontus's credentials and settings (every PONTUS_* variable) and
// without CI, plus the CI metadata of job and extra.
func stepEnv(environ []string, job *pontusv1.Job, extra []string) []string {
	env := make([]string, 0, len(environ)+8+len(extra))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k == "CI" || k == "PONTUS" || strings.HasPrefix(k, "PONTUS_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"CI=true",
		"PONTUS=true",
		"PONTUS_COMMIT="+job.GetCommit(),
		"PONTUS_BRANCH="+job.GetBranch(),
		"PONTUS_BUILD_ID="+strconv.FormatInt(job.GetBuildId(), 10),
		"PONTUS_JOB_ATTEMPT="+strconv.FormatInt(int64(job.GetAttempt()), 10),
		"PONTUS_REPO="+job.GetRepo(),
	)
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		if _, set := lookup(env, k); !set {
			env = append(env, kv)
		}
	}
	return env
}

func lookup(env []string, key string) (string, bool) {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
