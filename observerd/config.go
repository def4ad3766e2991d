package observerd

import (
	"fmt"
	"path"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/settings"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Modes of reporting.
const (
	// ModeHead reports the newest head of each branch when it changes.
	ModeHead = "head"
	// ModeEvery reports every new commit between the cursor and the head,
	// oldest first, bounded by MaxBacklog.
	ModeEvery = "every"
)

// minPollInterval keeps a misconfigured observer from spinning.
const minPollInterval = 10 * time.Millisecond

// Config is the observer's configuration: the [observer] table of pontus.toml.
type Config struct {
	// ControlPlane is the URL of the control plane, or the URLs of its
	// replicas (a list in TOML, comma-separated on the command line): the
	// observer fails over between them.
	ControlPlane dial.URLs `toml:"controlplane"`
	// Token is the observer bearer token. It never comes from the TOML:
	// main sets it from PONTUS_OBSERVER_TOKEN or TokenFile.
	Token string `toml:"-"`
	// TokenFile is a file holding the observer token (read by main).
	TokenFile string `toml:"token_file"`
	// CAFile is a PEM file of CA certificates to trust for an https control plane.
	CAFile string `toml:"ca_file"`
	// Repo is the watched repository: a local path or any URL git can fetch.
	Repo string `toml:"repo"`
	// Repos, when set, replaces Repo: several repositories watched with
	// the same settings, each by its own Observer (see PerRepo).
	Repos []string `toml:"repos"`
	// Branches are branch names or path.Match globs ("release/*") matched
	// against short branch names. Empty means the repository's current
	// branch (HEAD's branch; for a remote, the remote HEAD).
	Branches []string `toml:"branches"`
	// Mode is "head" or "every".
	Mode string `toml:"mode"`
	// PollInterval is how often a remote repository is fetched, and the
	// safety-net poll of a local one.
	PollInterval time.Duration `toml:"poll_interval"`
	// MaxBacklog bounds how many commits (the newest) one report cycle
	// sends per branch.
	MaxBacklog int `toml:"max_backlog"`
	// CloneURL is where runners fetch the repository from; empty means the
	// reported repository (absolute path or URL).
	CloneURL string `toml:"clone_url"`
	// Labels a runner must carry to build the reported commits.
	Labels []string `toml:"labels"`
	// DataDir holds the mirrors of remote repositories. Nothing is ever
	// written into a watched local repository.
	DataDir string `toml:"data_dir"`
	// Retries, Shards, Bisect and Reuse are the reported builds' settings
	// (BuildSettings). A commit's own .pontus.toml ([build]) may lower
	// them: they are ceilings, and bisect and reuse can only be turned off.
	Retries int32 `toml:"retries"`
	Shards  int32 `toml:"shards"`
	Bisect  bool  `toml:"bisect"`
	Reuse   bool  `toml:"reuse"`
	// RepoSettings lets a commit's .pontus.toml [build] table lower those.
	RepoSettings bool `toml:"repo_settings"`
}

// Settings returns the build settings the configuration asks for.
func (c *Config) Settings() *pontusv1.BuildSettings {
	return &pontusv1.BuildSettings{Retries: c.Retries, Shards: c.Shards, Bisect: c.Bisect, Reuse: c.Reuse}
}

// DefaultConfig returns a configuration that watches the current branch of
// the repository in the current directory and reports to a control plane on
// loopback.
func DefaultConfig() Config {
	return Config{
		ControlPlane: "http://127.0.0.1:8888",
		Repo:         ".",
		Mode:         ModeHead,
		PollInterval: 15 * time.Second,
		MaxBacklog:   100,
		DataDir:      ".pontus/observer",
		Shards:       1,
		Bisect:       true,
		Reuse:        true,
		RepoSettings: true,
	}
}

// Validate checks the configuration; each error names the offending key.
func (c *Config) Validate() error {
	if err := dial.CheckURL(string(c.ControlPlane)); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	if len(c.Repos) == 0 {
		if err := validate.Repo("repo", c.Repo); err != nil {
			return err
		}
	}
	for i, r := range c.Repos {
		if err := validate.Repo(fmt.Sprintf("repos[%d]", i), r); err != nil {
			return err
		}
	}
	if len(c.Repos) > 1 && c.CloneURL != "" {
		return fmt.Errorf("clone_url: names one repository; it cannot be used with several repos")
	}
	for i, b := range c.Branches {
		field := fmt.Sprintf("branches[%d]", i)
		if err := validate.BranchPattern(field, b); err != nil {
			return err
		}
		if _, err := path.Match(b, ""); err != nil {
			return fmt.Errorf("%s: bad glob %q: %w", field, b, err)
		}
	}
	switch c.Mode {
	case ModeHead, ModeEvery:
	default:
		return fmt.Errorf("mode: must be %q or %q, got %q", ModeHead, ModeEvery, c.Mode)
	}
	if c.PollInterval < minPollInterval {
		return fmt.Errorf("poll_interval: must be at least %v, got %v", minPollInterval, c.PollInterval)
	}
	if c.MaxBacklog < 1 {
		return fmt.Errorf("max_backlog: must be at least 1, got %d", c.MaxBacklog)
	}
	if c.CloneURL != "" {
		if err := validate.CloneURL("clone_url", c.CloneURL); err != nil {
			return err
		}
	}
	if err := validate.Labels("labels", c.Labels); err != nil {
		return err
	}
	if c.Retries < 0 || c.Retries > settings.MaxRetries {
		return fmt.Errorf("retries: must be 0 to %d, got %d", settings.MaxRetries, c.Retries)
	}
	if c.Shards < 1 || c.Shards > settings.MaxShards {
		return fmt.Errorf("shards: must be 1 to %d, got %d", settings.MaxShards, c.Shards)
	}
	if isRemote(c.Repo) && c.DataDir == "" {
		return fmt.Errorf("data_dir: must be set to watch the remote repository %q", c.Repo)
	}
	return nil
}

// PerRepo returns one configuration per watched repository: c itself when
// it names one repository, else a copy of c for each of Repos.
func (c Config) PerRepo() []Config {
	if len(c.Repos) == 0 {
		return []Config{c}
	}
	out := make([]Config, len(c.Repos))
	for i, r := range c.Repos {
		out[i] = c
		out[i].Repo, out[i].Repos = r, nil
	}
	return out
}
