package dial

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/BurntSushi/toml"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// replica answers ListRunners with one runner named after itself, or
// unavailable when down is set.
type replica struct {
	pontusv1connect.UnimplementedBuildServiceHandler
	name string
	down bool
}

// ListBuilds answers with the length of the branch it was asked for.
func (r *replica) ListBuilds(_ context.Context, req *pontusv1.ListBuildsRequest) (*pontusv1.ListBuildsResponse, error) {
	return &pontusv1.ListBuildsResponse{Builds: []*pontusv1.Build{{Branch: r.name, Id: int64(len(req.Branch))}}}, nil
}

func (r *replica) ListRunners(context.Context, *pontusv1.ListRunnersRequest) (*pontusv1.ListRunnersResponse, error) {
	if r.down {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("no leader"))
	}
	return &pontusv1.ListRunnersResponse{Runners: []*pontusv1.Runner{{Name: r.name}}}, nil
}

// serve serves r over h2c on a loopback port under prefix and returns its
// URL and a function that stops it.
func serve(t testing.TB, r *replica, prefix string) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	path, h := pontusv1connect.NewBuildServiceHandler(r)
	mux := http.NewServeMux()
	mux.Handle(prefix+path, http.StripPrefix(prefix, h))
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: p}
	go srv.Serve(ln)
	stop := func() { srv.Close() }
	t.Cleanup(stop)
	return "http://" + ln.Addr().String() + prefix, stop
}

// deadURL is a loopback URL nothing listens on.
func deadURL(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	return url
}

func client(t testing.TB, urls string) pontusv1connect.BuildServiceClient {
	t.Helper()
	hc, err := HTTPClient(Config{URL: urls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return pontusv1connect.NewBuildServiceClient(hc, Base(urls), Options(Config{Token: "t"})...)
}

func whoAnswers(t testing.TB, c pontusv1connect.BuildServiceClient) string {
	t.Helper()
	res, err := c.ListRunners(t.Context(), &pontusv1.ListRunnersRequest{})
	if err != nil {
		t.Fatalf("ListRunners: %v", err)
	}
	return res.Runners[0].Name
}

func TestFailoverSkipsARefusingReplica(t *testing.T) {
	b, _ := serve(t, &replica{name: "b"}, "")
	c := client(t, deadURL(t)+","+b)
	for range 3 {
		if got := whoAnswers(t, c); got != "b" {
			t.Fatalf("answered by %q, want b", got)
		}
	}
}

func TestFailoverSkipsAnUnavailableReplica(t *testing.T) {
	a := &replica{name: "a", down: true}
	aURL, _ := serve(t, a, "")
	b, _ := serve(t, &replica{name: "b"}, "/pontus") // a path prefix is kept
	c := client(t, aURL+", "+b+"/")
	if got := whoAnswers(t, c); got != "b" {
		t.Fatalf("answered by %q, want b", got)
	}
}

func TestFailoverMovesOnWhenTheCurrentReplicaDies(t *testing.T) {
	aURL, stopA := serve(t, &replica{name: "a"}, "")
	b := &replica{name: "b"}
	bURL, stopB := serve(t, b, "")
	c := client(t, aURL+","+bURL)
	if got := whoAnswers(t, c); got != "a" {
		t.Fatalf("first call answered by %q, want a (the first URL)", got)
	}
	stopA()
	// A call caught on a's closing connection may fail (retryably: the
	// caller retries); it moves the client on to b all the same.
	if _, err := c.ListRunners(t.Context(), &pontusv1.ListRunnersRequest{}); err != nil && !Retryable(err) {
		t.Fatalf("first call after a stopped: %v", err)
	}
	if got := whoAnswers(t, c); got != "b" {
		t.Fatalf("after a stopped, answered by %q, want b", got)
	}
	// Calls stay on b while it answers, and wrap around to a's URL when b
	// dies too: with neither up the call fails, and a caller retries.
	stopB()
	_, err := c.ListRunners(t.Context(), &pontusv1.ListRunnersRequest{})
	if err == nil || !Retryable(err) {
		t.Fatalf("with every replica down: %v (code %v), want a retryable error", err, connect.CodeOf(err))
	}
}

func TestFailoverAllUnavailableReturnsUnavailable(t *testing.T) {
	a, _ := serve(t, &replica{name: "a", down: true}, "")
	b, _ := serve(t, &replica{name: "b", down: true}, "")
	_, err := client(t, a+","+b).ListRunners(t.Context(), &pontusv1.ListRunnersRequest{})
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("got %v, want unavailable", err)
	}
}

func TestCheckURLList(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://a:1", ""},
		{"http://a:1,https://b:2/", ""},
		{"http://a:1,,http://b:2", "element 2 is empty"},
		{"http://a:1,ftp://b:2", "scheme must be http or https"},
		{"http://a:1,http://a:1/", "given twice"},
	} {
		err := CheckURL(tc.in)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckURL(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestURLsFromTOML(t *testing.T) {
	var cfg struct {
		CP URLs `toml:"controlplane"`
	}
	for _, tc := range []struct{ doc, want, err string }{
		{`controlplane = "http://a:1"`, "http://a:1", ""},
		{`controlplane = ["http://a:1", "http://b:2"]`, "http://a:1,http://b:2", ""},
		{`controlplane = ["http://a:1", 2]`, "", "element 2 of the list is a int64"},
		{`controlplane = ["http://a:1,http://b:2"]`, "", "one URL per element"},
		{`controlplane = 3`, "", "must be a URL string or a list of URL strings"},
	} {
		cfg.CP = ""
		_, err := toml.Decode(tc.doc, &cfg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.doc, err, tc.err)
			}
			continue
		}
		if err != nil || string(cfg.CP) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.doc, cfg.CP, err, tc.want)
		}
	}
}

// A replica that answers unavailable before reading the body (a standby
// with no leader) must not leave the retry on the next replica with half a
// body: each attempt sends the whole request.
func TestFailoverResendsTheWholeBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	early := &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"code":"unavailable","message":"no leader"}`))
	})}
	go early.Serve(ln)
	t.Cleanup(func() { early.Close() })
	b, _ := serve(t, &replica{name: "b"}, "")
	c := client(t, "http://"+ln.Addr().String()+","+b)
	branch := strings.Repeat("x", 4<<20)
	for range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		res, err := c.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Branch: branch})
		cancel()
		if err != nil {
			t.Fatalf("ListBuilds: %v", err)
		}
		if got := res.Builds[0]; got.Branch != "b" || got.Id != int64(len(branch)) {
			t.Fatalf("answered by %q with a body of %d bytes, want b with %d", got.Branch, got.Id, len(branch))
		}
		// Back to the early replica first each time.
		c = client(t, "http://"+ln.Addr().String()+","+b)
	}
}
