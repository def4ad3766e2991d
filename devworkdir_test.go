package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pontus-ci/pontus/runnerd"
)

// A root pontus dev whose data directory step_user cannot reach (a repo
// under /root, say) keeps its runner's workdir where step_user can; one it
// can reach keeps everything under the data directory.
func TestDevWorkdirReachableByStepUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("step_user applies to a runner running as root")
	}
	alt := t.TempDir()
	for _, d := range []string{alt, filepath.Dir(alt)} { // the test's temp root is 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := devRootWorkdirs
	devRootWorkdirs = alt
	t.Cleanup(func() { devRootWorkdirs = old })

	open := t.TempDir()
	cfg := runnerd.DefaultConfig()
	cfg.Workdir = filepath.Join(open, ".pontus", "runner")
	if got := devWorkdir(cfg, filepath.Join(open, ".pontus")); got != cfg.Workdir {
		t.Errorf("reachable data dir: workdir %s, want %s", got, cfg.Workdir)
	}

	private := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg.Workdir = filepath.Join(private, ".pontus", "runner")
	if runnerd.CheckStepUser(cfg) == nil {
		t.Fatal("step_user can reach a directory under a 0700 one")
	}
	got := devWorkdir(cfg, filepath.Join(private, ".pontus"))
	if !strings.HasPrefix(got, alt+string(filepath.Separator)) {
		t.Fatalf("private data dir: workdir %s, want one under %s", got, alt)
	}
	cfg.Workdir = got
	if err := runnerd.CheckStepUser(cfg); err != nil {
		t.Errorf("the workdir dev chose: %v", err)
	}
}
