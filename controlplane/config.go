package controlplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/validate"
)

// Config is the control plane's configuration: the [controlplane] table of
// pontus.toml.
type Config struct {
	// Listen is the TCP address to serve on.
	Listen string `toml:"listen"`
	// DataDir holds the store and the build logs (with Store set: the
	// replica's lock only).
	DataDir string `toml:"data_dir"`
	// Store, if set, is a postgres:// URL: the store and the build logs
	// live in that PostgreSQL database instead of SQLite in DataDir.
	Store string `toml:"store"`
	// ResultsDir receives <commit-id> and <commit-id>.json for every finished build.
	ResultsDir string `toml:"results_dir"`
	// HeartbeatInterval is how often runners renew their leases.
	HeartbeatInterval time.Duration `toml:"heartbeat_interval"`
	// LeaseDuration is how long a lease lasts without renewal; a runner
	// that stops heartbeating loses its job after this long.
	LeaseDuration time.Duration `toml:"lease_duration"`
	// PollTimeout is the longest an AcquireJob long-poll is held open.
	PollTimeout time.Duration `toml:"poll_timeout"`
	// MaxAttempts is how many attempts may be lost to dead runners before a
	// build ends ERROR "runner lost".
	MaxAttempts int `toml:"max_attempts"`
	// MaxLogMiB caps each attempt's stored log; beyond it a marker line says
	// how much was cut.
	MaxLogMiB int `toml:"max_log_mib"`
	// MaxQueuedBuilds bounds the queue: reports and triggers that would
	// exceed it are refused with resource_exhausted (observers retry).
	MaxQueuedBuilds int `toml:"max_queued_builds"`
	// Fsync makes every store commit durable against power loss, not only
	// against a crash of the process.
	Fsync bool `toml:"fsync"`
	// TLSCert and TLSKey, both set, serve HTTPS (HTTP/2 through ALPN).
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Token files (one token per file); the PONTUS_*_TOKEN variables win.
	RunnerTokenFile   string `toml:"runner_token_file"`
	ObserverTokenFile string `toml:"observer_token_file"`
	UserTokenFile     string `toml:"user_token_file"`
	// KeepBuilds is how many finished builds the store keeps: "" keeps
	// every build, a number ("1000") the newest that many, an age ("30d",
	// "36h") those finished within it. Older builds are deleted in the
	// background, with their logs, except the newest build of each branch
	// and its newest passing build.
	KeepBuilds string `toml:"keep_builds"`
	// KeepLogs is the same for build logs, which are most of data_dir: a
	// build whose log is pruned keeps its status and per-test results.
	KeepLogs string `toml:"keep_logs"`
	// PruneResults also deletes a pruned build's result files (when they
	// are still that build's).
	PruneResults bool `toml:"prune_results"`
	// ResultsMode is the permission of result files, in octal. They copy
	// the build's log, which the data_dir keeps private (0600), so they
	// are no more readable by default; "0640" or "0644" share them.
	ResultsMode string `toml:"results_mode"`
	// Insecure allows listening on a non-loopback address without tokens.
	Insecure bool `toml:"insecure"`

	// Name names this replica among those sharing a PostgreSQL store
	// (default: generated once and kept in data_dir).
	Name string `toml:"name"`
	// Advertise is the URL other replicas forward calls to while this one
	// leads (default: http(s)://<listen host, or the host name>:<port>).
	Advertise string `toml:"advertise"`

	// Bounds on what clients hold open or leave behind (limits.go).
	//
	// MaxStreams caps concurrent streams (WatchBuilds, TailLog, health
	// Watch, reflection) in all; MaxStreamsPerClient caps them per client
	// address. Streams that need no token (health Watch, reflection) are
	// also held to MaxPublicStreams in all and MaxPublicStreamsPerClient
	// per address. A stream beyond a cap is refused with resource_exhausted.
	MaxStreams                int `toml:"max_streams"`
	MaxStreamsPerClient       int `toml:"max_streams_per_client"`
	MaxPublicStreams          int `toml:"max_public_streams"`
	MaxPublicStreamsPerClient int `toml:"max_public_streams_per_client"`
	// MaxRunners bounds registered runners: a registration beyond it evicts
	// the longest-silent runner that holds no job, or is refused with
	// resource_exhausted. RunnerExpiry forgets runners silent that long.
	MaxRunners   int           `toml:"max_runners"`
	RunnerExpiry time.Duration `toml:"runner_expiry"`
	// SigninPerMinute is how many dashboard sign-in attempts one client
	// address may make a minute (a token bucket; beyond it HTTP 429).
	SigninPerMinute int `toml:"signin_per_minute"`

	// Tokens, filled by the caller from the environment or the files.
	RunnerToken   string `toml:"-"`
	ObserverToken string `toml:"-"`
	UserToken     string `toml:"-"`
}

// DefaultConfig returns a configuration that works on one machine.
func DefaultConfig() Config {
	return Config{
		Listen:            "127.0.0.1:8888",
		DataDir:           ".pontus/controlplane",
		ResultsDir:        "test_results",
		HeartbeatInterval: 2 * time.Second,
		LeaseDuration:     6 * time.Second,
		PollTimeout:       30 * time.Second,
		MaxAttempts:       3,
		MaxLogMiB:         32,
		MaxQueuedBuilds:   100000,
		ResultsMode:       "0600",

		MaxStreams:                4096,
		MaxStreamsPerClient:       64,
		MaxPublicStreams:          256,
		MaxPublicStreamsPerClient: 4,
		MaxRunners:                10000,
		RunnerExpiry:              time.Hour,
		SigninPerMinute:           10,
	}
}

