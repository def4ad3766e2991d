package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/syncbuf"
	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/internal/validate"
)

// processHost returns a Host of its own with IsolationProcess, recording
// the pids of its guest processes.
func processHost(t testing.TB, cfg HostConfig) (*Host, *pidLog) {
	t.Helper()
	cfg.Isolation = IsolationProcess
	h := newHost(t, cfg)
	pids := &pidLog{}
	h.onGuestStart = pids.add
	return h, pids
}

type pidLog struct {
	mu   sync.Mutex
	pids []int
}

func (l *pidLog) add(pid int) {
	l.mu.Lock()
	l.pids = append(l.pids, pid)
	l.mu.Unlock()
}

func (l *pidLog) all() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.pids...)
}

// checkGone fails the test unless each guest process, and its process
// group, no longer exists.
func checkGone(t testing.TB, pids *pidLog, want int) {
	t.Helper()
	all := pids.all()
	if len(all) != want {
		t.Fatalf("%d guest processes started, want %d", len(all), want)
	}
	for _, pid := range all {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("guest process %d still exists after Run returned (kill 0: %v)", pid, err)
		}
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists after Run returned (kill 0: %v)", pid, err)
		}
	}
}

func TestIsolationConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  HostConfig
		want string // "" for valid, else the start of the reason
	}{
		{HostConfig{}, ""},
		{HostConfig{Isolation: IsolationInProcess}, ""},
		{HostConfig{Isolation: IsolationProcess, CacheDir: "/var/cache/pontus"}, ""},
		{HostConfig{Isolation: IsolationProcess}, `"process" needs cache_dir`},
		{HostConfig{Isolation: "vm"}, `must be "inprocess" or "process", got "vm"`},
	} {
		err := c.cfg.Validate()
		var ve *validate.Error
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.cfg, err)
		case c.want == "":
		case !errors.As(err, &ve) || ve.Field != "isolation" || !strings.HasPrefix(ve.Reason, c.want):
			t.Errorf("%+v: error %v, want isolation: %s…", c.cfg, err, c.want)
		}
	}
	if got := DefaultHostConfig().Isolation; got != IsolationInProcess {
		t.Errorf("default isolation %q, want %q", got, IsolationInProcess)
	}
}

func TestProcessTAPPlugin(t *testing.T) {
	t.Parallel()
	h, pids := processHost(t, HostConfig{})
	testTAPPlugin(t, h)
	checkGone(t, pids, 2)
}

func TestProcessExitCodes(t *testing.T) {
	t.Parallel()
	h, _ := processHost(t, HostConfig{})
	dir := checkout(t, nil)
	res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"exit", "3"}}, 30*time.Second)
	if res.Status != testrun.Failed || res.ExitCode != 3 {
		t.Errorf("exit 3: status %v exit %d (%q), want failed 3:\n%s", res.Status, res.ExitCode, res.Reason, out)
	}
	res, out = runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"env"}, MemoryLimitMiB: 100}, 30*time.Second, "CI=true")
	if res.Status != testrun.Passed || !strings.Contains(out, "RESULT ok CI=true PWD=/src HOME=/tmp TMPDIR=/tmp GOMEMLIMIT=90MiB\n") {
		t.Errorf("env: status %v (%q), want passed with only the step's and host's variables:\n%s", res.Status, res.Reason, out)
	}
}

