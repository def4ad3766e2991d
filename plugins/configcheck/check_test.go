package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, data, want string // want: "" for valid, else a substring of the error
	}{
		{"ok.toml", "[server]\nport = 8080\nname = \"x\"\n", ""},
		{"bad.toml", "[server]\nport = 8080\nname = \"unterminated\n", "line 3"},
		{"dup.toml", "a = 1\na = 2\n", "line 2"},
		{"ok.json", `{"a": [1, 2, {"b": null}]}`, ""},
		{"bad.json", "{\n  \"a\": 1,\n  \"b\": ,\n}\n", "line 3, column 8"},
		{"trailing.json", "{\"a\": 1}\n{\"b\": 2}\n", "line 2, column 1"},
		{"empty.json", "", "line 1"},
		{"latin1.toml", "a = \"caf\xe9\"\n", "line 1, column 9: invalid UTF-8"},
	}
	for _, c := range cases {
		err := check(c.name, []byte(c.data))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.name, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: no error, want one with %q", c.name, c.want)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error %q, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestWanted(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"pontus.toml":            true,
		"a/b/package.json":       true,
		"web/tsconfig.json":      false,
		"tsconfig.base.json":     false,
		".vscode/settings.json":  false,
		"x/.vscode/launch.json":  false,
		"notes.txt":              false,
		"config.yaml":            false,
		"a/.devcontainer.json":   false,
		"deploy/values.toml.bak": false,
	} {
		if got := wanted(p); got != want {
			t.Errorf("wanted(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestRunTAP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"pontus.toml":           "[runner]\ncapacity = 2\n",
		"conf/broken.toml":      "[a]\nx = 1\ny = [1, 2\n",
		"testdata/ignored.json": "{",
		"package.json":          `{"name": "x"}`,
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut strings.Builder
	if code := run([]string{dir}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"not ok 1 - conf/broken.toml", "line 3", "ok 2 - package.json", "ok 3 - pontus.toml", "1..3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
