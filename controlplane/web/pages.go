package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const (
	defaultLimit = 50
	maxLimit     = 1000
)

// buildsQuery is the recent-builds page's query string.
type buildsQuery struct {
	Search string
	Branch string
	Repo   string
	Status pontusv1.BuildStatus
	Limit  int32
	Before int64
}

// parseBuildsQuery checks the query parameters of "/"; unknown parameters
// are ignored, empty ones mean "any".
func parseBuildsQuery(q url.Values) (buildsQuery, error) {
	bq := buildsQuery{Limit: defaultLimit, Search: strings.TrimSpace(q.Get("q"))}
	if len(bq.Search) > 200 {
		return bq, errors.New("q: a search is at most 200 characters")
	}
	if s := q.Get("branch"); s != "" {
		if err := validate.Branch("branch", s); err != nil {
			return bq, err
		}
		bq.Branch = s
	}
	if s := q.Get("repo"); s != "" {
		if err := validate.Repo("repo", s); err != nil {
			return bq, err
		}
		bq.Repo = s
	}
	if s := q.Get("status"); s != "" {
		st, ok := parseStatus(s)
		if !ok {
			names := make([]string, len(statusNames))
			for i, n := range statusNames {
				names[i] = n.Value
			}
			return bq, fmt.Errorf("status: unknown status %q; use one of %s", s, strings.Join(names, ", "))
		}
		bq.Status = st
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return bq, fmt.Errorf("limit: %q is not a whole number from 1 to %d", s, maxLimit)
		}
		bq.Limit = int32(n)
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return bq, fmt.Errorf("before: %q is not a positive build id", s)
		}
		bq.Before = n
	}
	return bq, nil
}

// svcError shows an error from the build service. Client-side codes carry
// messages meant for people; anything else is logged and shown generically
// so no internal detail reaches the browser.
func (h *handler) svcError(w http.ResponseWriter, r *http.Request, what string, err error) {
	code := connect.CodeOf(err)
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	status, heading := http.StatusInternalServerError, "The control plane could not answer"
	switch code {
	case connect.CodeNotFound:
		status, heading = http.StatusNotFound, "Not found"
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		status, heading = http.StatusBadRequest, "Bad request"
	case connect.CodeUnauthenticated:
		status, heading = http.StatusUnauthorized, "Not signed in"
	case connect.CodePermissionDenied:
		status, heading = http.StatusForbidden, "Not allowed"
	case connect.CodeResourceExhausted:
		status, heading = http.StatusTooManyRequests, "Too many requests"
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeCanceled, connect.CodeAborted:
		status, heading = http.StatusServiceUnavailable, "The control plane is busy or shutting down"
	default:
		h.log.Error(what, "err", err, "path", r.URL.Path)
		msg = "An internal error happened while reading " + strings.TrimPrefix(what, "read ") + ". The control plane's log has the details."
	}
	if status != http.StatusInternalServerError {
		h.log.Debug(what, "err", err, "path", r.URL.Path)
	}
	h.errorPage(w, status, heading, msg)
}

func (h *handler) buildsPage(w http.ResponseWriter, r *http.Request) {
	q, err := parseBuildsQuery(r.URL.Query())
	if err != nil {
		h.errorPage(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	res, err := h.svc.ListBuilds(r.Context(), &pontusv1.ListBuildsRequest{
		Branch: q.Branch, Repo: q.Repo, Status: q.Status, Limit: q.Limit, BeforeId: q.Before, Search: q.Search,
	})
	if err != nil {
		h.svcError(w, r, "read builds", err)
		return
	}
	now := time.Now()
	v := buildsView{
		Search: q.Search, Branch: q.Branch, Repo: q.Repo, Limit: q.Limit, Before: q.Before,
		Filtered: q.Branch != "" || q.Repo != "" || q.Status != 0 || q.Before != 0 || q.Search != "",
		Charts:   h.charts(r.Context(), res.GetBuilds()),
	}
	if q.Status != 0 {
		v.StatusEnum = q.Status.String()
	}
	for _, n := range statusNames {
		v.Statuses = append(v.Statuses, statusOption{Value: n.Value, Label: statusLabel(n.Status), Selected: n.Status == q.Status})
	}
	for _, b := range res.GetBuilds() {
		v.Builds = append(v.Builds, newBuildRow(b, now))
	}
	if n := len(v.Builds); n > 0 && n >= int(q.Limit) {
		older := url.Values{}
		for k, s := range map[string]string{"branch": q.Branch, "repo": q.Repo, "status": r.URL.Query().Get("status"), "q": q.Search} {
			if s != "" {
				older.Set(k, s)
			}
		}
		if q.Limit != defaultLimit {
			older.Set("limit", strconv.Itoa(int(q.Limit)))
		}
		older.Set("before", strconv.FormatInt(v.Builds[n-1].ID, 10))
		v.Older = "/?" + older.Encode()
	}
	title := "Recent builds"
	if q.Branch != "" {
		title = q.Branch + " · builds"
	}
	h.render(w, http.StatusOK, "builds", title, "builds", v)
}

func (h *handler) buildPage(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		if strings.Trim(raw, "0123456789") != "" && validate.CommitPrefix("commit", raw) == nil {
			h.commitPage(w, r, raw) // /builds/0b6cd8e
			return
		}
		h.errorPage(w, http.StatusBadRequest, "Bad request",
			fmt.Sprintf("%q is not a positive whole number (a build number), nor a commit id or prefix of 4 or more lowercase hex characters with a letter among them (use /commits/ for a prefix of digits only)", raw))
		return
	}
	res, err := h.svc.GetBuild(r.Context(), &pontusv1.GetBuildRequest{BuildId: id})
	if err != nil {
		if connect.CodeOf(err) == connect.CodeNotFound {
			h.errorPage(w, http.StatusNotFound, "Build not found", fmt.Sprintf("There is no build #%d.", id))
			return
		}
		h.svcError(w, r, "read build", err)
		return
	}
	if res.GetBuild() == nil {
		h.errorPage(w, http.StatusNotFound, "Build not found", fmt.Sprintf("There is no build #%d.", id))
		return
	}
	v := newBuildView(res.GetBuild(), time.Now())
	h.render(w, http.StatusOK, "build", fmt.Sprintf("%s · Build #%d", v.StatusLabel, id), "builds", v)
}

// commitPage redirects /builds/COMMIT and /commits/COMMIT (a full id or a
// unique prefix) to the page of the commit's newest build. In /builds/ an
// all-digit segment is a build number; /commits/ always means a commit.
func (h *handler) commitPage(w http.ResponseWriter, r *http.Request, commit string) {
	if err := validate.CommitPrefix("commit", commit); err != nil {
		h.errorPage(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	res, err := h.svc.GetBuild(r.Context(), &pontusv1.GetBuildRequest{Commit: commit})
	if err != nil {
		h.svcError(w, r, "read build", err)
		return
	}
	http.Redirect(w, r, "/builds/"+strconv.FormatInt(res.GetBuild().GetId(), 10), http.StatusSeeOther)
}

func (h *handler) runnersPage(w http.ResponseWriter, r *http.Request) {
	res, err := h.svc.ListRunners(r.Context(), &pontusv1.ListRunnersRequest{})
	if err != nil {
		h.svcError(w, r, "read runners", err)
		return
	}
	now := time.Now()
	var runners []runnerView
	for _, rn := range res.GetRunners() {
		runners = append(runners, newRunnerView(rn, now))
	}
	h.render(w, http.StatusOK, "runners", "Runners", "runners", runners)
}
