package plugins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"

	"github.com/pontus-ci/pontus/internal/testrun"
)

// TestOpenFileLimit has a guest open /src/go.mod in a loop without closing
// it: the opens must fail at the limit (not exhaust the runner's file
// descriptors), and work again once the guest closes its files.
func TestOpenFileLimit(t *testing.T) {
	t.Parallel()
	forModes(t, testOpenFileLimit)
}

func testOpenFileLimit(t *testing.T, mode string) {
	const limit = 32
	h := newHost(t, HostConfig{MaxOpenFiles: limit, Isolation: mode})
	dir := checkout(t, map[string]string{"go.mod": "module example.com/x\n"})
	r, res, out := probe(t, h, dir, "openmany", "/src/go.mod", "500")
	m := regexp.MustCompile(`^ok opened=(\d+) err=(.*) reopen=(.*)$`).FindStringSubmatch(r)
	if m == nil {
		t.Fatalf("RESULT %s", r)
	}
	// The preopened directories the guest uses hold a slot each.
	if n, _ := strconv.Atoi(m[1]); n < limit-2 || n >= limit {
		t.Errorf("the guest opened the file %s times at once, want a little under the limit of %d", m[1], limit)
	}
	if !strings.Contains(m[2], "I/O error") {
		t.Errorf("the open beyond the limit failed with %q, want EIO", m[2])
	}
	if m[3] != "<nil>" {
		t.Errorf("opening the file after closing the others: %s", m[3])
	}
	const note = "open-file limit reached (32 open at once): further opens failed with EIO"
	if res.Status != testrun.Passed || res.Reason != note {
		t.Errorf("status %v (%q), want passed with reason %q", res.Status, res.Reason, note)
	}
	if !strings.Contains(out, "[pontus] "+note+"\n") {
		t.Errorf("output lacks the limit marker:\n%s", out)
	}
}

// TestTmpLimits has a guest fill /tmp, by writes, a write at a far offset
// and a truncate, then create files in it: each must stop at the limit,
// and deleting frees room again.
func TestTmpLimits(t *testing.T) {
	t.Parallel()
	forModes(t, testTmpLimits)
}

func testTmpLimits(t *testing.T, mode string) {
	h := newHost(t, HostConfig{TmpLimitMiB: 4, TmpMaxFiles: 50, Isolation: mode})
	dir := checkout(t, nil)

	r, res, out := probe(t, h, dir, "tmpfill")
	for _, want := range []string{
		"written=4MiB err=write /tmp/fill: I/O error",
		"pwrite=write /tmp/fill: I/O error",
		"truncate=truncate /tmp/fill: I/O error",
		"again=<nil>",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("tmpfill: RESULT %s\nlacks %q", r, want)
		}
	}
	const sizeNote = "/tmp size limit reached (4 MiB): writes beyond it failed with EIO"
	if res.Status != testrun.Passed || res.Reason != sizeNote || !strings.Contains(out, "[pontus] "+sizeNote) {
		t.Errorf("tmpfill: status %v (%q), want passed with reason %q:\n%s", res.Status, res.Reason, sizeNote, out)
	}

	r, res, _ = probe(t, h, dir, "mkmany", "1000")
	// /tmp/d is one of the 50.
	if want := "ok created=49 err=open /tmp/d/49: I/O error again=<nil>"; r != want {
		t.Errorf("mkmany: RESULT %s\nwant %s", r, want)
	}
	if want := "/tmp file limit reached (50 files and directories): creating more failed with EIO"; res.Reason != want {
		t.Errorf("mkmany: reason %q, want %q", res.Reason, want)
	}
}

