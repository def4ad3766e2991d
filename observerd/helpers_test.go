package observerd

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/git"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// ---- git helpers -----------------------------------------------------------

// gitT runs git in dir with a fixed identity and no user or system config,
// and returns its trimmed output.
func gitT(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	full := append([]string{
		"-c", "user.name=Pontus Test", "-c", "user.email=test@pontus.invalid",
		"-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false",
	}, args...)
	cmd := git.Command(context.Background(), dir, full...)
	cmd.Env = append(cmd.Env, "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRepo creates a repository on branch main with one commit.
func newRepo(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	gitT(tb, dir, "init", "--quiet", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("hello\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	gitT(tb, dir, "add", "README")
	gitT(tb, dir, "commit", "--quiet", "-m", "first")
	return dir
}

// commit makes an empty commit on the checked-out branch and returns its id.
func commit(tb testing.TB, dir, msg string) string {
	tb.Helper()
	gitT(tb, dir, "commit", "--quiet", "--allow-empty", "-m", msg)
	return gitT(tb, dir, "rev-parse", "HEAD")
}

func headOf(tb testing.TB, dir, branch string) string {
	tb.Helper()
	return gitT(tb, dir, "rev-parse", "refs/heads/"+branch)
}

func realpath(tb testing.TB, p string) string {
	tb.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// ---- fake control plane ----------------------------------------------------

type report struct {
	Repo     string
	Branch   string
	Commits  []string
	CloneURL string
	Labels   []string
}

// fakeCP is an ObserverService that keeps cursors as the real control
// plane does, records every report, and can be taken down and brought back
// on the same address.
type fakeCP struct {
	pontusv1connect.UnimplementedObserverServiceHandler
	tb testing.TB

	mu         sync.Mutex
	cursors    map[[2]string]string
	reports    []report
	getCursors int
	failNext   int             // answer this many calls with unavailable
	reject     map[string]bool // branches whose reports are refused
	onReport   func(report)
	details    map[string]*pontusv1.CommitInfo // by commit id, as reported
	requests   []*pontusv1.ReportCommitsRequest

	addr string
	srv  *http.Server
	done chan struct{}
}

func newFakeCP(tb testing.TB) *fakeCP {
	tb.Helper()
	f := &fakeCP{tb: tb, cursors: make(map[[2]string]string), addr: "127.0.0.1:0"}
	f.start()
	tb.Cleanup(f.stop)
	return f
}

func (f *fakeCP) URL() string { return "http://" + f.addr }

// start serves on f.addr (the same port after a stop).
func (f *fakeCP) start() {
	f.tb.Helper()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.tb.Fatalf("fake control plane: %v", err)
	}
	f.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle(pontusv1connect.NewObserverServiceHandler(f))
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	f.srv = &http.Server{Handler: mux, Protocols: &p, ReadHeaderTimeout: 5 * time.Second}
	f.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.tb.Errorf("fake control plane: %v", err)
		}
	}(f.srv, f.done)
}

// stop closes the listener and every connection: the control plane is down.
func (f *fakeCP) stop() {
	if f.srv == nil {
		return
	}
	if err := f.srv.Close(); err != nil {
		f.tb.Errorf("stop fake control plane: %v", err)
	}
	<-f.done
	f.srv = nil
}

func (f *fakeCP) failing() error {
	if f.failNext > 0 {
		f.failNext--
		return connect.NewError(connect.CodeUnavailable, errors.New("fake control plane is failing"))
	}
	return nil
}

func (f *fakeCP) ReportCommits(_ context.Context, req *pontusv1.ReportCommitsRequest) (*pontusv1.ReportCommitsResponse, error) {
	if err := validate.Repo("repo", req.GetRepo()); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := validate.Branch("branch", req.GetBranch()); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if len(req.GetCommits()) == 0 || len(req.GetCommits()) > 1000 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("commits: %d", len(req.GetCommits())))
	}
	for _, c := range req.GetCommits() {
		if err := validate.CommitID("commits", c); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	f.mu.Lock()
	if err := f.failing(); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	if f.reject[req.GetBranch()] {
		f.mu.Unlock()
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("branch refused"))
	}
	r := report{
		Repo: req.GetRepo(), Branch: req.GetBranch(), Commits: slices.Clone(req.GetCommits()),
		CloneURL: req.GetCloneUrl(), Labels: slices.Clone(req.GetLabels()),
	}
	f.reports = append(f.reports, r)
	f.requests = append(f.requests, req)
	for _, info := range req.GetDetails() {
		if f.details == nil {
			f.details = make(map[string]*pontusv1.CommitInfo)
		}
		f.details[info.GetId()] = info
	}
	f.cursors[[2]string{r.Repo, r.Branch}] = r.Commits[len(r.Commits)-1]
	hook := f.onReport
	f.mu.Unlock()
	if hook != nil {
		hook(r)
	}
	resp := &pontusv1.ReportCommitsResponse{}
	for _, c := range r.Commits {
		resp.Builds = append(resp.Builds, &pontusv1.Build{Repo: r.Repo, Branch: r.Branch, Commit: c})
	}
	return resp, nil
}

