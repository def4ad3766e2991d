package git

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestDescribe(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, err := Output(ctx, dir, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	run("init", "-q", "-b", "main")
	run("config", "user.name", "Ada Lovelace")
	run("config", "user.email", "ada@example.com")
	commit := func(msg string, extra ...string) string {
		args := append([]string{"-c", "user.name=Ada Lovelace"}, extra...)
		args = append(args, "commit", "-q", "--allow-empty", "-m", msg)
		run(args...)
		return run("rev-parse", "HEAD")
	}
	plain := commit("Fix the parser\n\nA body that is not the subject.")
	wrapped := commit("A subject\nwrapped over two lines")
	long := commit(strings.Repeat("é", 700)) // 1400 bytes
	latin1 := commit("caf\xe9 au lait", "-c", "i18n.commitEncoding=latin1")

	infos, err := ParseDescribe(run(DescribeArgs([]string{plain, wrapped, long, latin1})...))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 4 {
		t.Fatalf("got %d infos, want 4", len(infos))
	}
	for i, want := range []string{plain, wrapped, long, latin1} {
		if infos[i].Id != want {
			t.Errorf("info %d is %s, want %s (order kept)", i, infos[i].Id, want)
		}
		if tree := run("rev-parse", want+"^{tree}"); infos[i].Tree != tree {
			t.Errorf("tree of %s = %q, want %q", want, infos[i].Tree, tree)
		}
		if infos[i].Author != "Ada Lovelace" || infos[i].AuthorEmail != "ada@example.com" {
			t.Errorf("author = %q <%s>", infos[i].Author, infos[i].AuthorEmail)
		}
		if d := time.Since(infos[i].CommittedAt.AsTime()); d < 0 || d > time.Hour {
			t.Errorf("committed_at %v is not just now", infos[i].CommittedAt.AsTime())
		}
		if !utf8.ValidString(infos[i].Subject) || len(infos[i].Subject) > MaxSubjectBytes {
			t.Errorf("subject %d not valid UTF-8 within %d bytes: %q", i, MaxSubjectBytes, infos[i].Subject)
		}
	}
	if got := infos[0].Subject; got != "Fix the parser" {
		t.Errorf("subject = %q", got)
	}
	if got := infos[1].Subject; got != "A subject wrapped over two lines" {
		t.Errorf("wrapped subject = %q", got)
	}
	if got := infos[2].Subject; !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") {
		t.Errorf("long subject not cut with an ellipsis: %q…", got[:20])
	}
	if got := infos[3].Subject; got != "café au lait" {
		t.Errorf("latin-1 subject = %q, want it re-encoded", got)
	}
}

func TestParseDescribeRefusesGarbage(t *testing.T) {
	if _, err := ParseDescribe("not\x00enough\n"); err == nil {
		t.Fatal("a malformed line was accepted")
	}
	if infos, err := ParseDescribe(""); err != nil || len(infos) != 0 {
		t.Fatalf("empty output: %v, %v", infos, err)
	}
}