// TestScratchFSAccounting drives the /tmp file system directly through
// what wazero calls, checking the counts after each step.
func TestScratchFSAccounting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lim := newSandboxLimits(3, 100, 4)
	fsys := scratchFS{sysfs.DirFS(dir), lim}
	check := func(step string, open int, bytes int64, entries int) {
		t.Helper()
		lim.mu.Lock()
		defer lim.mu.Unlock()
		if lim.open != open || lim.bytes != bytes || lim.entries != entries {
			t.Fatalf("after %s: open %d, bytes %d, entries %d; want %d, %d, %d", step, lim.open, lim.bytes, lim.entries, open, bytes, entries)
		}
	}
	must := func(step string, errno experimentalsys.Errno) {
		t.Helper()
		if errno != 0 {
			t.Fatalf("%s: %v", step, errno)
		}
	}
	refused := func(step string, errno experimentalsys.Errno) {
		t.Helper()
		if errno != errLimit {
			t.Fatalf("%s: errno %v, want the limit's %v", step, errno, errLimit)
		}
	}
	write := func(f experimentalsys.File, n int) experimentalsys.Errno {
		_, errno := f.Write(make([]byte, n))
		return errno
	}
	pwrite := func(f experimentalsys.File, n int, off int64) experimentalsys.Errno {
		_, errno := f.Pwrite(make([]byte, n), off)
		return errno
	}

	f1, errno := fsys.OpenFile("a", experimentalsys.O_CREAT|experimentalsys.O_RDWR, 0o644)
	must("create a", errno)
	if _, ok := f1.(experimentalsys.PollableFile); !ok {
		t.Errorf("a /tmp file is no longer a PollableFile")
	}
	check("create a", 1, 0, 1)
	must("write 60", write(f1, 60))
	must("pwrite 10 at 55", pwrite(f1, 10, 55))
	check("pwrite past the end", 1, 65, 1)
	must("pwrite 10 at 0", pwrite(f1, 10, 0))
	check("pwrite inside", 1, 65, 1)
	must("write 40 at 60", write(f1, 40))
	check("write to the limit", 1, 100, 1)
	refused("write beyond the limit", write(f1, 1))
	refused("pwrite beyond the limit", pwrite(f1, 1, 100))
	check("refused writes", 1, 100, 1)
	must("truncate to 50", f1.Truncate(50))
	check("truncate down", 1, 50, 1)
	refused("truncate beyond the limit", f1.Truncate(200))
	if st, _ := f1.Stat(); st.Size != 50 {
		t.Fatalf("size %d after a refused truncate, want 50", st.Size)
	}

	f2, errno := fsys.OpenFile("a", experimentalsys.O_RDWR|experimentalsys.O_TRUNC, 0)
	must("open a with O_TRUNC", errno)
	check("O_TRUNC", 2, 0, 1)
	must("write 30", write(f2, 30))
	must("unlink a", fsys.Unlink("a"))
	check("unlink while open", 2, 30, 0) // the space is freed at the last close
	must("close f1", f1.Close())
	check("close one handle", 1, 30, 0)
	must("close f2", f2.Close())
	check("close the last handle", 0, 0, 0)

	must("mkdir d", fsys.Mkdir("d", 0o755))
	var files []experimentalsys.File
	for _, name := range []string{"d/x", "d/y", "d/z"} {
		f, errno := fsys.OpenFile(name, experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o644)
		must("create "+name, errno)
		files = append(files, f)
	}
	check("three open files", 3, 0, 4)
	_, errno = fsys.OpenFile("d/x", experimentalsys.O_RDONLY, 0)
	refused("open beyond the open-file limit", errno)
	must("close d/z", files[2].Close())
	must("write 20", write(files[0], 20))
	_, errno = fsys.OpenFile("d/w", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o644)
	refused("create beyond the file limit", errno)
	refused("mkdir beyond the file limit", fsys.Mkdir("e", 0o755))
	check("refused creates", 2, 20, 4)
	must("close d/x", files[0].Close())
	must("rename d/y over d/x", fsys.Rename("d/y", "d/x"))
	check("rename over a file", 1, 0, 3)
	must("close d/y", files[1].Close())
	must("unlink d/z", fsys.Unlink("d/z"))
	must("unlink d/x", fsys.Unlink("d/x"))
	must("rmdir d", fsys.Rmdir("d"))
	check("all removed", 0, 0, 0)
	if errno := fsys.Symlink("/etc/passwd", "l"); errno != experimentalsys.EPERM {
		t.Errorf("symlink: %v, want EPERM", errno)
	}
	if notes := lim.notes(); len(notes) != 3 {
		t.Errorf("notes %q, want one per limit", notes)
	}

	// The checkout mount counts its opens too.
	src := srcFS{&sysfs.ReadFS{FS: sysfs.DirFS(dir)}, newSandboxLimits(1, 0, 0)}
	d, errno := src.OpenFile(".", experimentalsys.O_RDONLY, 0)
	must("open /src", errno)
	_, errno = src.OpenFile(".", experimentalsys.O_RDONLY, 0)
	refused("second open of /src", errno)
	must("close /src", d.Close())
	d, errno = src.OpenFile(".", experimentalsys.O_RDONLY, 0)
	must("open /src again", errno)
	must("close /src again", d.Close())
}

