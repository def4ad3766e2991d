package main

import (
	"bytes"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// A rule finds one kind of secret.
type rule struct {
	// id names the rule's test in the TAP output.
	id string
	// what describes a finding ("AWS access key id").
	what string
	re   *regexp.Regexp
	// group is the submatch holding the secret (0: the whole match).
	group int
	// keep, when set, filters matches: the secret and the text after the
	// match.
	keep func(secret string, after []byte) bool
	// show, when set, says how to print a finding instead of redacting.
	show func(secret string) string
}

// finding is one secret found in a file.
type finding struct {
	rule *rule
	path string
	line int
	text string // redacted
}

// allowMarker on a line silences every rule for that line.
const allowMarker = "pontus:allow-secret"

// rules returns the detectors, in report order.
func rules() []*rule {
	// The header is split so this file does not match its own rule.
	keyHeader := "-----" + "BEGIN ((?:RSA|DSA|EC|OPENSSH|PGP|ENCRYPTED|SSH2 ENCRYPTED) )?PRIVATE KEY( BLOCK)?-----"
	keyBody := regexp.MustCompile(`\A[ \t]*\r?\n(?:[ \t]*[A-Za-z-]+:[^\n]*\r?\n)*[ \t]*\r?\n?[ \t]*[A-Za-z0-9+/=]{16,}`)
	return []*rule{
		{
			id: "private keys", what: "private key block",
			re: regexp.MustCompile(keyHeader),
			// A header alone is documentation; a key has a base64 body.
			keep: func(_ string, after []byte) bool { return keyBody.Match(after) },
			show: func(s string) string { return s },
		},
		{
			id: "AWS access key ids", what: "AWS access key id",
			re: regexp.MustCompile(`\b((?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b`), group: 1,
			keep: func(s string, _ []byte) bool { return !strings.HasSuffix(s, "EXAMPLE") },
		},
		{
			id: "AWS secret access keys", what: "AWS secret access key",
			re:    regexp.MustCompile(`(?i)aws_?secret_?access_?key["']?\s*(?::=|=>|[:=])\s*["']?([A-Za-z0-9/+=]{40})\b`),
			group: 1,
			keep:  func(s string, _ []byte) bool { return !strings.Contains(s, "EXAMPLE") && entropy(s) >= 4 },
		},
		{
			id: "GitHub tokens", what: "GitHub token",
			re:    regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})\b`),
			group: 1,
		},
		{
			id: "GitLab tokens", what: "GitLab token",
			re:    regexp.MustCompile(`\b(gl(?:pat|dt|rt|ptt|soat|ft)-[0-9A-Za-z_\-]{20,})`),
			group: 1,
		},
		{
			id: "Slack tokens", what: "Slack token or webhook",
			re:    regexp.MustCompile(`\b(xox[abposr]-[0-9A-Za-z-]{10,}|https://hooks\.slack\.com/services/T[0-9A-Z]{6,}/B[0-9A-Z]{6,}/[0-9A-Za-z]{20,})`),
			group: 1,
		},
		{
			id: "hard-coded passwords", what: "high-entropy password or secret assignment",
			re:    regexp.MustCompile(`(?i)(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)["']?\s*(?::=|=>|[:=])\s*["']([^"'\s]{12,})["']`),
			group: 1,
			keep:  func(s string, _ []byte) bool { return !placeholder(s) && !wordy(s) && entropy(s) >= 3.5 },
		},
	}
}

// placeholder reports values that are obviously not real secrets.
func placeholder(s string) bool {
	l := strings.ToLower(s)
	for _, p := range []string{"${", "{{", "<", "%s", "xxxx", "****", "change", "example", "dummy", "placeholder", "redacted", "your", "secret"} {
		if strings.Contains(l, p) {
			return true
		}
	}
	return false
}

// wordy reports values made only of letter runs joined by punctuation
// ("home-config-bar", "XDG_RUNTIME_DIR", "a-refresh-token..client-id"):
// identifiers and names, not secrets, whatever their entropy.
func wordy(s string) bool {
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune("-_./: ", r) }) {
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// entropy is the Shannon entropy of s in bits per byte.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	var h float64
	n := float64(len(s))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// scan returns the findings in one file's contents.
func scan(rules []*rule, path string, data []byte) []finding {
	var out []finding
	for _, r := range rules {
		for _, m := range r.re.FindAllSubmatchIndex(data, -1) {
			start, end := m[2*r.group], m[2*r.group+1]
			secret := string(data[start:end])
			if r.keep != nil && !r.keep(secret, data[m[1]:min(len(data), m[1]+512)]) {
				continue
			}
			lineStart := bytes.LastIndexByte(data[:start], '\n') + 1
			lineEnd := bytes.IndexByte(data[start:], '\n')
			if lineEnd < 0 {
				lineEnd = len(data) - start
			}
			if bytes.Contains(data[lineStart:start+lineEnd], []byte(allowMarker)) {
				continue
			}
			text := redact(secret)
			if r.show != nil {
				text = r.show(secret)
			}
			out = append(out, finding{rule: r, path: path, line: bytes.Count(data[:start], []byte{'\n'}) + 1, text: text})
		}
	}
	return out
}

// redact keeps enough of a secret to find it, not to use it.
func redact(s string) string {
	n := min(4, len(s)/4)
	return s[:n] + strings.Repeat("*", 4) + " (" + strconv.Itoa(len(s)) + " characters)"
}
