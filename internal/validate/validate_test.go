package validate

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// hostile are values an attacker sends in every string field: path
// traversal, shell metacharacters, option injection, control characters.
var hostile = []string{
	"../../x", "..", "a/../../x",
	";touch pwned", "HEAD;touch pwned", "$(id)", "`id`", "a|id", "a&&id", "a>x", "<x",
	"--upload-pack=touch pwned", "-x",
	"a\nb", "a\x00b", "a\rb", "\x1b[31m",
	"",
}

type check func(field, s string) error

type table struct {
	name   string
	fn     check
	accept []string
	reject []string
}

func tables() []table {
	long := strings.Repeat("a", 256)
	return []table{
		{
			name: "CommitID", fn: CommitID,
			accept: []string{
				strings.Repeat("0", 40), strings.Repeat("f", 40),
				"0123456789abcdef0123456789abcdef01234567",
				strings.Repeat("a", 64),
			},
			reject: append([]string{
				"HEAD", "main", strings.Repeat("a", 39), strings.Repeat("a", 41), strings.Repeat("a", 63),
				strings.Repeat("a", 65), strings.Repeat("A", 40), strings.Repeat("g", 40),
				" " + strings.Repeat("a", 39), strings.Repeat("a", 39) + "\n", "HEAD;touch pwned" + strings.Repeat("a", 24),
				"../../" + strings.Repeat("a", 34), "-" + strings.Repeat("a", 39),
			}, hostile...),
		},
		{
			name: "Branch", fn: Branch,
			accept: []string{
				"main", "master", "release/1.2", "feature/JIRA-123", "dependabot/npm_and_yarn/lodash-4.17.21",
				"v1.2+build", "fix#12", "a.b", "user@feature", "a-", "ünïcödé", strings.Repeat("a", 255),
			},
			reject: append([]string{
				"-main", "HEAD", "@", "a..b", "a@{1}", "a//b", "/a", "a/", "a.", "a.lock", ".a", "a/.b",
				"a b", "a~1", "a^", "a:b", "a\\b", "a*", "a?", "a[", "a\x7f", long, "\xff",
				"zzz\";echo${IFS}\"hello\";#", "a$b", "a`b",
				"a\u0082b", "a\u009b31mb", "main\u202e", "ma\u200bin", "a\u00a0b",
			}, hostile...),
		},
		{
			name: "BranchPattern", fn: BranchPattern,
			accept: []string{"main", "release/*", "feature/?", "v[0-9]*"},
			reject: append([]string{"-*", "*..*", "a b", "$(id)*"}, hostile...),
		},
		{
			name: "Repo", fn: Repo,
			accept: []string{
				"/srv/repo", "/srv/my repo (old)", "https://github.com/o/r.git", "git@github.com:o/r.git",
				".", "../sibling", "relative/path", "C:/repo",
			},
			reject: []string{
				"", "-x", "--upload-pack=touch pwned", strings.Repeat("a", 1025), "\xff",
				"a\nb", "a\x00b", "a\rb", "\x1b[31m", "a\u00a0b",
				";touch pwned", "HEAD;touch pwned", "$(id)", "`id`", "/srv/a|b", "/srv/a&b", "/srv/a>b", "/srv/<b",
			},
		},
		{
			name: "CloneURL", fn: CloneURL,
			accept: []string{
				"/srv/repo", "/srv/my repo", "/srv/a::b", "file:///srv/repo", "http://h/r.git", "https://h/r.git",
				"ssh://git@h/r.git", "ssh://h:22/r.git", "git://h/r.git", "git@github.com:o/r.git", "h:r.git",
				"https://h/r..git", "/srv/a..b",
			},
			reject: append([]string{
				"relative", "./r", "../r", "ext::sh -c touch% pwned", "fd::17", "foo::bar", "ext://x", "HTTP://h/r",
				"unknown://h/r", "ssh://-oProxyCommand=touch%20pwned/x", "ssh://git@-oProxyCommand=x/r",
				"-oProxyCommand=x:r", "git@-oProxyCommand=x:r", "https://", "file://", "https://h/ r",
				"h r:x", "/srv/$(id)", "/srv/a;b", "/srv/repo/../../x", "/..", "file:///srv/../x", "https://h/a/../b",
				"h:../x", "git@h:../../x",
			}, hostile...),
		},
		{
			name: "Label", fn: Label,
			accept: []string{"linux", "wasm", "os=linux", "pool:fast", "a.b", "a_b", "a-b", "a/b", "9", strings.Repeat("a", 63)},
			reject: append([]string{
				"_a", ".a", "-a", "/a", "a b", "a..b", "a/../b", "a\\b", "a@b", "a,b", strings.Repeat("a", 64), "ü",
			}, hostile...),
		},
		{
			name: "Name", fn: Name,
			accept: []string{"runner", "build box 1", "Alice's laptop (fast)", "ünïcödé", "../../x", strings.Repeat("a", 128)},
			reject: []string{
				"", strings.Repeat("a", 129), "\xff", "a\nb", "a\x00b", "a\tb", "\x1b[31m",
				";touch pwned", "$(id)", "`id`", "R&D", "a|b", "a>b",
			},
		},
	}
}

