package dial

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// URLs is one control-plane URL or several separated by commas, as the
// --controlplane flag takes them. In pontus.toml it is a string or an array
// of strings (controlplane = ["http://a:8888", "http://b:8888"]).
type URLs string

// UnmarshalTOML accepts a string or an array of strings.
func (u *URLs) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*u = URLs(v)
		return nil
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("controlplane: element %d of the list is a %T, not a URL string", i+1, e)
			}
			if strings.Contains(s, ",") {
				return fmt.Errorf("controlplane: element %d of the list, %q, holds a comma: give one URL per element", i+1, s)
			}
			parts[i] = s
		}
		*u = URLs(strings.Join(parts, ","))
		return nil
	}
	return fmt.Errorf("controlplane: must be a URL string or a list of URL strings, not a %T", v)
}

// List returns the URLs, trimmed, without trailing slashes.
func (u URLs) List() []string { return Split(string(u)) }

// Split splits a comma-separated list of URLs, trimming spaces and trailing
// slashes; empty elements are kept (as "") so CheckURL can name them.
func Split(raw string) []string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = strings.TrimRight(strings.TrimSpace(p), "/")
	}
	return parts
}

// Base returns the first URL of a list: the base URL to build Connect
// clients with. The client's transport sends each call to whichever
// endpoint is current (see HTTPClient).
func Base(raw string) string { return Split(raw)[0] }

// endpoint is one control plane of a failover list.
type endpoint struct {
	url *url.URL
	rt  http.RoundTripper
}

// failover is an http.RoundTripper over several control planes. Every call
// goes to the current endpoint; a call that cannot connect, or that the
// control plane answers 503 (Connect's unavailable: a standby with no
// leader, a replica shutting down), moves the current endpoint to the
// next. A call whose request was certainly not processed — the connection
// was refused or the answer was 503 — and whose body can be replayed is
// retried at once on the next endpoints, each tried once; any other failure
// is returned, and the caller retries with its own backoff and jitter, then
// reaching the new current endpoint. Streams reconnect the same way.
type failover struct {
	base      *url.URL
	endpoints []endpoint
	cur       atomic.Int32
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	// A retry needs the body again, and must not share it with an
	// attempt whose transport may still be reading it (a server may answer
	// before reading the body): unary bodies are read once, here, and each
	// attempt gets its own reader.
	body, replayable, err := replayBody(req)
	if err != nil {
		return nil, err
	}
	start := int(f.cur.Load())
	var lastErr error
	for n := range len(f.endpoints) {
		if n > 0 && !replayable {
			break
		}
		i := (start + n) % len(f.endpoints)
		out := f.rewrite(req, i)
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			out.ContentLength = int64(len(body))
		}
		resp, err := f.endpoints[i].rt.RoundTrip(out)
		switch {
		case err != nil && req.Context().Err() == nil:
			f.advance(i)
			if !refused(err) {
				return nil, err
			}
			lastErr = err
			continue
		case err == nil && resp.StatusCode == http.StatusServiceUnavailable:
			f.advance(i)
			if replayable && n+1 < len(f.endpoints) {
				resp.Body.Close()
				continue
			}
		}
		return resp, err
	}
	return nil, lastErr
}

// maxReplay bounds the request bodies kept to be sent again.
const maxReplay = 16 << 20

// replayBody returns req's whole body when it can be sent again (a unary
// call's, whose transport lets it be read again), and whether the request
// can be retried at all.
func replayBody(req *http.Request) ([]byte, bool, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, true, nil
	}
	if req.GetBody == nil || req.ContentLength < 0 || req.ContentLength > maxReplay {
		return nil, false, nil
	}
	rc, err := req.GetBody()
	if err != nil {
		return nil, false, nil
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxReplay+1))
	if err != nil {
		return nil, false, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) != req.ContentLength {
		return nil, false, fmt.Errorf("request body has %d bytes, not its Content-Length %d", len(b), req.ContentLength)
	}
	return b, true, nil
}

// rewrite points req at endpoint i, keeping the path below the base URL.
func (f *failover) rewrite(req *http.Request, i int) *http.Request {
	ep := f.endpoints[i].url
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = ep.Scheme, ep.Host
	out.URL.Path = ep.Path + strings.TrimPrefix(req.URL.Path, f.base.Path)
	out.URL.RawPath = ""
	out.Host = ""
	return out
}

// advance makes the endpoint after i current, unless another call already
// moved on from i.
func (f *failover) advance(i int) {
	f.cur.CompareAndSwap(int32(i), int32((i+1)%len(f.endpoints)))
}

func (f *failover) CloseIdleConnections() {
	for _, ep := range f.endpoints {
		if c, ok := ep.rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// refused reports whether err means no connection was made, so the request
// was never sent.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
