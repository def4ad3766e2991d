// Package dial builds the HTTP and Connect client settings that runners,
// observers and the CLI use to reach the control plane: HTTP/2 (h2c for
// http:// URLs, ALPN over TLS for https://, with an optional CA file), a
// bearer token sent on every call, failover across several control-plane
// replicas, and capped exponential backoff with jitter for retries.
package dial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
)

// Config says how to reach the control plane.
type Config struct {
	// URL of the control plane, e.g. http://127.0.0.1:8888 or
	// https://ci.example.com, or several replicas' URLs separated by commas.
	URL string
	// Token is sent as "Authorization: Bearer <token>" when set.
	Token string
	// CAFile is a PEM file of CA certificates to trust for https URLs
	// (in addition to the system roots).
	CAFile string
}

// CheckURL validates a control-plane URL, or a comma-separated list of them.
func CheckURL(raw string) error {
	list := Split(raw)
	if len(list) == 1 {
		return checkOne(raw)
	}
	seen := map[string]bool{}
	for i, u := range list {
		if u == "" {
			return fmt.Errorf("control plane URL list %q: element %d is empty", raw, i+1)
		}
		if err := checkOne(u); err != nil {
			return err
		}
		if seen[u] {
			return fmt.Errorf("control plane URL list %q: %s is given twice", raw, u)
		}
		seen[u] = true
	}
	return nil
}

func checkOne(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("control plane URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("control plane URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("control plane URL %q: no host", raw)
	}
	return nil
}

// HTTPClient returns an HTTP client that speaks HTTP/2 to the control plane:
// prior-knowledge h2c for http:// and ALPN-negotiated h2 for https://. It
// has no overall timeout (long-polls and streams set their own deadlines)
// but pings idle connections so a dead peer is noticed. Given several URLs
// it fails over between them (failover.go): build the Connect clients with
// Base(cfg.URL).
func HTTPClient(cfg Config) (*http.Client, error) {
	if err := CheckURL(cfg.URL); err != nil {
		return nil, err
	}
	list := Split(cfg.URL)
	if len(list) == 1 {
		tr, err := transport(list[0], cfg.CAFile)
		if err != nil {
			return nil, err
		}
		return &http.Client{Transport: tr}, nil
	}
	f := &failover{}
	for _, raw := range list {
		u, _ := url.Parse(raw) // checked above
		tr, err := transport(raw, cfg.CAFile)
		if err != nil {
			return nil, err
		}
		f.endpoints = append(f.endpoints, endpoint{url: u, rt: tr})
	}
	f.base = f.endpoints[0].url
	return &http.Client{Transport: f}, nil
}

// transport returns the HTTP/2 transport for one control-plane URL.
func transport(rawURL, caFile string) (*http.Transport, error) {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConns:        16,
		IdleConnTimeout:     90 * time.Second,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 15 * time.Second,
			PingTimeout:     10 * time.Second,
		},
		Protocols: new(http.Protocols),
	}
	if strings.HasPrefix(rawURL, "https://") {
		tr.Protocols.SetHTTP2(true)
		tr.Protocols.SetHTTP1(true)
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
			}
			tlsCfg.RootCAs = pool
		}
		tr.TLSClientConfig = tlsCfg
	} else {
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return tr, nil
}

// Options returns the Connect client options for cfg: the bearer token on
// every call.
func Options(cfg Config) []connect.ClientOption {
	if cfg.Token == "" {
		return nil
	}
	return []connect.ClientOption{connect.WithInterceptors(bearer(cfg.Token))}
}

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// Backoff is capped exponential backoff with full jitter. The zero value is
// not usable; use NewBackoff.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// NewBackoff returns a Backoff from min doubling up to max.
func NewBackoff(min, max time.Duration) *Backoff { return &Backoff{Min: min, Max: max} }

// Next returns how long to wait before the next try: a random duration in
// [d/2, d] where d doubles from Min up to Max with each call.
func (b *Backoff) Next() time.Duration {
	d := b.Min << min(b.n, 30)
	if d > b.Max || d <= 0 {
		d = b.Max
	} else {
		b.n++
	}
	return d/2 + rand.N(d/2+1)
}

// Reset starts again from Min after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits for d or until ctx ends, and reports whether it waited fully.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Retryable reports whether a failed call to the control plane is worth
// retrying: the server was unreachable, shutting down or overloaded.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeResourceExhausted,
		connect.CodeAborted, connect.CodeInternal, connect.CodeUnknown:
		return true
	case connect.CodeCanceled:
		// Not the caller's cancellation (excluded above): an HTTP/2 stream
		// reset by a server going away.
		return true
	}
	return false
}

// Jitter returns d shifted randomly by up to ±frac of itself.
func Jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 || frac <= 0 {
		return d
	}
	span := time.Duration(float64(d) * frac)
	return d - span + rand.N(2*span+1)
}
