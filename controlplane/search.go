package controlplane

import (
	"context"
	"strings"

	"github.com/pontus-ci/pontus/controlplane/store"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Bounds on ListBuilds' search.
const (
	maxSearch       = 200   // characters of a search term
	searchMaxScan   = 10000 // builds looked at
	searchPageLimit = 500   // builds read from the store at a time
)

// search returns the newest builds matching q whose commit starts with
// term (hex, 4 characters or more) or whose subject, author or author
// email contains it, ignoring case; at most q.Limit (default 50).
//
// It pages through the store's newest builds in Go rather than asking the
// store to match text, so both stores (SQLite and PostgreSQL) search the
// same way with the queries they already have; the newest searchMaxScan
// builds that match the other filters are looked at, which keeps a
// search's cost bounded whatever the history.
func (d *dispatcher) search(ctx context.Context, q store.Query, term string) ([]*pontusv1.Build, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	term = strings.ToLower(strings.TrimSpace(term))
	var out []*pontusv1.Build
	page := q
	page.Limit = searchPageLimit
	for scanned := 0; scanned < searchMaxScan; {
		bs, err := d.list(ctx, page)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			if matchesSearch(b, term) {
				out = append(out, b)
				if len(out) == limit {
					return out, nil
				}
			}
		}
		scanned += len(bs)
		if len(bs) < searchPageLimit || page.Status == statusLeased || page.Status == statusRunning {
			break // the last page (live builds come in one)
		}
		page.BeforeID = bs[len(bs)-1].Id
	}
	return out, nil
}

// matchesSearch reports whether b's commit starts with term or its subject,
// author or author email contains it; term is lower case.
func matchesSearch(b *pontusv1.Build, term string) bool {
	if term == "" {
		return true
	}
	if len(term) >= 4 && strings.HasPrefix(b.Commit, term) {
		return true
	}
	for _, s := range []string{b.Subject, b.Author, b.AuthorEmail} {
		if strings.Contains(strings.ToLower(s), term) {
			return true
		}
	}
	return false
}