// Validate checks the configuration and names the key that is wrong.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("controlplane.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port: %v", c.Listen, err)
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	if c.Name != "" {
		if err := validate.Name("name", c.Name); err != nil {
			bad("name", "%v", err)
		}
	}
	if c.Advertise != "" {
		if err := dial.CheckURL(c.Advertise); err != nil || strings.Contains(c.Advertise, ",") {
			bad("advertise", "%q is not one http:// or https:// URL", c.Advertise)
		}
	}
	if c.ResultsDir == "" {
		bad("results_dir", "must not be empty")
	}
	if c.Store != "" {
		if err := store.ValidatePostgresURL(c.Store); err != nil {
			bad("store", "%v", err)
		}
	}
	if c.HeartbeatInterval < 10*time.Millisecond {
		bad("heartbeat_interval", "must be at least 10ms, got %s", c.HeartbeatInterval)
	}
	if c.LeaseDuration < 2*c.HeartbeatInterval {
		bad("lease_duration", "must be at least twice heartbeat_interval (%s), got %s", c.HeartbeatInterval, c.LeaseDuration)
	}
	if c.PollTimeout < 100*time.Millisecond || c.PollTimeout > 5*time.Minute {
		bad("poll_timeout", "must be between 100ms and 5m, got %s", c.PollTimeout)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		bad("max_attempts", "must be between 1 and 100, got %d", c.MaxAttempts)
	}
	if c.MaxLogMiB < 1 || c.MaxLogMiB > 4096 {
		bad("max_log_mib", "must be between 1 and 4096, got %d", c.MaxLogMiB)
	}
	if c.MaxQueuedBuilds < 1 {
		bad("max_queued_builds", "must be at least 1, got %d", c.MaxQueuedBuilds)
	}
	if _, err := parseRetention(c.KeepBuilds); err != nil {
		bad("keep_builds", "%v", err)
	}
	if _, err := parseRetention(c.KeepLogs); err != nil {
		bad("keep_logs", "%v", err)
	}
	if _, err := c.resultsFileMode(); err != nil {
		bad("results_mode", "%v", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert", "tls_cert and tls_key must be set together")
	}

	if c.MaxStreams < 1 {
		bad("max_streams", "must be at least 1, got %d", c.MaxStreams)
	}
	if c.MaxStreamsPerClient < 1 || c.MaxStreamsPerClient > c.MaxStreams {
		bad("max_streams_per_client", "must be between 1 and max_streams (%d), got %d", c.MaxStreams, c.MaxStreamsPerClient)
	}
	if c.MaxPublicStreams < 1 || c.MaxPublicStreams > c.MaxStreams {
		bad("max_public_streams", "must be between 1 and max_streams (%d), got %d", c.MaxStreams, c.MaxPublicStreams)
	}
	if c.MaxPublicStreamsPerClient < 1 || c.MaxPublicStreamsPerClient > c.MaxPublicStreams {
		bad("max_public_streams_per_client", "must be between 1 and max_public_streams (%d), got %d", c.MaxPublicStreams, c.MaxPublicStreamsPerClient)
	}
	if c.MaxRunners < 1 {
		bad("max_runners", "must be at least 1, got %d", c.MaxRunners)
	}
	if c.RunnerExpiry < time.Minute {
		bad("runner_expiry", "must be at least 1m, got %s", c.RunnerExpiry)
	}
	if c.SigninPerMinute < 1 {
		bad("signin_per_minute", "must be at least 1, got %d", c.SigninPerMinute)
	}
	return errors.Join(errs...)
}

// resultsFileMode parses ResultsMode: octal, read-write for the owner, no
// execute or special bits.
func (c *Config) resultsFileMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.ResultsMode, 8, 32)
	if err != nil || len(c.ResultsMode) < 3 {
		return 0, fmt.Errorf("%q is not an octal file mode such as \"0600\"", c.ResultsMode)
	}
	if m&^0o666 != 0 || m&0o600 != 0o600 {
		return 0, fmt.Errorf("%q must give the owner read and write and nobody execute or special bits (0600, 0640, 0644)", c.ResultsMode)
	}
	return os.FileMode(m), nil
}

// parseRetention parses keep_builds and keep_logs: "" (keep everything), a
// count of builds ("1000"), or an age in days ("30d") or as a Go duration
// ("36h"), at least an hour.
func parseRetention(s string) (store.Retention, error) {
	if s == "" {
		return store.Retention{}, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return store.Retention{}, fmt.Errorf("%q: keep at least 1 build (or \"\" to keep everything)", s)
		}
		return store.Retention{Count: n}, nil
	}
	var age time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return store.Retention{}, fmt.Errorf("%q is not a count (\"1000\") or an age (\"30d\", \"36h\")", s)
		}
		age = time.Duration(n) * 24 * time.Hour
	} else {
		d, err := time.ParseDuration(s)
		if err != nil {
			return store.Retention{}, fmt.Errorf("%q is not a count (\"1000\") or an age (\"30d\", \"36h\")", s)
		}
		age = d
	}
	if age < time.Hour {
		return store.Retention{}, fmt.Errorf("%q: keep at least an hour", s)
	}
	return store.Retention{Age: age}, nil
}