func TestAcceptReject(t *testing.T) {
	t.Parallel()
	for _, tb := range tables() {
		t.Run(tb.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range tb.accept {
				if err := tb.fn("the_field", s); err != nil {
					t.Errorf("%s(%q) = %v, want nil", tb.name, s, err)
				}
			}
			for _, s := range tb.reject {
				err := tb.fn("the_field", s)
				if err == nil {
					t.Errorf("%s(%q) = nil, want an error", tb.name, s)
					continue
				}
				checkError(t, err, "the_field")
			}
		})
	}
}

// checkError asserts err is an *Error naming field, whose message is one
// line of printable text (a bad value cannot forge a log line).
func checkError(t *testing.T, err error, field string) {
	t.Helper()
	var ve *Error
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is %T, want *validate.Error", err, err)
	}
	if ve.Field != field {
		t.Errorf("error %q names field %q, want %q", err, ve.Field, field)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, field+": ") || ve.Reason == "" {
		t.Errorf("error %q does not start with the field name and a reason", msg)
	}
	if strings.ContainsAny(msg, "\n\r\x00\x1b") {
		t.Errorf("error %q holds a control character", msg)
	}
	if len(msg) > 400 {
		t.Errorf("error is %d bytes long; a bad value must be shortened", len(msg))
	}
}

func TestLabels(t *testing.T) {
	t.Parallel()
	if err := Labels("labels", nil); err != nil {
		t.Errorf("no labels: %v", err)
	}
	if err := Labels("labels", []string{"linux", "wasm"}); err != nil {
		t.Errorf("two labels: %v", err)
	}
	err := Labels("labels", []string{"linux", "$(id)"})
	checkError(t, err, "labels[1]")
	many := make([]string, 33)
	for i := range many {
		many[i] = "l"
	}
	checkError(t, Labels("labels", many), "labels")
}

// Every branch name Branch accepts, git accepts too: Pontus is never more
// lenient than git about what names a ref.
func TestBranchAgreesWithGit(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	var candidates []string
	for _, tb := range tables() {
		if tb.name == "Branch" {
			candidates = append(append(candidates, tb.accept...), tb.reject...)
		}
	}
	for _, s := range candidates {
		if Branch("branch", s) != nil || strings.ContainsRune(s, 0) {
			continue
		}
		out, err := exec.Command("git", "check-ref-format", "refs/heads/"+s).CombinedOutput()
		if err != nil {
			t.Errorf("Branch accepts %q but git check-ref-format refuses it: %v %s", s, err, out)
		}
	}
}

func TestCloneURLRefusesPasswords(t *testing.T) {
	for _, u := range []string{"https://user:s3cret@git.example.com/a.git", "ssh://git:pw@host/r"} {
		err := CloneURL("repo", u)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("CloneURL(%q) = %v, want a refusal that does not echo the password", u, err)
		}
	}
	for _, u := range []string{"https://user@git.example.com/a.git", "ssh://git@host:22/r", "https://host/a@b"} {
		if err := CloneURL("repo", u); err != nil {
			t.Errorf("CloneURL(%q) = %v, want ok", u, err)
		}
	}
}
