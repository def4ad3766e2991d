package git

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Limits on what DescribeArgs' output may put in a CommitInfo; the control
// plane refuses longer fields.
const (
	MaxSubjectBytes = 1000
	MaxAuthorBytes  = 256
)

// describeFormat prints, per commit: id, tree, author name, author email,
// committer date (strict ISO 8601) and subject, NUL-separated, one commit a
// line (%s is the subject with its lines joined).
const describeFormat = "%H%x00%T%x00%an%x00%ae%x00%cI%x00%s"

// DescribeArgs is the git command (after any --git-dir) whose output
// ParseDescribe reads: subject, author, time and tree of each of ids,
// which must be validated full commit ids.
func DescribeArgs(ids []string) []string {
	return append([]string{"log", "--no-walk=unsorted", "--no-mailmap", "--format=" + describeFormat, "--end-of-options"}, ids...)
}

// ParseDescribe reads DescribeArgs' output. Text is cut to the limits and
// made valid UTF-8, so a commit with a Latin-1 message still reports.
func ParseDescribe(out string) ([]*pontusv1.CommitInfo, error) {
	var infos []*pontusv1.CommitInfo
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		f := strings.Split(line, "\x00")
		if len(f) != 6 {
			return nil, fmt.Errorf("git log: unexpected line %q", line)
		}
		info := &pontusv1.CommitInfo{
			Id: f[0], Tree: f[1],
			Author:      clean(f[2], MaxAuthorBytes),
			AuthorEmail: clean(f[3], MaxAuthorBytes),
			Subject:     clean(f[5], MaxSubjectBytes),
		}
		if t, err := time.Parse(time.RFC3339, f[4]); err == nil {
			info.CommittedAt = timestamppb.New(t)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// clean makes s valid single-line UTF-8 of at most max bytes, cut at a
// character boundary.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s), "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
