//go:build unix

package dirlock

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A helper process (this test binary re-executed) that takes the lock and
// waits: a second process is the only honest test of an flock.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DIRLOCK_TEST_HOLD"); dir != "" {
		if _, err := Acquire(dir, "data_dir", 0o700); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {}
	}
	os.Exit(m.Run())
}

func holder(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DIRLOCK_TEST_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if got := strings.TrimSpace(string(buf[:n])); got != "locked" {
		t.Fatalf("helper: %q", got)
	}
	return cmd
}

func TestSecondProcessIsToldWhoHoldsIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	h := holder(t, dir)
	_, err := Acquire(dir, "data_dir", 0o700)
	var locked *LockedError
	if !errors.As(err, &locked) || locked.PID != h.Process.Pid {
		t.Fatalf("got %v, want locked by pid %d", err, h.Process.Pid)
	}
	want := fmt.Sprintf("data_dir %s is locked by pid %d", dir, h.Process.Pid)
	if err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}

	// SIGKILL the holder: the kernel drops its lock, and a restart takes it.
	h.Process.Signal(syscall.SIGKILL)
	h.Wait()
	l, err := Acquire(dir, "data_dir", 0o700)
	if err != nil {
		t.Fatalf("lock of a dead process blocks: %v", err)
	}
	defer l.Release()
	data, _ := os.ReadFile(filepath.Join(dir, FileName))
	if strings.TrimSpace(string(data)) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("lock file says %q, want our pid %d", data, os.Getpid())
	}
}

func TestAbandonRemovesWhatItCreated(t *testing.T) {
	root := t.TempDir()
	// A directory that did not exist, two levels deep.
	l, err := Acquire(filepath.Join(root, "a", "b"), "data_dir", 0o700)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "a", "b", "pontus.db"), nil, 0o600)
	l.Abandon()
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	// A directory that existed: only the new lock file goes.
	keep := filepath.Join(root, "keep")
	os.Mkdir(keep, 0o700)
	os.WriteFile(filepath.Join(keep, "old"), nil, 0o600)
	l, err = Acquire(keep, "data_dir", 0o700)
	if err != nil {
		t.Fatal(err)
	}
	l.Abandon()
	if ents, _ := os.ReadDir(keep); len(ents) != 1 || ents[0].Name() != "old" {
		t.Fatalf("existing dir now holds %v", ents)
	}
}