// wasmModule returns a valid WASI command module generated here: no
// imports, and a _start that returns, among funcs functions of ops
// arithmetic steps each. salt makes its hash unique.
func wasmModule(funcs, ops int, salt string) []byte {
	uleb := func(b []byte, v uint64) []byte {
		for {
			c := byte(v & 0x7f)
			if v >>= 7; v == 0 {
				return append(b, c)
			}
			b = append(b, c|0x80)
		}
	}
	sleb := func(b []byte, v int64) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
				return append(b, c)
			}
			b = append(b, c|0x80)
		}
	}
	section := func(out []byte, id byte, body []byte) []byte {
		out = uleb(append(out, id), uint64(len(body)))
		return append(out, body...)
	}
	out := []byte("\x00asm\x01\x00\x00\x00")
	out = section(out, 1, []byte{1, 0x60, 0, 0}) // types: func()
	fn := uleb(nil, uint64(funcs))
	for range funcs {
		fn = append(fn, 0)
	}
	out = section(out, 3, fn)
	out = section(out, 7, append(append([]byte{1, 6}, "_start"...), 0, 0)) // export func 0
	code := uleb(nil, uint64(funcs))
	for f := range funcs {
		body := []byte{1, 2, 0x7f} // two i32 locals
		for i := range ops {
			// l0 = (l0 * k) ^ (l1 + i); l1 = rotl(l0, i % 31)
			body = sleb(append(body, 0x20, 0, 0x41), int64(f*31+i))
			body = sleb(append(body, 0x6c, 0x20, 1, 0x41), int64(i))
			body = sleb(append(body, 0x6a, 0x73, 0x22, 0, 0x41), int64(i%31))
			body = append(body, 0x77, 0x21, 1)
		}
		body = append(body, 0x0b)
		code = append(uleb(code, uint64(len(body))), body...)
	}
	out = section(out, 10, code)
	return section(out, 0, append(append([]byte{4}, "salt"...), salt...))
}

// moduleUsers returns h's entry for wasm under the default memory limit,
// and its users.
func moduleUsers(h *Host, wasm []byte) (*moduleEntry, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.modules[moduleKey{pages: uint32(h.cfg.MemoryLimitMiB) * 16, hash: sha256.Sum256(wasm)}]
	if e == nil {
		return nil, 0
	}
	return e, e.users
}

// TestCompileOwnedByHost checks that a compile belongs to the host, not to
// the run that asked first: cancelling that run must not fail another
// waiting for the same module, nor wait for the compile; and Close must
// stop a compile in progress (wazero checks the context only when
// compiling with several workers).
func TestCompileOwnedByHost(t *testing.T) {
	t.Parallel()
	h := newHost(t, HostConfig{CacheDir: t.TempDir()})
	gate := make(chan struct{})
	h.beforeCompile = func() { <-gate }
	dir := checkout(t, nil)
	module := filepath.Join(dir, "gen.wasm")
	wasm := wasmModule(50, 20, t.Name())
	if err := os.WriteFile(module, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context) <-chan testrun.Result {
		done := make(chan testrun.Result, 1)
		go func() {
			done <- h.Run(ctx, testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: module}, Output: io.Discard, Timeout: time.Minute})
		}()
		return done
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := run(ctxA)
	waitFor(t, "the first run to wait for the compile", func() bool { _, n := moduleUsers(h, wasm); return n == 1 })
	doneB := run(context.Background())
	waitFor(t, "the second run to wait for the same compile", func() bool { _, n := moduleUsers(h, wasm); return n == 2 })
	cancelA()
	select {
	case res := <-doneA:
		if res.Status != testrun.Canceled {
			t.Errorf("cancelled run: status %v (%q), want canceled", res.Status, res.Reason)
		}
	case <-time.After(time.Minute):
		t.Fatal("a cancelled run waited for the compile")
	}
	close(gate)
	select {
	case res := <-doneB:
		if res.Status != testrun.Passed {
			t.Errorf("the other run: status %v (%q), want passed", res.Status, res.Reason)
		}
	case <-time.After(time.Minute):
		t.Fatal("the other run did not end")
	}

	// Close during a compile cancels it.
	gate2 := make(chan struct{})
	h.beforeCompile = func() { <-gate2 }
	wasm = wasmModule(50, 20, t.Name()+" again")
	if err := os.WriteFile(module, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	doneC := run(context.Background())
	waitFor(t, "a run to wait for a compile", func() bool { _, n := moduleUsers(h, wasm); return n == 1 })
	e, _ := moduleUsers(h, wasm)
	closed := make(chan error, 1)
	go func() { closed <- h.Close(context.Background()) }()
	waitFor(t, "Close to start", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.closed })
	close(gate2)
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if res := <-doneC; res.Status != testrun.Canceled {
		t.Errorf("run waiting at Close: status %v (%q), want canceled", res.Status, res.Reason)
	}
	<-e.ready
	if !errors.Is(e.err, errHostClosed) {
		t.Errorf("compile stopped by Close ended with %v, want %v", e.err, errHostClosed)
	}
}

