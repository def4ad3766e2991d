package runnerd

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/plugins"
)

// tableGrowModule assembles a WASI command module that grows a table
// declared without a maximum, 65536 elements at a time, for ever: each
// table.grow is one instruction that makes the host allocate 512 KiB
// outside the guest's memory cap. It is the binary form of:
//
//	(module
//	  (table 0 funcref)
//	  (func (export "_start")
//	    (loop
//	      (drop (table.grow 0 (ref.null func) (i32.const 65536)))
//	      (br 0))))
func tableGrowModule() []byte {
	section := func(id byte, body ...byte) []byte {
		return append([]byte{id, byte(len(body))}, body...)
	}
	code := []byte{0, 0x03, 0x40, 0xd0, 0x70, 0x41, 0x80, 0x80, 0x04, 0xfc, 15, 0, 0x1a, 0x0c, 0, 0x0b, 0x0b}
	var out []byte
	out = append(out, "\x00asm\x01\x00\x00\x00"...)
	out = append(out, section(1, 1, 0x60, 0, 0)...)                                      // type: func()
	out = append(out, section(3, 1, 0)...)                                               // one function
	out = append(out, section(4, 1, 0x70, 0, 0)...)                                      // table 0 funcref, no maximum
	out = append(out, section(7, append(append([]byte{1, 6}, "_start"...), 0, 0)...)...) // export
	out = append(out, section(10, append([]byte{1, byte(len(code))}, code...)...)...)    // code
	return out
}

// statusKiB reads a "<key>: <n> kB" line of /proc/self/status.
func statusKiB(t testing.TB, key string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("parse %s: %v", key, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

// TestTableGrowingModule runs a repository's tests/grow.wasm that grows a
// table without end (the 227-byte module that once took a runner to 7 GB)
// on a sandbox-only runner with a 16 MiB cap, in each isolation mode: the
// job must end at its deadline, the runner must keep heartbeating while it
// runs, and the runner's memory must stay where it was. It is not
// parallel, so that the peak RSS it measures is its own.
func TestTableGrowingModule(t *testing.T) {
	for _, mode := range []string{plugins.IsolationProcess, plugins.IsolationInProcess} {
		t.Run(mode, func(t *testing.T) {
			fake := newFakeCP(t)
			fake.heartbeat = 50 * time.Millisecond
			fake.start()
			repo := newRepo(t)
			c := repo.commit(map[string]string{"tests/grow.wasm": string(tableGrowModule())})
			cfg := testConfig(t, fake)
			cfg.Native = false
			cfg.WASMMemoryLimitMiB = 16
			cfg.WASMIsolation = mode
			cfg.Timeout = 3 * time.Second
			startRunner(t, cfg)

			resetPeak := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
			before := statusKiB(t, "VmRSS")
			key := fake.enqueue(repo.dir, c)
			fake.waitFor("a heartbeat naming the job while it runs", func(f *fakeCP) (bool, string) {
				for _, hb := range f.heartbeats {
					for _, l := range hb.GetLeases() {
						if l.GetJobId() == key.id {
							return true, ""
						}
					}
				}
				return false, fmt.Sprint(len(f.heartbeats), " heartbeats")
			})
			req, log := fake.waitDone(key)
			wantStatus(t, req, log, timedOut)
			if !resetPeak {
				t.Logf("cannot reset the peak RSS (/proc/self/clear_refs); not checking it")
				return
			}
			grew := (statusKiB(t, "VmHWM") - before) >> 10
			t.Logf("runner RSS %d MiB before, peak +%d MiB during the job", before>>10, grew)
			if grew > 256 {
				t.Errorf("the runner's RSS grew by %d MiB while a 16 MiB-capped guest grew a table", grew)
			}
		})
	}
}
