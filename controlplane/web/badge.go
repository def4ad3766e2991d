package web

import (
	"fmt"
	"html"
	"net/http"
	"strings"

	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Badge colours, shields.io's palette.
const (
	colorPassing = "#4c1"
	colorFailing = "#e05d44"
	colorError   = "#fe7d37"
	colorRunning = "#007ec6"
	colorUnknown = "#9f9f9f"
)

// badgeScan is how many recent builds the badge looks through for a finished one.
const badgeScan = 50

// badgeState picks the badge text and colour from builds, newest first.
func badgeState(builds []*pontusv1.Build) (text, color string) {
	pending := false
	for _, b := range builds {
		switch b.GetStatus() {
		case pontusv1.BuildStatus_BUILD_STATUS_PASSED:
			return "passing", colorPassing
		case pontusv1.BuildStatus_BUILD_STATUS_FAILED:
			return "failing", colorFailing
		case pontusv1.BuildStatus_BUILD_STATUS_ERROR, pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT:
			return "error", colorError
		case pontusv1.BuildStatus_BUILD_STATUS_QUEUED, pontusv1.BuildStatus_BUILD_STATUS_LEASED,
			pontusv1.BuildStatus_BUILD_STATUS_RUNNING:
			pending = true
		}
		// CANCELED says nothing about the code: look further back.
	}
	if pending {
		return "running", colorRunning
	}
	return "unknown", colorUnknown
}

// badge serves /badge.svg?branch=NAME[&repo=R]. It is always public.
func (h *handler) badge(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	branch, repo := q.Get("branch"), q.Get("repo")
	var bad error
	switch {
	case branch == "":
		bad = fmt.Errorf("branch: missing; use /badge.svg?branch=main")
	default:
		bad = validate.Branch("branch", branch)
		if bad == nil && repo != "" {
			bad = validate.Repo("repo", repo)
		}
	}
	if bad != nil {
		writeBadge(w, http.StatusBadRequest, "invalid", colorUnknown, bad.Error())
		return
	}
	text, color := "unknown", colorUnknown
	res, err := h.svc.ListBuilds(r.Context(), &pontusv1.ListBuildsRequest{Branch: branch, Repo: repo, Limit: badgeScan})
	if err != nil {
		// A badge is an image in someone's README: answer with "unknown"
		// rather than a broken image, and log why.
		h.log.Warn("badge: list builds", "branch", branch, "err", err)
	} else {
		text, color = badgeState(res.GetBuilds())
	}
	writeBadge(w, http.StatusOK, text, color, "pontus: "+branch+" "+text)
}

// textWidth approximates the width of s in 11px Verdana.
func textWidth(s string) int {
	w := 0.0
	for _, c := range s {
		switch {
		case strings.ContainsRune("ijlt.:!|' ", c):
			w += 3.5
		case strings.ContainsRune("mw", c):
			w += 10
		case c >= 'A' && c <= 'Z':
			w += 8
		default:
			w += 7
		}
	}
	return int(w + 0.5)
}

func writeBadge(w http.ResponseWriter, status int, text, color, title string) {
	const label = "pontus"
	lw, rw := textWidth(label)+12, textWidth(text)+12
	total := lw + rw
	svg := fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%[1]d" height="20" role="img" aria-label="%[2]s: %[3]s">`+
		`<title>%[4]s</title>`+
		`<linearGradient id="s" x2="0" y2="100%%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`+
		`<clipPath id="r"><rect width="%[1]d" height="20" rx="3" fill="#fff"/></clipPath>`+
		`<g clip-path="url(#r)"><rect width="%[5]d" height="20" fill="#555"/><rect x="%[5]d" width="%[6]d" height="20" fill="%[7]s"/><rect width="%[1]d" height="20" fill="url(#s)"/></g>`+
		`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">`+
		`<text x="%[8]d" y="15" fill="#010101" fill-opacity=".3">%[2]s</text><text x="%[8]d" y="14">%[2]s</text>`+
		`<text x="%[9]d" y="15" fill="#010101" fill-opacity=".3">%[3]s</text><text x="%[9]d" y="14">%[3]s</text>`+
		`</g></svg>`,
		total, label, html.EscapeString(text), html.EscapeString(title), lw, rw, color, lw/2, lw+rw/2)
	hd := w.Header()
	hd.Set("Content-Type", "image/svg+xml")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(svg))
}
