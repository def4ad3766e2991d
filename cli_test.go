package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pontus-ci/pontus/controlplane"
)

// serveTestControlPlane serves a control plane on 127.0.0.1 for CLI tests.
func serveTestControlPlane(t *testing.T) string {
	t.Helper()
	cfg := controlplane.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.ResultsDir = filepath.Join(t.TempDir(), "results")
	srv, err := controlplane.New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// pontus trigger of a repository no observer reported says what to do
// instead; pontus show of a commit in two repositories asks for --repo,
// and --repo chooses.
func TestCLITriggerAndRepo(t *testing.T) {
	url := serveTestControlPlane(t)
	commit := strings.Repeat("a", 40)
	pontus := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(t.Context(), append([]string{args[0], "--controlplane", url}, args[1:]...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, _, stderr := pontus("trigger", "--repo", "/srv/unknown", "--branch", "main", commit)
	if code != 1 || !strings.Contains(stderr, "permission_denied") || !strings.Contains(stderr, "pontus notify --repo /srv/unknown --branch main "+commit) {
		t.Errorf("trigger of an unreported repository: exit %d, stderr:\n%s", code, stderr)
	}
	for _, repo := range []string{"/srv/app", "/srv/lib"} {
		if code, _, stderr := pontus("notify", "--repo", repo, "--branch", "main", commit); code != 0 {
			t.Fatalf("notify %s: exit %d: %s", repo, code, stderr)
		}
	}
	code, _, stderr = pontus("show", commit)
	if code != 1 || !strings.Contains(stderr, `"/srv/app", "/srv/lib"`) || !strings.Contains(stderr, "--repo") {
		t.Errorf("show of a commit in two repositories: exit %d, stderr:\n%s", code, stderr)
	}
	code, stdout, stderr := pontus("show", "--repo", "/srv/lib", commit)
	if code != 0 || !strings.Contains(stdout, "/srv/lib") {
		t.Errorf("show --repo /srv/lib: exit %d\n%s%s", code, stdout, stderr)
	}
}
