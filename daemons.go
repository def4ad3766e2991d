package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/dirlock"
	"github.com/pontus-ci/pontus/observerd"
	"github.com/pontus-ci/pontus/runnerd"
)

// roleFlags are the flags the daemon commands share; each overrides its
// key in the config file only when given.
type roleFlags struct {
	name   string
	stderr io.Writer
	fs     *flag.FlagSet
	config string
	// configFrom says where config came from (configFile).
	configFrom string
	listen     string
	data       string
	store      string
	replica    string
	advertise  string
	results    string
	repo       string
	cpURL      string
	workdir    string
	insecure   bool
	logs       logFlags
}

func newRoleFlags(name string, h help, stderr io.Writer, cp, repo, runnerURL, workdir bool) *roleFlags {
	f := &roleFlags{name: name, stderr: stderr, fs: newFlagSet(name, h, stderr)}
	f.fs.StringVar(&f.config, "config", "", "`file` to read; flags override its keys (default $PONTUS_CONFIG, else ./pontus.toml when present)")
	if cp {
		f.fs.BoolVar(&f.insecure, "insecure", false, "allow a non-loopback listen address without tokens")
		f.fs.StringVar(&f.listen, "listen", "", "`address` to serve on (default 127.0.0.1:8888)")
		f.fs.StringVar(&f.data, "data", "", "state `directory`")
		f.fs.StringVar(&f.results, "results", "", "results `directory` (default ./test_results)")
	}
	if repo {
		f.fs.StringVar(&f.repo, "repo", "", "repository to watch: a `path or URL` (default .)")
	}
	if runnerURL {
		f.fs.StringVar(&f.cpURL, "controlplane", "", "control plane `URL`, or several replicas' URLs separated by commas (default http://127.0.0.1:8888)")
	}
	if workdir {
		f.fs.StringVar(&f.workdir, "workdir", "", "runner work `directory` for clones and checkouts")
	}
	f.fs.StringVar(&f.logs.format, "log-format", "text", "log format: text or json")
	f.fs.StringVar(&f.logs.level, "log-level", "info", "log level: debug, info, warn or error")
	return f
}

func (f *roleFlags) parse(args []string) (fileConfig, error) {
	pos, err := parseInterspersed(f.fs, args)
	if err != nil {
		return fileConfig{}, err
	}
	if err := noArgs(f.stderr, f.name, pos); err != nil {
		return fileConfig{}, err
	}
	f.config, f.configFrom = configFile(f.config)
	return loadConfig(f.config)
}

// logConfig says at start which configuration file was read.
func (f *roleFlags) logConfig(logger *slog.Logger) {
	if f.config == "" {
		logger.Info("no configuration file (no --config, $PONTUS_CONFIG or ./pontus.toml): using the defaults")
		return
	}
	abs, _ := filepath.Abs(f.config)
	logger.Info("read configuration", "file", abs, "from", f.configFrom)
}

// set reports whether a flag was given on the command line.
func (f *roleFlags) set(name string) bool {
	found := false
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			found = true
		}
	})
	return found
}

func (f *roleFlags) applyControlPlane(c *controlplane.Config) error {
	if f.set("listen") {
		c.Listen = f.listen
	}
	if f.set("data") {
		c.DataDir = f.data
	}
	if f.set("results") {
		c.ResultsDir = f.results
	}
	if f.set("store") {
		c.Store = f.store
	}
	if f.set("name") {
		c.Name = f.replica
	}
	if f.set("advertise") {
		c.Advertise = f.advertise
	}
	if f.set("insecure") {
		c.Insecure = f.insecure
	}
	if c.Store != "" && c.DataDir == controlplane.DefaultConfig().DataDir {
		// Replicas started side by side in one directory each get a
		// data_dir (their lock and name) of their own.
		c.DataDir = filepath.Join(c.DataDir, "replica-"+strings.NewReplacer(":", "-", "[", "", "]", "").Replace(c.Listen))
	}
	var err error
	if c.RunnerToken, err = token("PONTUS_RUNNER_TOKEN", c.RunnerTokenFile); err != nil {
		return fmt.Errorf("runner token: %w", err)
	}
	if c.ObserverToken, err = token("PONTUS_OBSERVER_TOKEN", c.ObserverTokenFile); err != nil {
		return fmt.Errorf("observer token: %w", err)
	}
	if c.UserToken, err = token("PONTUS_USER_TOKEN", c.UserTokenFile); err != nil {
		return fmt.Errorf("user token: %w", err)
	}
	return c.Validate()
}

