package runnerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/syncbuf"
	"github.com/pontus-ci/pontus/internal/testrun"
)

func runNative(t *testing.T, ctx context.Context, script string, timeout time.Duration) (testrun.Result, string) {
	t.Helper()
	var out syncbuf.Buffer
	res := NewNative(nil).Run(ctx, testrun.Spec{
		Dir:       t.TempDir(),
		Command:   []string{"sh", "-c", script},
		Env:       os.Environ(),
		Output:    &out,
		Timeout:   timeout,
		KillGrace: 300 * time.Millisecond,
	})
	return res, out.String()
}

func TestNativeStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		script string
		want   testrun.Status
		code   int
		out    string
	}{
		{"true", testrun.Passed, 0, ""},
		{"echo a; echo b >&2; echo c; exit 0", testrun.Passed, 0, "a\nb\nc\n"},
		{"echo failing >&2; exit 3", testrun.Failed, 3, "failing\n"},
		{"kill -KILL $$", testrun.Failed, 137, ""},
		{"no-such-command-here", testrun.Failed, 127, "not found"},
		{"pwd", testrun.Passed, 0, "/"},
	} {
		res, out := runNative(t, t.Context(), tc.script, time.Minute)
		if res.Status != tc.want || res.ExitCode != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("%q: %v exit %d %q, output %q; want %v exit %d output with %q", tc.script, res.Status, res.ExitCode, res.Reason, out, tc.want, tc.code, tc.out)
		}
	}
}

func TestNativeBadSpec(t *testing.T) {
	t.Parallel()
	n := NewNative(nil)
	if res := n.Run(t.Context(), testrun.Spec{}); res.Status != testrun.Errored || res.Reason != "no command to run" {
		t.Errorf("empty command: %+v", res)
	}
	if res := n.Run(t.Context(), testrun.Spec{Command: []string{"true"}, Plugin: &testrun.Plugin{Name: "p"}}); res.Status != testrun.Errored {
		t.Errorf("plugin: %+v", res)
	}
	if res := n.Run(t.Context(), testrun.Spec{Command: []string{"true"}, Dir: "/no/such/dir"}); res.Status != testrun.Errored || !strings.Contains(res.Reason, "start") {
		t.Errorf("bad dir: %+v", res)
	}
}

// A process the step leaves behind is killed when the step ends; so are a
// timed-out step's processes, even one that ignores SIGTERM.
func TestNativeKillsGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res, _ := runNative(t, t.Context(), "sleep 300 & echo $! > "+dir+"/left; exit 0", time.Minute)
	if res.Status != testrun.Passed {
		t.Fatalf("%+v", res)
	}
	waitGone(t, readPID(t, dir+"/left"))

	script := "trap '' TERM; sleep 300 & echo $! > " + dir + "/child; echo $$ > " + dir + "/shell; sleep 300"
	res, _ = runNative(t, t.Context(), script, time.Second)
	if res.Status != testrun.TimedOut || res.Reason != "timed out after 1s" || res.ExitCode != -1 {
		t.Fatalf("%+v", res)
	}
	waitGone(t, readPID(t, dir+"/child"), readPID(t, dir+"/shell"))
}

func TestNativeCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancelCause(t.Context())
	go func() {
		readPID(t, filepath.Join(dir, "shell"))
		cancel(errors.New("build canceled by alice"))
	}()
	res, _ := runNative(t, ctx, "sleep 300 & echo $! > "+dir+"/child; echo $$ > "+dir+"/shell; sleep 300", time.Minute)
	if res.Status != testrun.Canceled || res.Reason != "build canceled by alice" {
		t.Fatalf("%+v", res)
	}
	waitGone(t, readPID(t, dir+"/child"), readPID(t, dir+"/shell"))

	res, _ = runNative(t, ctx, "true", time.Minute)
	if res.Status != testrun.Canceled {
		t.Errorf("already canceled: %+v", res)
	}
}

// An output writer that fails does not block the step.
func TestNativeFailingWriter(t *testing.T) {
	t.Parallel()
	res := NewNative(nil).Run(t.Context(), testrun.Spec{
		Dir:     t.TempDir(),
		Command: []string{"sh", "-c", "head -c 5000000 /dev/zero"},
		Output:  failingWriter{},
		Timeout: time.Minute,
	})
	if res.Status != testrun.Passed {
		t.Errorf("%+v", res)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// Nothing a step starts outlives it: not a child that left the step's
// session (setsid), not one double-forked away from its parent, not one
// that ignores SIGTERM. What the step left running is killed and named.
func TestNativeNothingOutlivesStep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// execed waits until process $p runs sleep.
	const execed = `until grep -qa '^sleep' /proc/$p/cmdline; do sleep 0.01; done; `
	res, out := runNative(t, t.Context(), "setsid sleep 301 & p=$!; echo $p > "+dir+"/setsid; "+execed+
		"(setsid sleep 302 & p=$!; echo $p > "+dir+"/double; "+execed+"); exit 0", time.Minute)
	if res.Status != testrun.Passed {
		t.Fatalf("%+v\n%s", res, out)
	}
	setsid, double := readPID(t, dir+"/setsid"), readPID(t, dir+"/double")
	waitGone(t, setsid, double)
	for _, want := range []string{"[pontus: killed 2 processes left behind: ", fmt.Sprintf("sleep 301 (pid %d)", setsid), fmt.Sprintf("sleep 302 (pid %d)", double)} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// A timed-out step whose child left the session and ignores SIGTERM.
	script := "setsid sh -c 'trap \"\" TERM; echo $$ > " + dir + "/stubborn; while :; do sleep 1; done' & sleep 300"
	res, out = runNative(t, t.Context(), script, time.Second)
	if res.Status != testrun.TimedOut {
		t.Fatalf("%+v\n%s", res, out)
	}
	waitGone(t, readPID(t, dir+"/stubborn"))
}
