package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the pontus binary: with PONTUS_TEST_AS_MAIN
// set it runs main with its arguments, so start-up is tested in real
// processes.
func TestMain(m *testing.M) {
	if os.Getenv("PONTUS_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// pontusProcess returns a command running this binary as pontus in dir.
func pontusProcess(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PONTUS_TEST_AS_MAIN=1")
	return cmd
}

// startServing starts a control plane and waits until it logs that it
// serves; it is SIGKILLed at the end of the test.
func startServing(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := pontusProcess(t, dir, append([]string{"controlplane", "--listen", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), "control plane serving") {
			go io.Copy(io.Discard, stderr)
			return cmd
		}
	}
	t.Fatalf("control plane exited before serving:\n%s", strings.Join(seen, "\n"))
	return nil
}

// failedStart runs cmd, which must fail with exactly one line on stderr.
func failedStart(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatalf("%v started; want a failure", cmd.Args[1:])
	}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	if len(lines) != 1 || stdout.Len() > 0 {
		t.Fatalf("%v: want one line on stderr and nothing on stdout, got stdout %q stderr:\n%s", cmd.Args[1:], stdout.String(), stderr.String())
	}
	return lines[0]
}

// tree lists every path below dir.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestSecondControlPlaneOnOneDataDirIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := startServing(t, dir, "--data", "state", "--results", "results")
	before := tree(t, dir)

	line := failedStart(t, pontusProcess(t, dir, "controlplane", "--listen", "127.0.0.1:0", "--data", "state", "--results", "results"))
	want := fmt.Sprintf("pontus controlplane: data_dir state is locked by pid %d", first.Process.Pid)
	if line != want {
		t.Fatalf("second control plane said %q, want %q", line, want)
	}
	if after := tree(t, dir); !slices.Equal(before, after) {
		t.Fatalf("the refused start changed the files: before %v, after %v", before, after)
	}

	// A lock left by a killed control plane does not block a restart.
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	startServing(t, dir, "--data", "state", "--results", "results")
}

func TestFailedStartsLeaveNoFiles(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notGit := t.TempDir()
	tlsConfig := filepath.Join(t.TempDir(), "pontus.toml")
	if err := os.WriteFile(tlsConfig, []byte("[controlplane]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"port busy", []string{"controlplane", "--listen", busy.Addr().String(), "--data", "new/state"}, "address already in use"},
		{"dev, port busy", []string{"dev", "--repo", repo, "--listen", busy.Addr().String()}, "address already in use"},
		{"dev, not a git repository", []string{"dev", "--repo", notGit, "--listen", "127.0.0.1:0"}, "is it a git repository?"},
		{"observerd, not a git repository", []string{"observerd", "--repo", notGit}, "is it a git repository?"},
		{"bad flag value", []string{"controlplane", "--listen", "nonsense", "--data", "new/state"}, "controlplane.listen"},
		{"missing TLS certificate", []string{"controlplane", "--config", tlsConfig, "--data", "new/state"}, "load TLS certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			line := failedStart(t, pontusProcess(t, dir, c.args...))
			if !strings.Contains(line, c.want) {
				t.Errorf("got %q, want it to mention %q", line, c.want)
			}
			if left := tree(t, dir); len(left) > 0 {
				t.Errorf("a failed start left %v", left)
			}
		})
	}
}

// A failed start after a clean stop leaves the existing state as it was.
func TestFailedStartKeepsExistingState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cp := startServing(t, dir, "--data", "state", "--results", "results")
	cp.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cp.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("control plane stopped with %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("control plane did not stop within a minute of SIGTERM")
	}
	before := tree(t, dir)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	failedStart(t, pontusProcess(t, dir, "controlplane", "--listen", busy.Addr().String(), "--data", "state", "--results", "results"))
	if after := tree(t, dir); !slices.Equal(before, after) {
		t.Fatalf("files changed: before %v, after %v", before, after)
	}
}

// pontus backup copies a serving control plane's state, and the copy
// serves (the copy holds no lock, so it starts while the original runs).
func TestBackupCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	startServing(t, dir, "--data", "state", "--results", "results")
	out, err := pontusProcess(t, dir, "backup", "--data", "state", "--to", "copy").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "backed up state to copy: 0 builds") {
		t.Fatalf("pontus backup: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "copy", "lock")); err == nil {
		t.Fatal("the copy holds the lock file")
	}
	startServing(t, dir, "--data", "copy", "--results", "results2")
	line := failedStart(t, pontusProcess(t, dir, "backup", "--data", "state", "--to", "copy"))
	if !strings.Contains(line, "copy is not empty") {
		t.Fatalf("backup over a backup: %q", line)
	}
}

// pontus dev holds its control plane's data_dir too; the banner comes only
// once everything started.
func TestSecondDevOnOneDataDirIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", dir).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	first := pontusProcess(t, dir, "dev", "--listen", "127.0.0.1:0", "--quiet")
	stdout, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Process.Kill(); first.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "pontus dev: watching") {
		t.Fatalf("first dev printed %q (%v)", line, err)
	}
	go io.Copy(io.Discard, stdout)
	got := failedStart(t, pontusProcess(t, dir, "dev", "--listen", "127.0.0.1:0", "--quiet"))
	want := fmt.Sprintf("pontus dev: data_dir %s is locked by pid %d", filepath.Join(".pontus", "controlplane"), first.Process.Pid)
	if got != want {
		t.Fatalf("second dev said %q, want %q", got, want)
	}
}
