package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// stopGrace is how long a child process has between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// startTimeout bounds how long a control plane may take to answer after it
// was started.
const startTimeout = 30 * time.Second

// process is a running child: the pontus binary in one of its roles.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{}
	err  error
}

// tail keeps the last bytes a process wrote, for error messages.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 16 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailBytes:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// childEnv is this process's environment without Pontus's own variables
// (tokens, the control plane URL), so a bench never sends a real token to
// the throwaway daemons it starts, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PONTUS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startProcess starts binary with args in dir. It does not wait for the
// process to be ready.
func startProcess(name, binary, dir string, env []string, args ...string) (*process, error) {
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = env
	p := &process{name: name, cmd: cmd, out: &tail{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to stopGrace, then SIGKILLs. It returns an
// error when the process had to be killed or exited with a failure after
// SIGTERM (a clean shutdown exits 0). Calling it again is harmless.
func (p *process) stop() error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM: %s", p.name, p.err, lastLines(p.out.String(), 5))
		}
		return nil
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, stopGrace)
	}
}

// exitErr describes a process that ended early.
func (p *process) exitErr() error {
	return fmt.Errorf("%s exited early (%v): %s", p.name, p.err, lastLines(p.out.String(), 10))
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// controlPlane is a control plane process.
type controlPlane struct {
	*process
	url string
}

// startControlPlane starts `binary controlplane` with its state and results
// under dir, on a free loopback port, and waits until it answers. A port
// taken between choosing it and binding it is retried with another.
func startControlPlane(ctx context.Context, binary, dir string, extraEnv []string, extraArgs ...string) (*controlPlane, error) {
	var lastErr error
	for try := 0; try < 3; try++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		args := append([]string{"controlplane", "--listen", addr,
			"--data", filepath.Join(dir, "controlplane"), "--results", filepath.Join(dir, "results"),
			"--log-level", "warn"}, extraArgs...)
		p, err := startProcess("control plane", binary, dir, childEnv(extraEnv...), args...)
		if err != nil {
			return nil, err
		}
		cp := &controlPlane{process: p, url: "http://" + addr}
		err = waitReady(ctx, cp)
		if err == nil {
			return cp, nil
		}
		_ = p.stop()
		lastErr = err
		if !strings.Contains(p.out.String(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// waitReady waits until the control plane answers ListRunners, failing at
// once if the process exits.
func waitReady(ctx context.Context, cp *controlPlane) error {
	hc, err := dial.HTTPClient(dial.Config{URL: cp.url})
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	client := pontusv1connect.NewBuildServiceClient(hc, cp.url)
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		if cp.exited() {
			return cp.exitErr()
		}
		callCtx, callCancel := context.WithTimeout(ctx, time.Second)
		_, err := client.ListRunners(callCtx, &pontusv1.ListRunnersRequest{})
		callCancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("control plane at %s did not answer within %s (last error: %v): %s",
					cp.url, startTimeout, err, lastLines(cp.out.String(), 10))
			}
			return ctx.Err()
		}
		if code := connect.CodeOf(err); code != connect.CodeUnavailable && code != connect.CodeUnknown &&
			code != connect.CodeDeadlineExceeded {
			return fmt.Errorf("control plane at %s answered ListRunners with %w", cp.url, err)
		}
		dial.Sleep(ctx, 20*time.Millisecond) // a deadline is reported at the top
	}
}

// CheckLoopbackURL accepts only an http(s) URL whose host is a loopback
// address (127.0.0.0/8, ::1 or localhost): benches send load nowhere else.
func CheckLoopbackURL(raw string) error {
	if err := dial.CheckURL(raw); err != nil {
		return err
	}
	u, _ := url.Parse(raw)
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("control plane URL %q: benches send load only to a loopback address (127.0.0.1, ::1 or localhost), not %q", raw, host)
}

// procSample is one reading of a process's counters.
type procSample struct {
	cpu time.Duration // user + system time so far
	rss int64         // resident set size in bytes
}

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// readProc reads the CPU time and RSS of pid from /proc.
func readProc(pid int) (procSample, error) {
	base := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(base, "stat"))
	if err != nil {
		return procSample{}, fmt.Errorf("read CPU time of process %d (needs Linux /proc): %w", pid, err)
	}
	cpu, err := parseStatCPU(string(stat))
	if err != nil {
		return procSample{}, fmt.Errorf("process %d: %w", pid, err)
	}
	status, err := os.ReadFile(filepath.Join(base, "status"))
	if err != nil {
		return procSample{}, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	rss, err := parseStatusRSS(string(status))
	if err != nil {
		return procSample{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return procSample{cpu: cpu, rss: rss}, nil
}

// parseStatCPU returns utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) is in parentheses and may hold spaces or ')', so
// fields are counted after its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse /proc stat: no ')' after the command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// parseStatusRSS returns VmRSS in bytes from the text of /proc/<pid>/status.
func parseStatusRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse /proc status: VmRSS line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc status: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("parse /proc status: no VmRSS line (a zombie process?)")
}

// mib converts bytes to MiB for figures.
func mib(b int64) float64 { return float64(b) / (1 << 20) }
