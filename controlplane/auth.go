package controlplane

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/controlplane/web"
)

// requireToken rejects, before anything is decoded, requests to h that do
// not carry the role's token, and tells refused (if not nil) about each.
// The BuildService also accepts the dashboard's sign-in cookie, so the
// dashboard's own JavaScript can call it. The error is written in whichever
// protocol the client speaks (Connect → HTTP 401, gRPC → status 16).
func requireToken(token string, cookieOK bool, h http.Handler, refused func(*http.Request)) http.Handler {
	if token == "" {
		return h
	}
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tokenOK(r, token, cookieOK) {
			h.ServeHTTP(w, r)
			return
		}
		if refused != nil {
			refused(r)
		}
		err := connect.NewError(connect.CodeUnauthenticated, errors.New("missing or wrong bearer token for this service"))
		if ew.IsSupported(r) {
			_ = ew.Write(w, r, err)
			return
		}
		http.Error(w, "unauthenticated: missing or wrong bearer token", http.StatusUnauthorized)
	})
}

func tokenOK(r *http.Request, token string, cookieOK bool) bool {
	// The scheme is case-insensitive (RFC 9110 §11.1): "bearer" is Bearer.
	if scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") && equal(got, token) {
		return true
	}
	if cookieOK {
		if c, err := r.Cookie(web.CookieName); err == nil && equal(c.Value, token) {
			return true
		}
	}
	return false
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