func (f *roleFlags) applyRunner(c *runnerd.Config) error {
	if f.set("controlplane") {
		c.ControlPlane = dial.URLs(f.cpURL)
	}
	if f.set("workdir") {
		c.Workdir = f.workdir
	}
	var err error
	if c.Token, err = token("PONTUS_RUNNER_TOKEN", c.TokenFile); err != nil {
		return fmt.Errorf("runner token: %w", err)
	}
	return c.Validate()
}

func (f *roleFlags) applyObserver(c *observerd.Config) error {
	if f.set("controlplane") {
		c.ControlPlane = dial.URLs(f.cpURL)
	}
	if f.set("repo") {
		c.Repo, c.Repos = f.repo, nil // --repo names the one repository
	}
	var err error
	if c.Token, err = token("PONTUS_OBSERVER_TOKEN", c.TokenFile); err != nil {
		return fmt.Errorf("observer token: %w", err)
	}
	return c.Validate()
}

func runControlPlane(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newRoleFlags("controlplane", help{
		usage: "controlplane [flags]",
		about: "Runs the control plane: the API, the queue, leases, the store, result files\nand the dashboard.",
		examples: []string{"controlplane --config /etc/pontus.toml",
			"controlplane --listen 127.0.0.1:8888 --data /var/lib/pontus --results /srv/results"},
	}, stderr, true, false, false, false)
	f.fs.StringVar(&f.store, "store", "", "PostgreSQL `URL` for the store and logs (postgres://user@host:port/db?sslmode=...; default: SQLite in the state directory)")
	f.fs.StringVar(&f.replica, "name", "", "with --store: this replica's `name` (default: generated, kept in the state directory)")
	f.fs.StringVar(&f.advertise, "advertise", "", "with --store: the `URL` other replicas forward calls to while this one leads (default: from --listen)")
	cfg, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.applyControlPlane(&cfg.ControlPlane); err != nil {
		return err
	}
	logger, err := f.logs.logger(stderr)
	if err != nil {
		return err
	}
	// PONTUS_CPUPROFILE=FILE writes a CPU profile of the control plane
	// (pontus bench uses it to find hot spots).
	if path := os.Getenv("PONTUS_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("PONTUS_CPUPROFILE: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("PONTUS_CPUPROFILE: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	// Which file was read is said once serving: a failed start says only
	// what failed.
	ready := make(chan net.Addr, 1)
	go func() {
		if _, ok := <-ready; ok {
			f.logConfig(logger)
		}
	}()
	defer close(ready)
	return serveControlPlane(ctx, cfg.ControlPlane, logger, ready)
}

// serveControlPlane starts a control plane in order — lock data_dir, bind
// the listener, open the store — then serves until ctx ends. A start that
// fails removes what it created (see dirlock.Lock.Abandon). ready, if not
// nil, receives the bound address once serving.
func serveControlPlane(ctx context.Context, cfg controlplane.Config, logger *slog.Logger, ready chan<- net.Addr) error {
	if cfg.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
	}
	lock, err := dirlock.Acquire(cfg.DataDir, "data_dir", 0o700)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		lock.Abandon()
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err // the address is said once
		}
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if err := cfg.CheckExposure(ln.Addr()); err != nil {
		ln.Close()
		lock.Abandon()
		return err
	}
	srv, err := openControlPlane(ctx, cfg, logger.With("component", "controlplane"))
	if err != nil {
		ln.Close()
		lock.Abandon()
		return err
	}
	defer lock.Release()
	if cfg.RunnerToken == "" && cfg.ObserverToken == "" && cfg.UserToken == "" {
		logger.Warn("no tokens configured: the API is open to anyone who can reach it, so it is served on loopback only unless --insecure")
	}
	if ready != nil {
		ready <- ln.Addr()
	}
	return srv.Serve(ctx, ln)
}

// openControlPlane returns a control plane on SQLite in data_dir, or a
// replica of any number sharing a PostgreSQL store.
func openControlPlane(ctx context.Context, cfg controlplane.Config, logger *slog.Logger) (interface {
	Serve(context.Context, net.Listener) error
}, error) {
	if cfg.Store != "" {
		return controlplane.NewReplica(ctx, cfg, logger)
	}
	return controlplane.New(ctx, cfg, logger)
}

func runRunner(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newRoleFlags("runnerd", help{
		usage:    "runnerd [flags]",
		about:    "Runs a runner: it registers with the control plane, takes jobs, checks out\ntheir commits and runs their tests.",
		examples: []string{"runnerd --config /etc/pontus.toml", "runnerd --controlplane http://ci.example.com:8888 --workdir /var/lib/pontus-runner"},
	}, stderr, false, false, true, true)
	cfg, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.applyRunner(&cfg.Runner); err != nil {
		return err
	}
	logger, err := f.logs.logger(stderr)
	if err != nil {
		return err
	}
	r, err := runnerd.New(cfg.Runner, logger.With("component", "runner"))
	if err != nil {
		return err
	}
	f.logConfig(logger)
	return r.Run(ctx)
}

