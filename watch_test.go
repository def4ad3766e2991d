package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/syncbuf"
)

// pontus builds --watch prints the builds there are (one WatchBuilds call:
// its snapshot), marks the end of them, then prints each change.
func TestBuildsWatch(t *testing.T) {
	url := serveTestControlPlane(t)
	first, second := strings.Repeat("1a", 20), strings.Repeat("2b", 20)
	if code, _, stderr := pontusAt(t, url, "notify", first, "--repo", "/srv/app", "--branch", "main"); code != 0 {
		t.Fatalf("notify: %s", stderr)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, w := io.Pipe()
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"builds", "--watch", "--controlplane", url, "--branch", "main"}, w, &stderr)
		w.Close()
	}()
	lines := bufio.NewScanner(out)
	next := func() string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("builds --watch ended; stderr:\n%s", stderr.String())
		}
		return lines.Text()
	}
	if l := next(); !strings.Contains(l, first[:10]) || !strings.Contains(l, "QUEUED") {
		t.Fatalf("first line %q, want the queued build of %s", l, first[:10])
	}
	if code, _, stderr := pontusAt(t, url, "notify", "--repo", "/srv/app", "--branch", "main", second); code != 0 {
		t.Fatalf("notify: %s", stderr)
	}
	if l := next(); !strings.Contains(l, second[:10]) {
		t.Fatalf("after the snapshot: %q, want the new build of %s", l, second[:10])
	}
	if !strings.Contains(stderr.String(), "--- watching for changes") {
		t.Errorf("the end of the snapshot is not marked; stderr:\n%s", stderr.String())
	}
	cancel()
	go io.Copy(io.Discard, out)
	if code := <-done; code != 0 {
		t.Errorf("builds --watch ended with exit %d after an interrupt; stderr:\n%s", code, stderr.String())
	}
}