func (f *fakeCP) GetCursor(_ context.Context, req *pontusv1.GetCursorRequest) (*pontusv1.GetCursorResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing(); err != nil {
		return nil, err
	}
	f.getCursors++
	return &pontusv1.GetCursorResponse{Commit: f.cursors[[2]string{req.GetRepo(), req.GetBranch()}]}, nil
}

func (f *fakeCP) cursor(repo, branch string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cursors[[2]string{repo, branch}]
}

func (f *fakeCP) setCursor(repo, branch, commit string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cursors[[2]string{repo, branch}] = commit
}

func (f *fakeCP) failCalls(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = n
}

func (f *fakeCP) failsLeft() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failNext
}

func (f *fakeCP) getCursorCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getCursors
}

// requestOf returns the last report that carried commit, or nil.
func (f *fakeCP) requestOf(commit string) *pontusv1.ReportCommitsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.requests) - 1; i >= 0; i-- {
		if slices.Contains(f.requests[i].GetCommits(), commit) {
			return f.requests[i]
		}
	}
	return nil
}

// detailsOf returns what reports said of a commit, or nil.
func (f *fakeCP) detailsOf(id string) *pontusv1.CommitInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.details[id]
}

func (f *fakeCP) allReports() []report {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reports)
}

// commitsOf returns every commit reported for a branch, in report order,
// from the i-th report of that branch on.
func (f *fakeCP) commitsOf(branch string, from int) []string {
	var out []string
	n := 0
	for _, r := range f.allReports() {
		if r.Branch != branch {
			continue
		}
		if n >= from {
			out = append(out, r.Commits...)
		}
		n++
	}
	return out
}

// waitCursor waits until the branch's cursor is want.
func (f *fakeCP) waitCursor(tb testing.TB, repo, branch, want string) {
	tb.Helper()
	waitFor(tb, 10*time.Second, func() (bool, string) {
		got := f.cursor(repo, branch)
		return got == want, fmt.Sprintf("cursor of %s %s = %q, want %q; reports %+v", repo, branch, got, want, f.allReports())
	})
}

// waitFor polls cond until it holds or the timeout passes, then fails with
// the last state cond described.
func waitFor(tb testing.TB, timeout time.Duration, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v: %s", timeout, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---- observer helpers ------------------------------------------------------

// testConfig watches dir with the given control plane; the poll is an hour
// so local tests prove the file watcher does the work.
func testConfig(tb testing.TB, cp *fakeCP, repo string) Config {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.ControlPlane = dial.URLs(cp.URL())
	cfg.Repo = repo
	cfg.PollInterval = time.Hour
	cfg.DataDir = filepath.Join(tb.TempDir(), "data")
	return cfg
}

// logSink records log messages and forwards them to the test log.
type logSink struct {
	tb testing.TB
	mu sync.Mutex
	n  map[string]int
}

func (s *logSink) Write(p []byte) (int, error) {
	s.tb.Helper()
	s.tb.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (s *logSink) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[msg]
}

type countingHandler struct {
	slog.Handler
	sink *logSink
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.sink.mu.Lock()
	h.sink.n[r.Message]++
	h.sink.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.sink}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.sink}
}

func testLogger(tb testing.TB) (*slog.Logger, *logSink) {
	sink := &logSink{tb: tb, n: make(map[string]int)}
	return slog.New(countingHandler{slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}), sink}), sink
}

// startObserver runs an observer until the returned stop is called (or the
// test ends) and fails the test if Run returns an error.
func startObserver(tb testing.TB, cfg Config) (stop func(), logs *logSink) {
	tb.Helper()
	logger, logs := testLogger(tb)
	o, err := New(cfg, logger)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				tb.Errorf("Run did not return within 10s of cancellation")
			}
		})
	}
	tb.Cleanup(stop)
	return stop, logs
}

// ---- snapshots -------------------------------------------------------------

// snapshot describes every file and directory under root: mode, size,
// modification time and content hash.
func snapshot(tb testing.TB, root string) map[string]string {
	tb.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		desc := fmt.Sprintf("%v %d %s", fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		tb.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}
