package web

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// CookieName is the cookie that carries the user token after sign-in. It is
// exported so the API's auth check can accept the same cookie from the
// dashboard's JS. Its value is the user token itself.
const CookieName = "pontus_token"

// Options configures the dashboard.
type Options struct {
	// UserToken, when set, protects every page except /badge.svg and
	// /static/: a person signs in at /signin with the token (a form) which
	// sets an HttpOnly, SameSite=Strict cookie "pontus_token"; pages without
	// a valid cookie redirect to /signin. Compared in constant time.
	UserToken string
	Logger    *slog.Logger
	// SigninPerMinute limits sign-in attempts per client address (a token
	// bucket of that size, refilled at that rate); beyond it HTTP 429.
	// Zero: no limit.
	SigninPerMinute int
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// cookieMaxAge is how long a sign-in lasts.
const cookieMaxAge = 30 * 24 * time.Hour

// maxFormBytes bounds the sign-in form.
const maxFormBytes = 16 << 10

type handler struct {
	svc    pontusv1connect.BuildServiceHandler
	token  []byte
	log    *slog.Logger
	pages  map[string]*template.Template
	static fs.FS
	// versions maps a static file name to a short hash of its content, used
	// as ETag and as the ?v= cache buster in page links.
	versions map[string]string
	signins  *signinLimiter // nil: no limit
}

// New returns the dashboard handler. Mount it at "/" on the same mux as the
// Connect API, whose more specific paths take precedence.
func New(svc pontusv1connect.BuildServiceHandler, opts Options) http.Handler {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{
		svc:      svc,
		token:    []byte(opts.UserToken),
		log:      logger.With("component", "web"),
		pages:    parsePages(),
		versions: map[string]string{},
		signins:  newSigninLimiter(opts.SigninPerMinute),
	}
	// fs.Sub fails only for an invalid name; "static" is checked by go:embed.
	static, _ := fs.Sub(staticFS, "static")
	h.static = static
	entries, _ := fs.ReadDir(static, ".")
	for _, e := range entries {
		b, err := fs.ReadFile(static, e.Name())
		if err != nil {
			continue
		}
		sum := sha256.Sum256(b)
		h.versions[e.Name()] = hex.EncodeToString(sum[:6])
	}
	if opts.UserToken != "" {
		if err := (&http.Cookie{Name: CookieName, Value: opts.UserToken}).Valid(); err != nil {
			h.log.Warn("user token cannot be stored in a browser cookie; dashboard sign-in will fail — use letters, digits and -._~+/=", "err", err)
		}
	}

	cop := http.NewCrossOriginProtection()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /badge.svg", h.badge)
	mux.HandleFunc("GET /static/{file}", h.serveStatic)
	mux.HandleFunc("GET /signin", h.signinForm)
	mux.Handle("POST /signin", cop.Handler(http.HandlerFunc(h.signin)))
	mux.Handle("POST /signout", cop.Handler(http.HandlerFunc(h.signout)))
	mux.Handle("GET /{$}", h.auth(h.buildsPage))
	mux.Handle("GET /builds/{id}", h.auth(h.buildPage))
	mux.Handle("GET /commits/{commit}", h.auth(func(w http.ResponseWriter, r *http.Request) { h.commitPage(w, r, r.PathValue("commit")) }))
	mux.Handle("GET /runners", h.auth(h.runnersPage))
	mux.Handle("GET /tests", h.auth(h.testsPage))
	mux.Handle("GET /tests/history", h.auth(h.testHistoryPage))
	mux.Handle("/", h.auth(h.notFound))
	return securityHeaders(mux)
}

// pageCSP allows only this origin's script, style, images and fetches.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", pageCSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// authorized reports whether r may see the pages.
func (h *handler) authorized(r *http.Request) bool {
	if len(h.token) == 0 {
		return true
	}
	ok := 0
	for _, c := range r.CookiesNamed(CookieName) {
		ok |= subtle.ConstantTimeCompare([]byte(c.Value), h.token)
	}
	// Scripts and curl may send the token as the API takes it.
	if scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " "); found && strings.EqualFold(scheme, "Bearer") {
		ok |= subtle.ConstantTimeCompare([]byte(tok), h.token)
	}
	return ok == 1
}

// auth protects a page with the user token: the sign-in cookie, or a
// bearer header.
func (h *handler) auth(page http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.authorized(r) {
			page(w, r)
			return
		}
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" && r.Header.Get("Sec-Fetch-Mode") == "navigate" {
			// The SameSite=Strict cookie was withheld because the navigation
			// started on another site. Reload from here (same-site) first.
			h.render(w, http.StatusOK, "bounce", "Pontus", "", nil)
			return
		}
		http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	})
}

// safeNext returns next when it is a path on this site, else "/".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f {
			return "/"
		}
	}
	return next
}

type signinView struct {
	Next  string
	Error string
}

func (h *handler) signinForm(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if h.authorized(r) {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	h.render(w, http.StatusOK, "signin", "Sign in", "", signinView{Next: next})
}

func (h *handler) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, http.StatusBadRequest, "Bad request", "The sign-in form could not be read: "+err.Error())
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	if len(h.token) == 0 {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if ok, wait := h.signins.allow(remoteHost(r)); !ok {
		h.log.Debug("dashboard sign-in rate limited", "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		h.render(w, http.StatusTooManyRequests, "signin", "Sign in", "",
			signinView{Next: next, Error: "Too many sign-in attempts from your address; wait a minute and try again."})
		return
	}
	given := r.PostForm.Get("token")
	if subtle.ConstantTimeCompare([]byte(given), h.token) != 1 {
		h.log.Warn("dashboard sign-in with a wrong token", "remote", r.RemoteAddr)
		h.render(w, http.StatusUnauthorized, "signin", "Sign in", "", signinView{Next: next, Error: "That token is not right."})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    given,
		Path:     "/",
		MaxAge:   int(cookieMaxAge / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *handler) signout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	target := "/"
	if len(h.token) > 0 {
		target = "/signin"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (h *handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	v, ok := h.versions[name]
	if !ok {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("ETag", `"`+v+`"`)
	if r.URL.Query().Get("v") == v {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.ServeFileFS(w, r, h.static, name)
}

// asset is the versioned URL of a static file.
func (h *handler) asset(name string) string {
	return "/static/" + name + "?v=" + h.versions[name]
}

// pageData is what the layout template sees.
type pageData struct {
	Title string
	Nav   string
	CSS   string
	JS    string
	Icon  string
	Auth  bool
	Body  any
}

// render executes a page into memory first, so a template error becomes a
// clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, status int, page, title, nav string, body any) {
	data := pageData{
		Title: title, Nav: nav,
		CSS: h.asset("style.css"), JS: h.asset("app.js"), Icon: h.asset("favicon.svg"),
		Auth: len(h.token) > 0 && page != "signin", Body: body,
	}
	var buf bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		h.log.Error("render page", "page", page, "err", err)
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "internal error while rendering the page", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorView struct {
	Code    int
	Heading string
	Message string
}

func (h *handler) errorPage(w http.ResponseWriter, status int, heading, message string) {
	h.render(w, status, "error", heading, "", errorView{Code: status, Heading: heading, Message: message})
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.errorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "This page can only be read (GET).")
		return
	}
	h.errorPage(w, http.StatusNotFound, "Page not found", "There is no page at this address.")
}
