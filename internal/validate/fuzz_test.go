package validate

import (
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The fuzz properties: no validator panics; an error is always an *Error
// naming the field; and an accepted value keeps every promise its doc
// comment makes. Seed corpora live in testdata/fuzz/<FuzzName>/; run one
// with e.g. go test -run '^$' -fuzz '^FuzzBranch$' -fuzztime 15s .

func seed(f *testing.F, values ...string) {
	for _, v := range values {
		f.Add(v)
	}
	for _, v := range hostile {
		f.Add(v)
	}
}

// accepted runs fn and reports whether it accepted s, failing on an error
// that is not a well-formed *Error.
func accepted(t *testing.T, fn check, s string) bool {
	t.Helper()
	err := fn("f", s)
	if err == nil {
		return true
	}
	checkError(t, err, "f")
	return false
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || unicode.IsControl(r) }) >= 0
}

// common are the promises Branch, Repo and CloneURL all make.
func common(t *testing.T, what, s string) {
	t.Helper()
	switch {
	case s == "":
		t.Fatalf("%s accepted the empty string", what)
	case strings.HasPrefix(s, "-"):
		t.Fatalf("%s accepted %q, which starts with '-'", what, s)
	case !utf8.ValidString(s):
		t.Fatalf("%s accepted invalid UTF-8 %q", what, s)
	case hasControl(s):
		t.Fatalf("%s accepted %q, which holds a control character", what, s)
	case strings.ContainsAny(s, ShellMeta):
		t.Fatalf("%s accepted %q, which holds a shell metacharacter", what, s)
	}
}

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$|^[0-9a-f]{64}$`)

func FuzzCommitID(f *testing.F) {
	seed(f, strings.Repeat("a", 40), strings.Repeat("0", 64), strings.Repeat("A", 40), "HEAD")
	f.Fuzz(func(t *testing.T, s string) {
		ok := accepted(t, CommitID, s)
		if want := commitRE.MatchString(s); ok != want {
			t.Fatalf("CommitID(%q) accepted=%v, want %v", s, ok, want)
		}
	})
}

func FuzzBranch(f *testing.F) {
	seed(f, "main", "release/1.2", "a..b", "a@{1}", "feature/x.lock", "v[0-9]*")
	f.Fuzz(func(t *testing.T, s string) {
		for _, v := range []struct {
			name string
			fn   check
			glob bool
		}{{"Branch", Branch, false}, {"BranchPattern", BranchPattern, true}} {
			if !accepted(t, v.fn, s) {
				continue
			}
			common(t, v.name, s)
			if len(s) > 255 {
				t.Fatalf("%s accepted %d bytes", v.name, len(s))
			}
			for _, r := range s {
				if !unicode.IsPrint(r) {
					t.Fatalf("%s accepted %q, which holds the non-printable %U", v.name, s, r)
				}
			}
			for _, bad := range []string{"..", "@{", "//", " ", "~", "^", ":", "\\"} {
				if strings.Contains(s, bad) {
					t.Fatalf("%s accepted %q, which holds %q", v.name, s, bad)
				}
			}
			if s == "@" || s == "HEAD" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") ||
				strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock") {
				t.Fatalf("%s accepted %q", v.name, s)
			}
			for _, part := range strings.Split(s, "/") {
				if strings.HasPrefix(part, ".") {
					t.Fatalf("%s accepted %q, with a component starting with '.'", v.name, s)
				}
			}
			if !v.glob && strings.ContainsAny(s, "*?[") {
				t.Fatalf("%s accepted glob characters in %q", v.name, s)
			}
		}
	})
}

func FuzzRepo(f *testing.F) {
	seed(f, "/srv/repo", "https://github.com/o/r.git", "git@h:o/r.git", "../sibling", "-x", "a\u00a0b")
	f.Fuzz(func(t *testing.T, s string) {
		if !accepted(t, Repo, s) {
			return
		}
		common(t, "Repo", s)
		if len(s) > 1024 {
			t.Fatalf("Repo accepted %d bytes", len(s))
		}
		for _, r := range s {
			if !unicode.IsPrint(r) {
				t.Fatalf("Repo accepted %q, which holds the non-printable %U", s, r)
			}
		}
	})
}

var cloneSchemes = []string{"file://", "http://", "https://", "ssh://", "git://"}

func FuzzCloneURL(f *testing.F) {
	seed(f, "/srv/repo", "file:///srv/r", "https://h/r.git", "ssh://git@h/r", "git@h:r.git", "ext::sh -c x",
		"fd::3", "ext://x", "ssh://-oProxyCommand=x/r", "git@-oProxyCommand=x:r", "http://")
	f.Fuzz(func(t *testing.T, s string) {
		if !accepted(t, CloneURL, s) {
			return
		}
		common(t, "CloneURL", s)
		for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == ':' }) {
			if part == ".." {
				t.Fatalf("CloneURL accepted %q, which has a '..' path element", s)
			}
		}
		if strings.HasPrefix(s, "/") {
			return // an absolute path: git reads it as a local repository
		}
		if strings.ContainsAny(s, " \t") {
			t.Fatalf("CloneURL accepted the URL %q, which holds white space", s)
		}
		scheme := ""
		for _, p := range cloneSchemes {
			if strings.HasPrefix(s, p) {
				scheme = p
			}
		}
		rest := s
		if scheme != "" {
			rest = s[len(scheme):]
			if rest == "" {
				t.Fatalf("CloneURL accepted %q with no host or path", s)
			}
		} else {
			// Not one of the allowed schemes: it must be scp-like, which git
			// never hands to a remote helper.
			if strings.Contains(s, "::") || strings.Contains(s, "://") {
				t.Fatalf("CloneURL accepted %q, a transport other than %v", s, cloneSchemes)
			}
			i := strings.Index(s, ":")
			if i <= 0 || strings.Contains(s[:i], "/") {
				t.Fatalf("CloneURL accepted %q, which is neither an absolute path, an allowed URL nor scp-like", s)
			}
			rest = s[:i]
		}
		if hostStartsWithDash(rest) {
			t.Fatalf("CloneURL accepted %q, whose host starts with '-'", s)
		}
	})
}

func FuzzLabel(f *testing.F) {
	seed(f, "linux", "os=linux", "pool:fast", "a/../b", "_a", strings.Repeat("z", 63))
	f.Fuzz(func(t *testing.T, s string) {
		if !accepted(t, Label, s) {
			return
		}
		if s == "" || len(s) > 63 {
			t.Fatalf("Label accepted %d bytes", len(s))
		}
		if strings.Contains(s, "..") {
			t.Fatalf("Label accepted %q, which holds '..'", s)
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
			if !alnum && (i == 0 || !strings.ContainsRune("._-:=/", rune(c))) {
				t.Fatalf("Label accepted %q with %q at %d", s, c, i)
			}
		}
		// A label is safe as a path element and as a shell word.
		if strings.ContainsAny(s, ShellMeta+" \t\n\"'\\*?[]{}()!#~") {
			t.Fatalf("Label accepted %q", s)
		}
	})
}
