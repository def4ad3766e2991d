package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Mistakes in pontus.toml are named with their key and line: a misspelled
// key with the key meant, a value of the wrong type with the type
// expected, all of them in one run.
func TestConfigMistakesAreExplained(t *testing.T) {
	t.Parallel()
	cfg := defaultFileConfig()
	err := decodeConfig(`[controlplane]
listen = 127.0.0.1:8888
data_dirr = "/srv/pontus"
heartbeat_interval = 2
max_attempts = "3"

[runner]
capacty = 2
labels = "linux"
listen = "x"
`, &cfg)
	if err == nil {
		t.Fatal("decodeConfig accepted the file")
	}
	for _, want := range []string{
		`2: controlplane.listen: expected a quoted string like "127.0.0.1:8888"; got 127.0.0.1:8888`,
		`5: controlplane.max_attempts: expected a whole number like 3 (no quotes); got "3"`,
		`9: runner.labels: expected a list of quoted strings`,
		`unknown key controlplane.data_dirr; did you mean controlplane.data_dir?`,
		`unknown key runner.capacty; did you mean runner.capacity?`,
		`unknown key runner.listen; did you mean controlplane.listen?`,
		`controlplane.heartbeat_interval: expected a duration in quotes like "2s"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the errors do not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "Invalid float") {
		t.Errorf("BurntSushi's words leak through:\n%v", err)
	}
	// Far from every key: no guess.
	cfg = defaultFileConfig()
	err = decodeConfig("[runner]\nzzzzzzzz = 1\n", &cfg)
	if err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("got %v, want an unknown key without a guess", err)
	}
}

// pontus config check validates without starting anything: every problem
// and exit 1, or "FILE: ok" and exit 0.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	good := filepath.Join(dir, "good.toml")
	write(t, bad, "[controlplane]\nlisten = \"nowhere\"\ndata_dirr = \"x\"\nmax_attempts = 0\n[runner]\ncapacity = \"2\"\ntoken_file = \""+dir+"/missing\"\n")
	write(t, good, "[controlplane]\nlisten = \"127.0.0.1:9999\"\n[runner]\ncapacity = 2\n")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"config", "check", bad}, &stdout, &stderr)
	if code != 1 || stdout.Len() > 0 {
		t.Errorf("config check of a bad file: exit %d, stdout %q; want 1 and nothing", code, stdout.String())
	}
	for _, want := range []string{
		bad + ": unknown key controlplane.data_dirr; did you mean controlplane.data_dir?",
		bad + ":6: runner.capacity: expected a whole number",
		bad + `: controlplane.listen: "nowhere" is not host:port`,
		bad + ": controlplane.max_attempts: must be between 1 and 100",
		bad + ": runner.token_file: read token file",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("config check does not say %q:\n%s", want, stderr.String())
		}
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(t.Context(), []string{"config", "check", good}, &stdout, &stderr); code != 0 || stdout.String() != good+": ok\n" {
		t.Errorf("config check of a good file: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, ".pontus")); err == nil {
		t.Error("config check created a data directory")
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Without --config a daemon reads $PONTUS_CONFIG, else ./pontus.toml, and
// says at start which file it read; a bad file stops it, naming the key.
func TestConfigFileFoundWithoutFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "pontus.toml"), "[controlplane]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"from-cwd\"\nresults_dir = \"r\"\n")
	other := filepath.Join(t.TempDir(), "other.toml")
	write(t, other, "[controlplane]\nlisten = \"127.0.0.1:0\"\ndata_dir = \""+filepath.Join(dir, "from-env")+"\"\nresults_dir = \"r\"\n")

	log := serveIn(t, dir, nil)
	if !strings.Contains(log, "read configuration") || !strings.Contains(log, filepath.Join(dir, "pontus.toml")) || !strings.Contains(log, "from=./pontus.toml") {
		t.Errorf("start-up log does not name ./pontus.toml:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(dir, "from-cwd", "lock")); err != nil {
		t.Errorf("data_dir of ./pontus.toml not used: %v", err)
	}
	log = serveIn(t, dir, []string{"PONTUS_CONFIG=" + other})
	if !strings.Contains(log, other) || !strings.Contains(log, "from=$PONTUS_CONFIG") {
		t.Errorf("start-up log does not name $PONTUS_CONFIG's file:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(dir, "from-env", "lock")); err != nil {
		t.Errorf("data_dir of $PONTUS_CONFIG not used: %v", err)
	}

	// No file anywhere: the defaults, and the log says so.
	empty := t.TempDir()
	log = serveIn(t, empty, nil, "--listen", "127.0.0.1:0", "--data", filepath.Join(empty, "d"))
	if !strings.Contains(log, "using the defaults") {
		t.Errorf("start-up log does not say the defaults are used:\n%s", log)
	}

	// A misspelled key in ./pontus.toml stops the start, with the fix.
	write(t, filepath.Join(dir, "pontus.toml"), "[controlplane]\nlisten = 127.0.0.1:8888\ndata_dirr = \"x\"\n")
	msg := failedStartAll(t, pontusProcess(t, dir, "controlplane"))
	for _, want := range []string{`pontus.toml:2: controlplane.listen: expected a quoted string like "127.0.0.1:8888"`, "did you mean controlplane.data_dir?"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failed start does not say %q:\n%s", want, msg)
		}
	}
}

// failedStartAll runs cmd, which must fail, and returns its stderr.
func failedStartAll(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("%v started; want a failure", cmd.Args[1:])
	}
	return stderr.String()
}

// serveIn starts a control plane in dir and returns its log up to the line
// that says it serves, and its configuration line; it is killed at return.
func serveIn(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := pontusProcess(t, dir, append([]string{"controlplane"}, args...)...)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var seen []string
	serving, config := false, false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		seen = append(seen, sc.Text())
		serving = serving || strings.Contains(sc.Text(), "control plane serving")
		config = config || strings.Contains(sc.Text(), "configuration")
		if serving && config {
			return strings.Join(seen, "\n")
		}
	}
	t.Fatalf("control plane did not serve and log its configuration:\n%s", strings.Join(seen, "\n"))
	return ""
}

// dev keeps everything under --data (./.pontus) unless the file it reads
// says where a role keeps its state.
func TestDevLayoutUnlessFileSetsDirs(t *testing.T) {
	t.Parallel()
	for data, want := range map[string]bool{
		"[controlplane]\nlisten = \"127.0.0.1:9999\"\n": false,
		"[runner]\ncapacity = 2\n":                      false,
		"[controlplane]\ndata_dir = \"/srv/cp\"\n":      true,
		"[runner]\nworkdir = \"/srv/runner\"\n":         true,
	} {
		cfg := defaultFileConfig()
		if err := decodeConfig(data, &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.setsDirs() != want {
			t.Errorf("%q: setsDirs %v, want %v", data, !want, want)
		}
	}
}