// TestRuntimeEviction runs a module under more memory limits than the host
// keeps runtimes for: the idle ones must be closed.
func TestRuntimeEviction(t *testing.T) {
	t.Parallel()
	h := newHost(t, HostConfig{})
	h.maxRuntimes = 2
	dir := checkout(t, nil)
	module := filepath.Join(dir, "gen.wasm")
	if err := os.WriteFile(module, wasmModule(5, 5, t.Name()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mib := range []int{10, 11, 12, 13, 10} {
		res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: module, MemoryLimitMiB: mib}, time.Minute)
		if res.Status != testrun.Passed {
			t.Fatalf("limit %d MiB: status %v (%q)\n%s", mib, res.Status, res.Reason, out)
		}
		h.mu.Lock()
		var limits []string
		for pages := range h.runtimes {
			limits = append(limits, fmt.Sprint(pages/16))
		}
		_, current := h.runtimes[uint32(mib)*16]
		modules := len(h.modules)
		h.mu.Unlock()
		if len(limits) > 2 || !current || modules > 2 {
			t.Errorf("after a run with %d MiB: runtimes for %v MiB and %d modules, want at most 2 including this one", mib, limits, modules)
		}
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.runtimes != nil {
		t.Errorf("Close left runtimes %v", h.runtimes)
	}
}

// TestCachePrune fills a cache directory laid out as wazero lays it out
// and checks what NewHost deletes.
func TestCachePrune(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cache")
	h, err := NewHost(context.Background(), HostConfig{CacheDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	subs, _ := filepath.Glob(filepath.Join(dir, "wazero-*", "wazero-*"))
	if len(subs) != 1 {
		t.Fatalf("wazero cache directories %q, want one", subs)
	}
	cur := subs[0]
	old := filepath.Join(dir, "wazero-v0.0.1", "wazero-v0.0.1-amd64-linux")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	key := func(c byte) string { return strings.Repeat(string(c), 64) }
	files := []struct {
		path string
		size int
		age  time.Duration
		kept bool
	}{
		{filepath.Join(cur, key('a')), 100 << 10, 8 * 24 * time.Hour, false},    // unused for 8 days
		{filepath.Join(old, key('b')), 100 << 10, 10 * 24 * time.Hour, false},   // an older wazero's
		{filepath.Join(cur, key('c')+".123.tmp"), 100 << 10, time.Minute, true}, // being written
		{filepath.Join(cur, key('d')+".456.tmp"), 100 << 10, 48 * time.Hour, false},
		{filepath.Join(cur, "notes.txt"), 10, 30 * 24 * time.Hour, true}, // not wazero's
		{filepath.Join(cur, key('e')), 400 << 10, 3 * time.Hour, false},  // oldest beyond the size limit
		{filepath.Join(cur, key('f')), 400 << 10, 2 * time.Hour, true},
		{filepath.Join(cur, key('0')), 400 << 10, time.Hour, true},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, make([]byte, f.size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.path, now.Add(-f.age), now.Add(-f.age)); err != nil {
			t.Fatal(err)
		}
	}
	// 1 MiB: c (100 KiB, untouchable), f and 0 fit; e does not.
	h, err = NewHost(context.Background(), HostConfig{CacheDir: dir, CacheLimitMiB: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	for _, f := range files {
		_, err := os.Stat(f.path)
		if kept := err == nil; kept != f.kept {
			t.Errorf("%s (%s old): kept %v, want %v", strings.TrimPrefix(f.path, dir), f.age, kept, f.kept)
		}
	}

	// A running host prunes again after a compile, at most hourly.
	stale := filepath.Join(cur, key('9'))
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(stale, now.Add(-30*24*time.Hour), now.Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	h.maybePruneCache()
	if _, err := os.Stat(stale); err != nil {
		t.Errorf("pruned again within the hour: %v", err)
	}
	h.mu.Lock()
	h.lastPrune = now.Add(-2 * cachePruneEvery)
	h.mu.Unlock()
	h.maybePruneCache()
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("not pruned after an hour")
	}
}
