package controlplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// openStream starts a gRPC server stream (JSON codec) and reads its
// headers: it returns the open body of a stream the control plane took, or
// the code of one refused at once (headers that announce only trailers).
func openStream(ctx context.Context, hc *http.Client, base, proc, body, token string) (io.ReadCloser, string, error) {
	var framed bytes.Buffer
	framed.WriteByte(0)
	_ = binary.Write(&framed, binary.BigEndian, uint32(len(body)))
	framed.WriteString(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+proc, &framed)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/grpc+json")
	req.Header.Set("Te", "trailers")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, "", err
	}
	if res.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return nil, "", fmt.Errorf("HTTP %d: %.200s", res.StatusCode, data)
	}
	if _, announced := res.Trailer["Grpc-Status"]; announced || res.ContentLength == 0 {
		// Only trailers follow: the stream was answered at once.
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		n, _ := strconv.Atoi(res.Trailer.Get("Grpc-Status"))
		return nil, connect.Code(n).String(), nil
	}
	return res.Body, "", nil
}

// 20,000 health Watch streams without a token: a client address holds at
// most max_public_streams_per_client of them, the rest are refused with
// resource_exhausted at once, and the control plane's goroutines and heap
// stay bounded.
func TestHealthWatchFloodIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attempts int
		public   int // max_public_streams
		client   int // max_public_streams_per_client
		want     int // streams held open
	}{
		{"per-client cap (defaults)", 20000, 256, 4, 4},
		{"overall cap", 2000, 50, 50, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.RunnerToken, cfg.ObserverToken, cfg.UserToken = "r", "o", "u"
			cfg.MaxPublicStreams, cfg.MaxPublicStreamsPerClient = tc.public, tc.client
			cp := startCP(t, cfg)
			hc, err := dial.HTTPClient(dial.Config{URL: cp.url})
			if err != nil {
				t.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			goroutinesBefore := runtime.NumGoroutine()

			var (
				mu       sync.Mutex
				open     []io.ReadCloser
				refused  atomic.Int64
				failures []string
			)
			next := atomic.Int64{}
			var wg sync.WaitGroup
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(tc.attempts) {
						body, code, err := openStream(t.Context(), hc, cp.url, "/grpc.health.v1.Health/Watch", "{}", "")
						mu.Lock()
						switch {
						case err != nil:
							failures = append(failures, err.Error())
						case body != nil:
							open = append(open, body)
						case code == "resource_exhausted":
							refused.Add(1)
						default:
							failures = append(failures, "ended with "+code)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			defer func() {
				for _, b := range open {
					b.Close()
				}
			}()
			if len(failures) > 0 {
				t.Fatalf("%d streams failed otherwise, first: %s", len(failures), failures[0])
			}
			if len(open) != tc.want || int(refused.Load()) != tc.attempts-tc.want {
				t.Errorf("%d streams open and %d refused; want %d open, %d refused", len(open), refused.Load(), tc.want, tc.attempts-tc.want)
			}
			if n := cp.server.publicStreams.open(); n != tc.want {
				t.Errorf("control plane counts %d unauthenticated streams open, want %d", n, tc.want)
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			grown := int64(after.HeapInuse) - int64(before.HeapInuse)
			// Client and control plane share this process, so both sides count.
			if g := runtime.NumGoroutine() - goroutinesBefore; g > 64+8*tc.want {
				t.Errorf("%d more goroutines after %d stream attempts (%d held); want a bound independent of the attempts", g, tc.attempts, tc.want)
			}
			if grown > 64<<20 {
				t.Errorf("heap grew by %d MiB after %d stream attempts", grown>>20, tc.attempts)
			}
			t.Logf("%d attempts: %d open, %d refused; heap %+d KiB, goroutines %+d",
				tc.attempts, len(open), refused.Load(), grown>>10, runtime.NumGoroutine()-goroutinesBefore)
		})
	}
}

// WatchBuilds and TailLog count against the per-client cap too; a stream
// that ends frees its slot.
func TestUserStreamsAreCapped(t *testing.T) {
	cfg := testConfig(t)
	cfg.UserToken = "u"
	cfg.MaxStreamsPerClient = 3
	cp := startCP(t, cfg)
	cp.connect(t, "", "", "u")
	b := cp.report(t, "main", nil, commitA)[0]
	hc, err := dial.HTTPClient(dial.Config{URL: cp.url})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	var open []io.ReadCloser
	defer func() {
		for _, b := range open {
			b.Close()
		}
	}()
	for i, s := range []struct{ proc, body, want string }{
		{"/pontus.v1.BuildService/WatchBuilds", "{}", ""},
		{"/pontus.v1.BuildService/WatchBuilds", "{}", ""},
		{"/pontus.v1.BuildService/TailLog", fmt.Sprintf(`{"buildId":%d,"follow":true}`, b.Id), ""},
		{"/pontus.v1.BuildService/TailLog", fmt.Sprintf(`{"buildId":%d,"follow":true}`, b.Id), "resource_exhausted"},
		{"/pontus.v1.BuildService/WatchBuilds", "{}", "resource_exhausted"},
	} {
		body, code, err := openStream(t.Context(), hc, cp.url, s.proc, s.body, "u")
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if code != s.want {
			t.Fatalf("stream %d (%s): ended with %q, want %q", i, s.proc, code, s.want)
		}
		if body != nil {
			open = append(open, body)
		}
	}
	// Unauthenticated attempts are refused before they take a slot.
	if _, code, err := openStream(t.Context(), hc, cp.url, "/pontus.v1.BuildService/WatchBuilds", "{}", "wrong"); err != nil ||
		code != "unauthenticated" {
		t.Errorf("stream with a wrong token: %q, %v; want unauthenticated", code, err)
	}
	open[0].Close()
	open = open[1:]
	waitFor(t, "a closed stream's slot to be freed", 5*time.Second, func() (bool, string) {
		n := cp.server.streams.open()
		return n == 2, fmt.Sprintf("%d streams open", n)
	})
	body, code, err := openStream(t.Context(), hc, cp.url, "/pontus.v1.BuildService/WatchBuilds", "{}", "u")
	if err != nil || body == nil {
		t.Fatalf("stream after one closed: code %q, %v", code, err)
	}
	open = append(open, body)
}

// A flood of registrations that never come back does not grow the runner
// list beyond max_runners: the newest registration replaces the oldest
// silent one, while runners at work are kept; when every runner is at work
// a registration is refused.
func TestRegistrationFloodIsBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxRunners = 20
	cfg.PollTimeout = 5 * time.Second
	cp := startCP(t, cfg)
	ctx := t.Context()
	worker := cp.register(t, "worker")
	polling := make(chan error, 1)
	go func() {
		_, err := cp.runners.AcquireJob(ctx, &pontusv1.AcquireJobRequest{RunnerId: worker, Wait: durationpb.New(5 * time.Second)})
		polling <- err
	}()
	waitFor(t, "the worker to poll", 5*time.Second, func() (bool, string) {
		cp.server.d.mu.Lock()
		defer cp.server.d.mu.Unlock()
		n := cp.server.d.runners[worker].polling
		return n == 1, fmt.Sprintf("polling %d", n)
	})
	for i := range 500 {
		cp.register(t, fmt.Sprintf("flood-%d", i))
	}
	res, err := cp.builds.ListRunners(ctx, &pontusv1.ListRunnersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range res.Runners {
		names[r.Name] = true
	}
	if len(res.Runners) != cfg.MaxRunners || !names["worker"] || !names["flood-499"] {
		t.Errorf("after 500 registrations: %d runners (worker listed: %v, newest listed: %v); want %d with both",
			len(res.Runners), names["worker"], names["flood-499"], cfg.MaxRunners)
	}
	if err := <-polling; err != nil {
		t.Fatalf("the worker's poll: %v", err)
	}

	// Every runner polling: no room, and the registration says why.
	small := testConfig(t)
	small.MaxRunners = 2
	cp2 := startCP(t, small)
	for _, name := range []string{"a", "b"} {
		id := cp2.register(t, name)
		go func() {
			_, _ = cp2.runners.AcquireJob(ctx, &pontusv1.AcquireJobRequest{RunnerId: id, Wait: durationpb.New(2 * time.Second)})
		}()
	}
	waitFor(t, "both runners to poll", 5*time.Second, func() (bool, string) {
		cp2.server.d.mu.Lock()
		defer cp2.server.d.mu.Unlock()
		n := 0
		for _, r := range cp2.server.d.runners {
			n += r.polling
		}
		return n == 2, fmt.Sprintf("%d polling", n)
	})
	_, err = cp2.runners.Register(ctx, &pontusv1.RegisterRequest{Name: "c"})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "max_runners") {
		t.Errorf("registration with every runner at work: %v, want resource_exhausted naming max_runners", err)
	}
}

// A runner silent for runner_expiry that holds nothing is forgotten.
func TestSilentRunnerExpires(t *testing.T) {
	cfg := testConfig(t)
	cfg.RunnerExpiry = 10 * time.Minute
	d := newTestDispatcher(t, cfg)
	r, err := d.register(t.Context(), "gone", nil, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	start := d.now()
	d.now = func() time.Time { return start.Add(9 * time.Minute) }
	d.expireLeases()
	if len(d.listRunners()) != 1 {
		t.Fatalf("runner forgotten before runner_expiry")
	}
	d.now = func() time.Time { return start.Add(11 * time.Minute) }
	d.expireLeases()
	if got := d.listRunners(); len(got) != 0 {
		t.Fatalf("runner %s still listed after runner_expiry", r.Id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := checkQueuesLocked(d); err != nil {
		t.Fatal(err)
	}
}

// Sign-in attempts are limited per client address: beyond the bucket,
// HTTP 429 with Retry-After, even with the right token; another address is
// not affected.
func TestSigninIsRateLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.UserToken = "user-secret"
	cfg.SigninPerMinute = 3
	cp := startCP(t, cfg)
	post := func(from, token string) *http.Response {
		t.Helper()
		local, _ := net.ResolveTCPAddr("tcp", from+":0")
		hc := &http.Client{
			Transport:     &http.Transport{DialContext: (&net.Dialer{LocalAddr: local}).DialContext},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer hc.CloseIdleConnections()
		res, err := hc.PostForm(cp.url+"/signin", url.Values{"token": {token}, "next": {"/"}})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	for i := range 3 {
		if res := post("127.0.0.1", "wrong"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: HTTP %d, want 401", i+1, res.StatusCode)
		}
	}
	for _, token := range []string{"wrong", "user-secret"} {
		res := post("127.0.0.1", token)
		if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
			t.Errorf("attempt beyond the limit with token %q: HTTP %d, Retry-After %q; want 429 with Retry-After",
				token, res.StatusCode, res.Header.Get("Retry-After"))
		}
		if res.Header.Get("Set-Cookie") != "" {
			t.Errorf("a rate-limited sign-in set a cookie")
		}
	}
	if res := post("127.0.0.2", "user-secret"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Set-Cookie") == "" {
		t.Errorf("sign-in from another address: HTTP %d, want 303 with the cookie", res.StatusCode)
	}
}

// HSTS is sent on answers over TLS only.
func TestHSTSOnlyUnderTLS(t *testing.T) {
	pki := newTestPKI(t)
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = pki.certFile, pki.keyFile
	tlsURL := serveTLS(t, cfg)
	plain := startCP(t, testConfig(t))
	for _, tc := range []struct {
		url, ca string
		want    bool
	}{{tlsURL, pki.caFile, true}, {plain.url, "", false}} {
		hc, err := dial.HTTPClient(dial.Config{URL: tc.url, CAFile: tc.ca})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/badge.svg?branch=main", "/", "/grpc.health.v1.Health/Check"} {
			var res *http.Response
			if strings.HasPrefix(path, "/grpc") {
				res, err = hc.Post(tc.url+path, "application/json", strings.NewReader("{}"))
			} else {
				res, err = hc.Get(tc.url + path)
			}
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			got := res.Header.Get("Strict-Transport-Security")
			if (got != "") != tc.want || (tc.want && !strings.Contains(got, "max-age=")) {
				t.Errorf("%s%s: Strict-Transport-Security %q, want it only over TLS", tc.url, path, got)
			}
		}
		hc.CloseIdleConnections()
	}
}
