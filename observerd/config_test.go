package observerd

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
)

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	want := Config{
		ControlPlane: "http://127.0.0.1:8888",
		Repo:         ".",
		Mode:         "head",
		PollInterval: 15 * time.Second,
		MaxBacklog:   100,
		DataDir:      ".pontus/observer",
		Shards:       1,
		Bisect:       true,
		Reuse:        true,
		RepoSettings: true,
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("DefaultConfig (-want +got):\n%s", diff)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("default config does not validate: %v", err)
	}
}

func TestConfigFromTOML(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	md, err := toml.Decode(`
controlplane = "https://ci.example.com"
repo = "https://github.com/example/app.git"
branches = ["main", "release/*"]
mode = "every"
poll_interval = "1m30s"
max_backlog = 20
labels = ["linux"]
retries = 2
shards = 4
bisect = false
reuse = false
`, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Undecoded()) != 0 {
		t.Errorf("undecoded keys: %v", md.Undecoded())
	}
	if cfg.PollInterval != 90*time.Second || cfg.Mode != ModeEvery || len(cfg.Branches) != 2 || cfg.MaxBacklog != 20 ||
		cfg.Retries != 2 || cfg.Shards != 4 || cfg.Bisect || cfg.Reuse {
		t.Errorf("decoded %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		key    string
	}{
		{"bad mode", func(c *Config) { c.Mode = "all" }, "mode"},
		{"empty mode", func(c *Config) { c.Mode = "" }, "mode"},
		{"branch option", func(c *Config) { c.Branches = []string{"main", "-x"} }, "branches[1]"},
		{"branch revision", func(c *Config) { c.Branches = []string{"a..b"} }, "branches[0]"},
		{"bad glob", func(c *Config) { c.Branches = []string{"release/[1"} }, "branches[0]"},
		{"negative interval", func(c *Config) { c.PollInterval = -time.Second }, "poll_interval"},
		{"zero interval", func(c *Config) { c.PollInterval = 0 }, "poll_interval"},
		{"zero backlog", func(c *Config) { c.MaxBacklog = 0 }, "max_backlog"},
		{"control plane scheme", func(c *Config) { c.ControlPlane = "ftp://x" }, "controlplane"},
		{"empty repo", func(c *Config) { c.Repo = "" }, "repo"},
		{"repo option", func(c *Config) { c.Repo = "--upload-pack=x" }, "repo"},
		{"clone url transport", func(c *Config) { c.CloneURL = "ext::sh -c x" }, "clone_url"},
		{"bad label", func(c *Config) { c.Labels = []string{"ok", "not ok"} }, "labels[1]"},
		{"negative retries", func(c *Config) { c.Retries = -1 }, "retries"},
		{"too many retries", func(c *Config) { c.Retries = 11 }, "retries"},
		{"zero shards", func(c *Config) { c.Shards = 0 }, "shards"},
		{"too many shards", func(c *Config) { c.Shards = 65 }, "shards"},
		{"remote without data dir", func(c *Config) { c.Repo = "https://example.com/r.git"; c.DataDir = "" }, "data_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			tt.modify(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", cfg)
			}
			if !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Errorf("error %q does not start with the key %q", err, tt.key)
			}
			if _, err := New(cfg, nil); err == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
}

func TestIsRemote(t *testing.T) {
	t.Parallel()
	for repo, want := range map[string]bool{
		".":                          false,
		"/srv/git/app":               false,
		"../app":                     false,
		"./a:b":                      false,
		"dir/with:colon":             false,
		"file:///srv/git/app.git":    true,
		"https://github.com/x/y.git": true,
		"ssh://git@host/x.git":       true,
		"git@github.com:x/y.git":     true,
		"host:path/to/repo":          true,
	} {
		if got := isRemote(repo); got != want {
			t.Errorf("isRemote(%q) = %v, want %v", repo, got, want)
		}
	}
}

func TestPerRepo(t *testing.T) {
	c := DefaultConfig()
	if got := c.PerRepo(); len(got) != 1 || got[0].Repo != c.Repo {
		t.Fatalf("one repo: %+v", got)
	}
	c.Repos = []string{"/srv/a", "https://git.example.com/b.git"}
	got := c.PerRepo()
	if len(got) != 2 || got[0].Repo != "/srv/a" || got[1].Repo != "https://git.example.com/b.git" || got[0].Repos != nil {
		t.Fatalf("two repos: %+v", got)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("two repos: %v", err)
	}
	c.CloneURL = "/srv/a"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "clone_url") {
		t.Fatalf("clone_url with several repos: %v", err)
	}
	c.CloneURL, c.Repos = "", []string{"-oops"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "repos[0]") {
		t.Fatalf("bad repo: %v", err)
	}
}
