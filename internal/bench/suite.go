package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pontus-ci/pontus/internal/git"
)

// The test suite the latency and idle benches build: two Python unittest
// files, one test each, both passing, and a data file that every bench
// commit changes.
const (
	suiteTestA = `import unittest


class AlphaTest(unittest.TestCase):
    def test_addition(self):
        self.assertEqual(1 + 1, 2)


if __name__ == "__main__":
    unittest.main()
`
	suiteTestB = `import os
import unittest


class BetaTest(unittest.TestCase):
    def test_data_file(self):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "..", "data.txt")) as f:
            self.assertTrue(f.read().startswith("commit"))


if __name__ == "__main__":
    unittest.main()
`
	suiteDataFile = "data.txt"
)

// suiteArgs is how the suite is run directly: what the runner's
// auto-detection runs for a tests/*.py checkout.
var suiteArgs = []string{"-m", "unittest", "discover", "-s", "tests", "-v"}

// suiteRepo is a git repository holding the suite on branch main.
type suiteRepo struct {
	dir string
	n   int // commits made
}

// gitIdentity is passed to every commit so that the user's configuration
// (identity, signing, hooks) plays no part.
var gitIdentity = []string{"-c", "user.name=Pontus Bench", "-c", "user.email=bench@pontus.invalid",
	"-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"}

// newSuiteRepo makes the repository in dir with the suite in its first
// commit and returns it with that commit's id.
func newSuiteRepo(ctx context.Context, dir string) (*suiteRepo, string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tests"), 0o755); err != nil {
		return nil, "", fmt.Errorf("create suite repository: %w", err)
	}
	files := map[string]string{
		"tests/test_alpha.py": suiteTestA,
		"tests/test_beta.py":  suiteTestB,
		suiteDataFile:         "commit 0\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, "", fmt.Errorf("write suite repository: %w", err)
		}
	}
	if _, err := git.Output(ctx, dir, "init", "-q", "-b", "main"); err != nil {
		return nil, "", err
	}
	if _, err := git.Output(ctx, dir, "add", "-A"); err != nil {
		return nil, "", err
	}
	r := &suiteRepo{dir: dir}
	if err := r.commitOnly(ctx); err != nil {
		return nil, "", err
	}
	head, err := r.head(ctx)
	return r, head, err
}

// change rewrites the data file, so the next commit changes a file.
func (r *suiteRepo) change() error {
	content := fmt.Sprintf("commit %d\n", r.n+1)
	if err := os.WriteFile(filepath.Join(r.dir, suiteDataFile), []byte(content), 0o644); err != nil {
		return fmt.Errorf("change %s: %w", suiteDataFile, err)
	}
	return nil
}

// commitOnly commits every tracked change (git commit -a) and returns when
// git does.
func (r *suiteRepo) commitOnly(ctx context.Context) error {
	args := append(append([]string{}, gitIdentity...), "commit", "-q", "-a", "--no-verify", "-m",
		fmt.Sprintf("bench commit %d", r.n))
	if _, err := git.Output(ctx, r.dir, args...); err != nil {
		return err
	}
	r.n++
	return nil
}

func (r *suiteRepo) head(ctx context.Context) (string, error) {
	return git.Output(ctx, r.dir, "rev-parse", "--verify", "HEAD^{commit}")
}

// quietHandler passes on only records at or above min: the daemons a bench
// runs in-process log their warnings, not their routine.
type quietHandler struct {
	slog.Handler
	min slog.Level
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(attrs), h.min}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name), h.min}
}

// daemonLogger is logger restricted to warnings and errors.
func daemonLogger(logger *slog.Logger, component string) *slog.Logger {
	return slog.New(quietHandler{logger.Handler(), slog.LevelWarn}).With("component", component)
}
