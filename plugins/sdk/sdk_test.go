package sdk_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pontus-ci/pontus/plugins/sdk"
)

func TestRunToTAP(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	code := sdk.RunTo(&out, "demo", func(t *sdk.T) {
		t.Log("checking things")
		t.Run("passes", func(t *sdk.T) {})
		t.Run("group", func(t *sdk.T) {
			t.Run("a#1", func(t *sdk.T) {})
			t.Run(`b\2`, func(t *sdk.T) {
				t.Fail("first")
				t.Failf("second %d", 2)
			})
		})
		t.Run("skipped", func(t *sdk.T) {
			t.Skip("not today")
			t.Fail("never reached")
		})
		t.Run("fatal", func(t *sdk.T) {
			t.Fatal("stop here")
			t.Fail("never reached")
		})
		t.Run("noted", func(t *sdk.T) { t.Log("a note") })
	})
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	want := `TAP version 14
# checking things
ok 1 - passes
# Subtest: group
    ok 1 - a\#1
    not ok 2 - b\\2
      ---
      message: "first\nsecond 2"
      ...
    1..2
not ok 2 - group
ok 3 - skipped # SKIP not today
not ok 4 - fatal
  ---
  message: "stop here"
  ...
ok 5 - noted
  ---
  log: "a note"
  ...
1..5
`
	if got := out.String(); got != want {
		t.Errorf("TAP output:\n%s\nwant:\n%s", got, want)
	}
}

func TestRunToPassAndPanic(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if code := sdk.RunTo(&out, "demo", func(t *sdk.T) {
		t.Run("ok", func(t *sdk.T) {})
	}); code != 0 {
		t.Errorf("all passing: exit code = %d, want 0\n%s", code, out.String())
	}

	out.Reset()
	code := sdk.RunTo(&out, "demo", func(t *sdk.T) {
		t.Run("boom", func(t *sdk.T) { panic("kaboom") })
		t.Run("after", func(t *sdk.T) {})
		t.Fail("top-level failure")
	})
	if code != 1 {
		t.Errorf("panic: exit code = %d, want 1", code)
	}
	got := out.String()
	for _, want := range []string{"not ok 1 - boom", "panic: kaboom", "ok 2 - after", "not ok 3 - demo", "top-level failure", "1..3"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestWalkFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.txt", "hello")
	write("dir/b.go", "package b")
	write(".git/config", "[core]")
	write("node_modules/x.js", "x")
	write("bin.dat", "ab\x00cd")
	write("big.txt", strings.Repeat("x", 100))
	if err := os.Symlink("a.txt", filepath.Join(root, "link.txt")); err != nil {
		t.Fatal(err)
	}

	var got []string
	err := sdk.Walk(root, sdk.WalkOptions{SkipDirs: []string{"node_modules"}, MaxSize: 50}, func(p string, data []byte) {
		got = append(got, p+"="+string(data))
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.txt=hello", "dir/b.go=package b"}; !slices.Equal(got, want) {
		t.Errorf("walked files %q, want %q", got, want)
	}

	if err := sdk.WalkFiles(filepath.Join(root, "missing"), func(string, []byte) {}); err == nil {
		t.Error("walking a missing root: no error")
	}
}
