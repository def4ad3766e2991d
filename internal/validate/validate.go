// Package validate checks the strings that cross Pontus's edges — commit
// ids, branch names, repository names, labels — before they reach a path,
// a git argument vector or the store. Every check returns an *Error that
// names the offending field, so an RPC can answer invalid_argument with a
// message a person can act on.
package validate

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Error says which field was wrong and why.
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string { return e.Field + ": " + e.Reason }

func fail(field, format string, args ...any) error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ShellMeta are the characters that end a shell command, start a
// substitution or redirect: ` $ ; & | < >. Branch names, repository names,
// clone URLs and names never hold them, so a value that reaches a script
// through CI metadata (as branch names famously do) cannot run anything.
const ShellMeta = "`$;&|<>"

func shellMeta(field, what, s string) error {
	if i := strings.IndexAny(s, ShellMeta); i >= 0 {
		return fail(field, "%s %s contains %q, a shell metacharacter Pontus does not allow", what, quote(s), s[i])
	}
	return nil
}

// quote shows a bad value in an error message, shortened and escaped so it
// cannot forge log lines.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// CommitID accepts a full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase
// hex characters. Nothing else — not "HEAD", not an abbreviation — because
// commit ids name result files.
func CommitID(field, s string) error {
	if len(s) != 40 && len(s) != 64 {
		return fail(field, "commit id must be 40 or 64 lowercase hex characters, got %d characters %s", len(s), quote(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fail(field, "commit id must be lowercase hex, got %s", quote(s))
		}
	}
	return nil
}

// MinCommitPrefix is the shortest commit id prefix Pontus looks up.
const MinCommitPrefix = 4

// CommitPrefix accepts what a person types for a commit: a full commit id
// or a prefix of at least MinCommitPrefix lowercase hex characters (git's
// abbreviations). It never names a file: a prefix is resolved to a full id
// first.
func CommitPrefix(field, s string) error {
	if len(s) < MinCommitPrefix || len(s) > 64 {
		return fail(field, "%s is not a commit: give a commit id or a prefix of %d to 64 lowercase hex characters (a build number goes in build_id)", quote(s), MinCommitPrefix)
	}
	if !IsHex(s) {
		return fail(field, "%s is not a commit: a commit id or prefix is lowercase hex (a build number goes in build_id)", quote(s))
	}
	return nil
}

// IsHex reports whether s is lowercase hex digits only (and not empty).
func IsHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// Branch accepts a branch name as git's check-ref-format does ("main",
// "release/1.2"), and rejects anything that could be read as an option or a
// revision expression, and the shell metacharacters of [ShellMeta] (which
// git allows, and which have been used to inject commands into CI scripts).
func Branch(field, s string) error {
	return refName(field, s, false)
}

// BranchPattern is Branch that also allows the glob characters * ? [ ] used
// to pick branches in the observer's configuration.
func BranchPattern(field, s string) error {
	return refName(field, s, true)
}

func refName(field, s string, glob bool) error {
	switch {
	case s == "":
		return fail(field, "branch name is empty")
	case len(s) > 255:
		return fail(field, "branch name longer than 255 bytes")
	case !utf8.ValidString(s):
		return fail(field, "branch name is not valid UTF-8")
	case strings.HasPrefix(s, "-"):
		return fail(field, "branch name %s must not start with '-'", quote(s))
	case s == "@" || s == "HEAD":
		return fail(field, "%s is not a branch name", quote(s))
	case strings.Contains(s, ".."), strings.Contains(s, "@{"), strings.Contains(s, "//"):
		return fail(field, "branch name %s contains '..', '@{' or '//'", quote(s))
	case strings.HasPrefix(s, "/"), strings.HasSuffix(s, "/"), strings.HasSuffix(s, "."), strings.HasSuffix(s, ".lock"):
		return fail(field, "branch name %s must not start or end with '/' or end with '.' or '.lock'", quote(s))
	}
	for _, part := range strings.Split(s, "/") {
		if strings.HasPrefix(part, ".") {
			return fail(field, "branch name %s has a component starting with '.'", quote(s))
		}
	}
	if err := shellMeta(field, "branch name", s); err != nil {
		return err
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == ' ' || r == '~' || r == '^' || r == ':' || r == '\\' {
			return fail(field, "branch name %s contains %q, which git does not allow", quote(s), r)
		}
		if !unicode.IsPrint(r) {
			// C1 controls (U+009B is a terminal escape), bidi overrides,
			// zero-width and non-ASCII spaces: git allows them, but they
			// make a name that looks like another.
			return fail(field, "branch name %s contains the non-printable character %U", quote(s), r)
		}
		if !glob && (r == '*' || r == '?' || r == '[') {
			return fail(field, "branch name %s contains %q, which git does not allow", quote(s), r)
		}
	}
	return nil
}

// Repo accepts a repository name as observers report it: a local path or a
// URL git can fetch. It must be printable, at most 1024 bytes, must not
// start with '-' (so it can never be read as a git option) and must not hold
// a shell metacharacter ([ShellMeta]).
func Repo(field, s string) error {
	switch {
	case s == "":
		return fail(field, "repository is empty")
	case len(s) > 1024:
		return fail(field, "repository longer than 1024 bytes")
	case !utf8.ValidString(s):
		return fail(field, "repository is not valid UTF-8")
	case strings.HasPrefix(s, "-"):
		return fail(field, "repository %s must not start with '-'", quote(s))
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fail(field, "repository %s contains a control or non-printable character", quote(s))
		}
	}
	return shellMeta(field, "repository", s)
}