func TestProcessTimeouts(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"loop", "sleep"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			h, pids := processHost(t, HostConfig{})
			dir := checkout(t, nil)
			start := time.Now()
			res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{action}}, 2*time.Second)
			if res.Status != testrun.TimedOut || res.ExitCode != -1 || res.Reason != "timed out after 2s" {
				t.Fatalf("status %v exit %d (%q), want timed out:\n%s", res.Status, res.ExitCode, res.Reason, out)
			}
			if !strings.Contains(out, "[pontus] plugin timed out after 2s") {
				t.Errorf("output lacks the timeout marker:\n%s", out)
			}
			checkGone(t, pids, 1)
			t.Logf("%s stopped after %s (timeout 2s)", action, time.Since(start).Round(time.Millisecond))
		})
	}
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		h, pids := processHost(t, HostConfig{})
		dir := checkout(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		var out syncbuf.Buffer
		done := make(chan testrun.Result, 1)
		go func() {
			done <- h.Run(ctx, testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"sleep"}}, Output: &out, Timeout: time.Hour})
		}()
		waitFor(t, "the guest to start sleeping", func() bool { return strings.Contains(out.String(), "sleeping") })
		cancel()
		select {
		case res := <-done:
			if res.Status != testrun.Canceled || res.Reason != "canceled" {
				t.Errorf("status %v (%q), want canceled:\n%s", res.Status, res.Reason, out.String())
			}
		case <-time.After(time.Minute):
			t.Fatalf("Run did not return a minute after cancel; output:\n%s", out.String())
		}
		checkGone(t, pids, 1)
	})
	t.Run("host closed", func(t *testing.T) {
		t.Parallel()
		h, pids := processHost(t, HostConfig{})
		dir := checkout(t, nil)
		var out syncbuf.Buffer
		done := make(chan testrun.Result, 1)
		go func() {
			done <- h.Run(context.Background(), testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"loop"}}, Output: &out, Timeout: time.Hour})
		}()
		waitFor(t, "the guest process to start", func() bool { return len(pids.all()) == 1 })
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		res := <-done
		if res.Status != testrun.Canceled || res.Reason != errHostClosed.Error() {
			t.Errorf("status %v (%q), want canceled %q:\n%s", res.Status, res.Reason, errHostClosed, out.String())
		}
		checkGone(t, pids, 1)
	})
}

func TestProcessMemoryHog(t *testing.T) {
	t.Parallel()
	h, pids := processHost(t, HostConfig{})
	dir := checkout(t, nil)
	res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"mem"}, MemoryLimitMiB: 128}, time.Minute)
	if res.Status != testrun.Errored || res.Reason != "out of memory" {
		t.Fatalf("status %v exit %d (%q), want errored \"out of memory\":\n%s", res.Status, res.ExitCode, res.Reason, tail(out))
	}
	if !strings.Contains(out, "[pontus] plugin out of memory") {
		t.Errorf("output lacks the out-of-memory marker:\n%s", tail(out))
	}
	checkGone(t, pids, 1)
}

func TestProcessSandboxEscapes(t *testing.T) {
	t.Parallel()
	h, _ := processHost(t, HostConfig{})
	testSandboxEscapes(t, h)
}

func TestProcessTmpLimit(t *testing.T) {
	t.Parallel()
	h, _ := processHost(t, HostConfig{TmpLimitMiB: 4})
	dir := checkout(t, nil)
	r, res, out := probe(t, h, dir, "tmpfill")
	if !strings.Contains(r, "written=4MiB err=write /tmp/fill: I/O error") {
		t.Errorf("tmpfill: RESULT %s, want 4 MiB written, then EIO", r)
	}
	const note = "/tmp size limit reached (4 MiB): writes beyond it failed with EIO"
	if res.Status != testrun.Passed || res.Reason != note || !strings.Contains(out, "[pontus] "+note) {
		t.Errorf("status %v (%q), want passed with reason %q:\n%s", res.Status, res.Reason, note, out)
	}
}

func TestProcessOutputCap(t *testing.T) {
	t.Parallel()
	testOutputCap(t, IsolationProcess)
}

func TestProcessRunGoTests(t *testing.T) {
	t.Parallel()
	h, pids := processHost(t, HostConfig{})
	testRunGoTests(t, h)
	checkGone(t, pids, 1)
}

func TestGuestMainBadRequest(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		code int
		want string
	}{
		{"not json", 2, "read the run description"},
		{`{"unknown": 1}`, 2, "unknown field"},
		{`{"cache_dir": "relative"}`, 3, "compilation cache dir \"relative\" is not an absolute path"},
	} {
		var stdout, stderr, result bytes.Buffer
		code := GuestMain(context.Background(), strings.NewReader(c.in), &stdout, &stderr, &result)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", c.in, code, stderr.String(), c.code, c.want)
		}
		var rep guestReport
		if c.code == 3 && (json.Unmarshal(result.Bytes(), &rep) != nil || !strings.Contains(rep.Error, c.want)) {
			t.Errorf("%q: result %q lacks %q", c.in, result.String(), c.want)
		}
	}
}
