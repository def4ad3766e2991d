// Package pgtest runs throwaway PostgreSQL servers from Debian's binaries
// (/usr/lib/postgresql/*/bin) for tests and benchmarks.
//
// A server lives in a temporary directory of its own (data, unix socket,
// log) and listens on a free loopback port. initdb and postgres refuse to
// run as root, so when the process is root they run as the unprivileged
// user "nobody", with the directory chowned to it. The server is started
// with fsync off: it is for tests and benchmarks, never for data that
// matters. If the process that started it dies, the kernel sends the
// postmaster SIGQUIT (an immediate shutdown).
//
// Tests usually share one server per package and take a fresh database
// per test:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		url := pgtest.Shared(t).NewDatabase(t)
//		...
//	}
//
// A test that stops and restarts the server (a chaos test) starts its own
// with Start. Outside tests, NewServer and Server.Remove do the same; the
// package does not import testing, so commands (pontus bench) use it too.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoBinaries is returned (and makes tests skip) when no PostgreSQL
// server binaries are installed.
var ErrNoBinaries = errors.New("PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb; on Debian: apt-get install postgresql)")

// Mode is how Stop shuts the server down, as in `pg_ctl stop -m`.
type Mode int

const (
	// Fast disconnects clients and shuts down cleanly (SIGINT).
	Fast Mode = iota
	// Smart waits for clients to disconnect (SIGTERM).
	Smart
	// Immediate aborts without a checkpoint, like a crash; the next start
	// recovers from the WAL (SIGQUIT).
	Immediate
)

func (m Mode) signal() syscall.Signal {
	switch m {
	case Smart:
		return syscall.SIGTERM
	case Immediate:
		return syscall.SIGQUIT
	}
	return syscall.SIGINT
}

// Server is one PostgreSQL server (a cluster) in a temporary directory.
type Server struct {
	dir      string // owns data/, the socket and postgres.log
	bin      string // directory of initdb and postgres
	port     int
	cred     *syscall.Credential
	ownDir   bool
	settings []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

// Bin returns the directory of the newest installed PostgreSQL server
// binaries, or ErrNoBinaries.
func Bin() (string, error) {
	if dir := os.Getenv("PONTUS_PG_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("PONTUS_PG_BIN: %w", err)
		}
		return dir, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", ErrNoBinaries
	}
	version := func(p string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return n
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

// NewServer initialises a cluster in a new temporary directory and starts
// it. The caller must Remove it (which stops it and deletes the
// directory); ctx bounds the start only. Settings are extra "name=value"
// server settings, after (and so overriding) pgtest's own, e.g.
// "fsync=on" for a durable server.
func NewServer(ctx context.Context, settings ...string) (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, ownDir: true, settings: settings}
	if err := s.init(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) init(ctx context.Context) error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return fmt.Errorf("initdb refuses root and there is no user nobody: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return err
		}
		// The temp dir's parents must be traversable by nobody.
		if err := s.run(ctx, "/bin/test", "-w", s.dir); err != nil {
			return fmt.Errorf("user nobody cannot write %s (is TMPDIR private to root?): %w", s.dir, err)
		}
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return err
	}
	err := s.run(ctx, filepath.Join(s.bin, "initdb"), "-D", s.data(), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	return nil
}

// run runs a command as the server's user and returns its output in the
// error when it fails.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// LogPath is the server's log file.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "postgres.log") }

// Dir is the server's directory (data/, socket, log).
func (s *Server) Dir() string { return s.dir }

// Port is the server's loopback TCP port; it stays the same across
// restarts.
func (s *Server) Port() int { return s.port }

// start starts postgres on s.port (picking a free port the first time)
// and waits until it accepts connections.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: server already running")
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		port := s.port
		if port == 0 {
			p, err := freePort()
			if err != nil {
				return err
			}
			port = p
		}
		err := s.startOn(ctx, port)
		if err == nil {
			s.port = port
			return nil
		}
		lastErr = err
		if s.port != 0 || ctx.Err() != nil {
			break // a restart keeps its port; retry only a first start
		}
	}
	return lastErr
}

func (s *Server) startOn(ctx context.Context, port int) error {
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	if s.cred != nil {
		os.Chown(s.LogPath(), int(s.cred.Uid), int(s.cred.Gid))
	}
	logStart, _ := logf.Seek(0, 2)
	args := []string{
		"-D", s.data(),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.dir,
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=32MB",
		"-c", "dynamic_shared_memory_type=posix",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
	}
	for _, kv := range s.settings {
		args = append(args, "-c", kv)
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := pgx.Connect(ctx, s.url("postgres", port))
		if err == nil {
			c.Close(ctx)
			s.cmd, s.done = cmd, done
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("postgres exited at start: %s", s.logSince(logStart))
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("postgres not accepting connections after 60s: %v: %s", err, s.logSince(logStart))
		}
	}
}

func (s *Server) logSince(off int64) string {
	b, _ := os.ReadFile(s.LogPath())
	if off < int64(len(b)) {
		b = b[off:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) url(db string, port int) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// URL is the connection URL of database db (user postgres, no password,
// TCP on loopback).
func (s *Server) URL(db string) string { return s.url(db, s.port) }

// Stop shuts the server down with mode and waits until it has exited.
// Stopping a stopped server does nothing.
func (s *Server) Stop(mode Mode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(mode.signal())
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.cmd, s.done = nil, nil
	return nil
}

// Restart starts a stopped server again on the same data directory and
// port (after Stop(Immediate) it recovers from the WAL first).
func (s *Server) Restart(ctx context.Context) error { return s.start(ctx) }

// Remove stops the server (fast) and deletes its directory.
func (s *Server) Remove() error {
	s.Stop(Fast)
	if !s.ownDir {
		return nil
	}
	return os.RemoveAll(s.dir)
}

// TB is the part of testing.TB this package uses (*testing.T, *testing.B
// and testing.TB satisfy it).
type TB interface {
	Helper()
	Name() string
	Skip(args ...any)
	Fatal(args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

var dbSeq atomic.Int64

// CreateDatabase creates a new empty database and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// DropDatabase drops a database, disconnecting its clients.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// NewDatabase creates a fresh database for one test, dropped when the
// test ends, and returns its URL.
func (s *Server) NewDatabase(tb TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%s", dbSeq.Add(1), sanitize(tb.Name()))
	u, err := s.CreateDatabase(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.DropDatabase(context.Background(), name); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	return u
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// Start starts a server of the test's own, removed when the test ends;
// it skips the test when the binaries are absent.
func Start(tb TB) *Server {
	tb.Helper()
	s, err := NewServer(context.Background())
	if errors.Is(err, ErrNoBinaries) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Remove(); err != nil {
			tb.Errorf("remove PostgreSQL server: %v", err)
		}
	})
	return s
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the package's shared server, started on first use; it
// skips the test when the binaries are absent. Tests must not stop it:
// they take their own databases with NewDatabase. Main removes it.
func Shared(tb TB) *Server {
	tb.Helper()
	shared.once.Do(func() { shared.srv, shared.err = NewServer(context.Background()) })
	if errors.Is(shared.err, ErrNoBinaries) {
		tb.Skip(shared.err)
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.srv
}

// Main runs the tests and removes the shared server, if one was started;
// use it as TestMain in packages that call Shared.
func Main(m interface{ Run() int }) {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Remove()
	}
	os.Exit(code)
}
