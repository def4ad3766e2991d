package controlplane

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// ListBuilds' search finds builds by commit prefix, subject or author
// (ignoring case), together with the other filters, newest first, and
// pages past builds that do not match.
func TestListBuildsSearch(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx := context.Background()
	var commits []string
	var details []*pontusv1.CommitInfo
	for i := range 1200 {
		c := fmt.Sprintf("%06x%034x", 0xabc000+i, i)
		commits = append(commits, c)
		info := &pontusv1.CommitInfo{Id: c, Subject: fmt.Sprintf("routine change %d", i), Author: "Bob", AuthorEmail: "bob@example.com"}
		switch i {
		case 3:
			info.Subject, info.Author, info.AuthorEmail = "Fix the Parser for doctests", "Ada Lovelace", "ada@example.com"
		case 1190:
			info.Subject = "parser: count doctest lines"
		}
		details = append(details, info)
	}
	for i := 0; i < len(commits); i += 500 {
		j := min(i+500, len(commits))
		if _, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{
			Repo: "/srv/repo", Branch: "main", Commits: commits[i:j], Details: details[i:j], KeepCursor: true,
		}); err != nil {
			t.Fatal(err)
		}
	}
	search := func(req *pontusv1.ListBuildsRequest) []string {
		t.Helper()
		res, err := cp.builds.ListBuilds(ctx, req)
		if err != nil {
			t.Fatalf("ListBuilds %v: %v", req, err)
		}
		var subjects []string
		for _, b := range res.Builds {
			subjects = append(subjects, b.Subject)
		}
		return subjects
	}
	for _, tc := range []struct {
		req  *pontusv1.ListBuildsRequest
		want []string
	}{
		{&pontusv1.ListBuildsRequest{Search: "PARSER"}, []string{"parser: count doctest lines", "Fix the Parser for doctests"}},
		{&pontusv1.ListBuildsRequest{Search: "lovelace"}, []string{"Fix the Parser for doctests"}},
		{&pontusv1.ListBuildsRequest{Search: "ada@example"}, []string{"Fix the Parser for doctests"}},
		{&pontusv1.ListBuildsRequest{Search: commits[3][:7]}, []string{"Fix the Parser for doctests"}},
		{&pontusv1.ListBuildsRequest{Search: "parser", Limit: 1}, []string{"parser: count doctest lines"}},
		{&pontusv1.ListBuildsRequest{Search: "parser", Branch: "other"}, nil},
		{&pontusv1.ListBuildsRequest{Search: "no such thing"}, nil},
	} {
		if got := search(tc.req); !slices.Equal(got, tc.want) {
			t.Errorf("search %q (branch %q, limit %d) = %q, want %q", tc.req.Search, tc.req.Branch, tc.req.Limit, got, tc.want)
		}
	}
	if n := len(search(&pontusv1.ListBuildsRequest{Search: "routine", Limit: 1000})); n != 1000 {
		t.Errorf("search routine found %d, want the limit of 1000", n)
	}
	for _, bad := range []string{strings.Repeat("x", 201), "a\x1bb"} {
		_, err := cp.builds.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Search: bad})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "search") {
			t.Errorf("search %q: %v", bad, err)
		}
	}
}