func runObserver(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newRoleFlags("observerd", help{
		usage:    "observerd [flags]",
		about:    "Runs an observer: it watches git repositories and reports new commits.",
		examples: []string{"observerd --config /etc/pontus.toml", "observerd --repo /srv/git/app.git --controlplane http://127.0.0.1:8888"},
	}, stderr, false, true, true, false)
	cfg, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.applyObserver(&cfg.Observer); err != nil {
		return err
	}
	logger, err := f.logs.logger(stderr)
	if err != nil {
		return err
	}
	if err := checkRepos(ctx, cfg.Observer); err != nil {
		return err
	}
	run, err := newObservers(cfg.Observer, logger)
	if err != nil {
		return err
	}
	f.logConfig(logger)
	return run(ctx)
}

// newObservers makes one Observer per watched repository and returns a
// function that runs them all until ctx ends or one fails.
func newObservers(cfg observerd.Config, logger *slog.Logger) (func(context.Context) error, error) {
	var observers []*observerd.Observer
	for _, c := range cfg.PerRepo() {
		o, err := observerd.New(c, logger.With("component", "observer"))
		if err != nil {
			return nil, err
		}
		observers = append(observers, o)
	}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errs := make([]error, len(observers))
		var wg sync.WaitGroup
		for i, o := range observers {
			wg.Go(func() {
				if errs[i] = o.Run(ctx); errs[i] != nil {
					cancel()
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}, nil
}

// checkRepos fails when a local repository to watch is not a git
// repository, so a start says so before it creates or prints anything.
func checkRepos(ctx context.Context, cfg observerd.Config) error {
	for _, c := range cfg.PerRepo() {
		o, err := observerd.New(c, nil)
		if err != nil {
			return err
		}
		if err := o.Check(ctx); err != nil {
			return err
		}
	}
	return nil
}

// devRootWorkdirs is where a root pontus dev keeps its runner's workdir
// when step_user cannot reach the data directory (one under /root, say).
var devRootWorkdirs = "/var/lib/pontus/dev"

// devWorkdir returns the runner workdir dev uses: cfg.Workdir (under the
// data directory) when the runner's step_user can reach it, else — a root
// dev in a private home — a directory of its own under devRootWorkdirs,
// named by the data directory, so steps still run as step_user.
func devWorkdir(cfg runnerd.Config, data string) string {
	if runnerd.CheckStepUser(cfg) == nil {
		return cfg.Workdir
	}
	abs, err := filepath.Abs(data)
	if err != nil {
		return cfg.Workdir
	}
	sum := sha256.Sum256([]byte(abs))
	alt := cfg
	alt.Workdir = filepath.Join(devRootWorkdirs, hex.EncodeToString(sum[:6]), "runner")
	if runnerd.CheckStepUser(alt) != nil {
		return cfg.Workdir // the error names the workdir the user chose
	}
	return alt.Workdir
}

// searchable creates dir if needed and gives group and others search
// permission on it; what it holds keeps its own modes.
func searchable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if m := fi.Mode().Perm(); m&0o011 != 0o011 {
		return os.Chmod(dir, m|0o011)
	}
	return nil
}

// runDev runs all three roles in one process with zero configuration.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newRoleFlags("dev", help{
		usage: "dev [flags]",
		about: "Runs a control plane, a runner and an observer in one process on a repository\n" +
			"(default: the current directory), with state under ./.pontus and results in\n" +
			"./test_results.",
		examples: []string{"dev", "dev --repo /path/to/repo --listen 127.0.0.1:9999", "dev --config pontus.toml --quiet"},
	}, stderr, true, true, false, false)
	quiet := f.fs.Bool("quiet", false, "print no build progress lines")
	cfg, err := f.parse(args)
	if err != nil {
		return err
	}
	data := ".pontus"
	if f.set("data") {
		data = f.data
	}
	// Everything dev writes goes under data, unless a configuration file
	// says where (and --data does not).
	devLayout := f.set("data") || !cfg.setsDirs()
	if devLayout {
		cfg.ControlPlane.DataDir = filepath.Join(data, "controlplane")
		cfg.Runner.Workdir = filepath.Join(data, "runner")
		cfg.Observer.DataDir = filepath.Join(data, "observer")
	}
	f.data = cfg.ControlPlane.DataDir
	cfg.ControlPlane.Store = "" // dev is one process on SQLite, whatever the file says
	if err := f.applyControlPlane(&cfg.ControlPlane); err != nil {
		return err
	}
	if !f.set("repo") && cfg.Observer.Repo == "" {
		cfg.Observer.Repo = "."
	}
	logger, err := f.logs.logger(stderr)
	if err != nil {
		return err
	}
	if !f.set("log-level") {
		// dev prints progress lines; keep routine logs quiet.
		logger, _ = (&logFlags{format: f.logs.format, level: "warn"}).logger(stderr)
	}

	// Validate every role before anything is created: the control plane's
	// address stands in for its URL until it is bound.
	placeholder := dial.URLs("http://" + cfg.ControlPlane.Listen)
	cfg.Runner.ControlPlane, cfg.Observer.ControlPlane = placeholder, placeholder
	if err := f.applyObserver(&cfg.Observer); err != nil {
		return err
	}
	// The roles use the control plane's own tokens unless the file gave
	// them others.
	if cfg.Observer.Token == "" {
		cfg.Observer.Token = cfg.ControlPlane.ObserverToken
	}
	if cfg.Runner.Token == "" {
		cfg.Runner.Token = cfg.ControlPlane.RunnerToken
	}
	if err := cfg.Runner.Validate(); err != nil {
		return err
	}
	if devLayout {
		cfg.Runner.Workdir = devWorkdir(cfg.Runner, data)
	}
	if err := runnerd.CheckStepUser(cfg.Runner); err != nil {
		return err
	}
	if err := checkRepos(ctx, cfg.Observer); err != nil {
		return err
	}

	// The control plane has its own context and stops last, so the runner
	// and observer can still reach it while they stop.
	cpCtx, cpCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cpCancel()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan net.Addr, 1)
	errs := make(chan error, 4)
	cpDone := make(chan struct{})
	go func() {
		defer close(cpDone)
		errs <- serveControlPlane(cpCtx, cfg.ControlPlane, logger, ready)
		cancel()
	}()
	stopCP := func() {
		cpCancel()
		<-cpDone
	}
	var addr net.Addr
	select {
	case addr = <-ready:
	case <-cpDone:
		return <-errs
	}
	// The control plane creates its directories private, the data
	// directory too when it made it; the runner's steps (as step_user,
	// under root) must still reach the runner's workdir beside it.
	if err := searchable(filepath.Dir(cfg.Runner.Workdir)); err != nil {
		stopCP()
		return err
	}
	url := dial.URLs("http://" + addr.String())
	cfg.Runner.ControlPlane, cfg.Observer.ControlPlane = url, url
	runner, err := runnerd.New(cfg.Runner, logger.With("component", "runner"))
	if err != nil {
		stopCP()
		return err
	}
	runObservers, err := newObservers(cfg.Observer, logger)
	if err != nil {
		stopCP()
		return err
	}
	results, _ := filepath.Abs(cfg.ControlPlane.ResultsDir)
	state := cfg.ControlPlane.DataDir
	if devLayout {
		state = data // everything dev writes is below it
	}
	state, _ = filepath.Abs(state)
	branches := "its current branch"
	if len(cfg.Observer.Branches) > 0 {
		branches = strings.Join(cfg.Observer.Branches, ", ")
	}
	watching := cfg.Observer.Repo
	if len(cfg.Observer.Repos) > 0 {
		watching = strings.Join(cfg.Observer.Repos, ", ")
	}
	fmt.Fprintf(stdout, "pontus dev: watching %s (%s)\n", watching, branches)
	fmt.Fprintf(stdout, "  dashboard  %s/\n  API        %s  (try: curl -H 'Content-Type: application/json' --data '{}' %s/pontus.v1.BuildService/ListBuilds)\n", url, url, url)
	fmt.Fprintf(stdout, "  results    %s/<commit-id>\n  state      %s\n", results, state)
	if f.config != "" {
		abs, _ := filepath.Abs(f.config)
		fmt.Fprintf(stdout, "  config     %s  (from %s)\n", abs, f.configFrom)
	} else {
		fmt.Fprintf(stdout, "  config     none: the defaults (no --config, $PONTUS_CONFIG or ./pontus.toml)\n")
	}
	if wd, _ := filepath.Abs(cfg.Runner.Workdir); !strings.HasPrefix(wd, state+string(filepath.Separator)) {
		fmt.Fprintf(stdout, "  runner     %s  (steps run as %s, who cannot reach the state directory)\n", wd, cfg.Runner.StepUser)
	}
	var roles sync.WaitGroup
	for _, start := range []func() error{
		func() error { return runner.Run(ctx) },
		func() error { return runObservers(ctx) },
	} {
		roles.Go(func() {
			if err := start(); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	if !*quiet {
		roles.Go(func() { printProgress(ctx, string(url), cfg.ControlPlane.UserToken, stdout) })
	}
	<-ctx.Done()
	roles.Wait()
	stopCP()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}