// CloneURL accepts where a runner may fetch a repository from: an absolute
// path, or a file://, http(s)://, ssh:// or git:// URL, or scp-like
// user@host:path, without ".." path elements. Transports that run commands (ext::, fd::, any other
// scheme:// that git would hand to a remote helper) are refused, and so is a
// host starting with '-' (ssh://-oProxyCommand=…).
func CloneURL(field, s string) error {
	if err := Repo(field, s); err != nil {
		return err
	}
	if strings.ContainsAny(s, " \t") && !strings.HasPrefix(s, "/") {
		return fail(field, "clone URL %s contains white space", quote(s))
	}
	// A ".." path element makes a second name for a repository and reaches
	// outside the directory the URL seems to name.
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == ':' }) {
		if part == ".." {
			return fail(field, "clone URL %s has a '..' path element", quote(s))
		}
	}
	if strings.HasPrefix(s, "/") {
		return nil
	}
	for _, scheme := range []string{"file://", "http://", "https://", "ssh://", "git://"} {
		if rest, ok := strings.CutPrefix(s, scheme); ok {
			if rest == "" {
				return fail(field, "clone URL %s has no host or path", quote(s))
			}
			if hostStartsWithDash(rest) {
				return fail(field, "clone URL %s has a host starting with '-'", quote(s))
			}
			if authority, _, _ := strings.Cut(rest, "/"); strings.Contains(authority, "@") &&
				strings.Contains(authority[:strings.LastIndex(authority, "@")], ":") {
				// The URL names the repository in logs, results and the
				// dashboard: a password in it would be published.
				return fail(field, "clone URL must not carry a password; use a git credential helper on the runners")
			}
			return nil
		}
	}
	if strings.Contains(s, "::") || strings.Contains(s, "://") {
		return fail(field, "clone URL %s uses a transport Pontus does not allow", quote(s))
	}
	// scp-like: [user@]host:path — a colon before any slash.
	if i := strings.Index(s, ":"); i > 0 && !strings.Contains(s[:i], "/") {
		if hostStartsWithDash(s[:i]) {
			return fail(field, "clone URL %s has a host starting with '-'", quote(s))
		}
		return nil
	}
	return fail(field, "clone URL %s must be an absolute path or a file, http(s), ssh or git URL", quote(s))
}

// hostStartsWithDash reports whether the host of "[user@]host…" starts
// with '-', which ssh would read as an option.
func hostStartsWithDash(s string) bool {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.IndexAny(s, "/:"); j < 0 || j > i {
			s = s[i+1:]
		}
	}
	return strings.HasPrefix(s, "-")
}

// Label accepts a runner label: 1–63 characters of letters, digits and
// . _ - : = /, starting with a letter or digit, without "..".
func Label(field, s string) error {
	if s == "" || len(s) > 63 {
		return fail(field, "label must be 1 to 63 characters, got %s", quote(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fail(field, "label %s must start with a letter or digit", quote(s))
		}
		if !alnum && !strings.ContainsRune("._-:=/", rune(c)) {
			return fail(field, "label %s may hold only letters, digits and . _ - : = /", quote(s))
		}
	}
	if strings.Contains(s, "..") {
		return fail(field, "label %s contains '..'", quote(s))
	}
	return nil
}

// Labels checks each label of a list and refuses more than 32.
func Labels(field string, labels []string) error {
	if len(labels) > 32 {
		return fail(field, "at most 32 labels, got %d", len(labels))
	}
	for i, l := range labels {
		if err := Label(fmt.Sprintf("%s[%d]", field, i), l); err != nil {
			return err
		}
	}
	return nil
}

// Name accepts a free-form human name (a runner name, a plugin name): 1–128
// printable characters, none of them a shell metacharacter ([ShellMeta]).
func Name(field, s string) error {
	if s == "" || len(s) > 128 {
		return fail(field, "must be 1 to 128 characters, got %d", len(s))
	}
	if !utf8.ValidString(s) {
		return fail(field, "is not valid UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fail(field, "%s contains a non-printable character", quote(s))
		}
	}
	return shellMeta(field, "name", s)
}
