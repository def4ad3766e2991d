package runnerd

import (
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The kernel's children lists and a scan of /proc (the fallback where
// those lists do not exist) find the same descendants.
func TestDescendantsMatchScan(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sh", "-c", "sleep 300 & (sleep 301 & wait) & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range descendants(cmd.Process.Pid) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	var fast, scan []int
	for {
		fast, scan = descendants(cmd.Process.Pid), scanDescendants(cmd.Process.Pid)
		slices.Sort(fast)
		slices.Sort(scan)
		if len(fast) == 3 && slices.Equal(fast, scan) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("descendants %v, scan %v; want the same 3 processes", fast, scan)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
