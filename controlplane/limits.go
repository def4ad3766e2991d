package controlplane

import (
	"fmt"
	"net"
	"net/http"
	"sync"

	"connectrpc.com/connect"
)

// streamLimiter bounds concurrent streams in all and per client address.
// A stream holds a slot from its start to its end; one beyond a cap is
// refused at once, so what a flood of streams costs is bounded by the caps.
type streamLimiter struct {
	what      string // named in the refusal: "streams", "unauthenticated streams"
	max       int
	perClient int

	mu       sync.Mutex
	total    int
	byClient map[string]int
}

func newStreamLimiter(what string, max, perClient int) *streamLimiter {
	return &streamLimiter{what: what, max: max, perClient: perClient, byClient: map[string]int{}}
}

// acquire takes a slot for client, or says which cap is reached.
func (l *streamLimiter) acquire(client string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return fmt.Errorf("too many %s: %d open, the control plane's limit; retry later", l.what, l.total)
	}
	if l.byClient[client] >= l.perClient {
		return fmt.Errorf("too many %s from %s: %d open, the per-client limit; close some or retry later", l.what, client, l.perClient)
	}
	l.total++
	l.byClient[client]++
	return nil
}

func (l *streamLimiter) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.byClient[client] - 1; n > 0 {
		l.byClient[client] = n
	} else {
		delete(l.byClient, client)
	}
}

// open reports how many streams hold a slot.
func (l *streamLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// clientAddr is the address a request came from, without its port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limitStreams serves h only while a slot is free in every limiter; a
// refused stream ends with resource_exhausted (HTTP 429 for a client that
// speaks no RPC protocol) before anything is read.
func limitStreams(h http.Handler, limiters ...*streamLimiter) http.Handler {
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := clientAddr(r)
		for i, l := range limiters {
			if err := l.acquire(client); err != nil {
				for _, held := range limiters[:i] {
					held.release(client)
				}
				cerr := connect.NewError(connect.CodeResourceExhausted, err)
				if ew.IsSupported(r) {
					_ = ew.Write(w, r, cerr)
					return
				}
				http.Error(w, "resource_exhausted: "+err.Error(), http.StatusTooManyRequests)
				return
			}
		}
		defer func() {
			for _, l := range limiters {
				l.release(client)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// hsts tells browsers to use HTTPS only, on answers given over TLS.
func hsts(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}
