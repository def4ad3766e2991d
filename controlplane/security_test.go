package controlplane

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/controlplane/web"
	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// liveCP is a control plane served on 127.0.0.1, with typed clients (over
// h2c, carrying the tokens of cfg), a plain HTTP/1.1 client for raw
// requests, and the Server itself for looking inside.
type liveCP struct {
	testCP
	srv    *Server
	h1, h2 *http.Client
	cancel context.CancelFunc // starts the graceful shutdown
	done   chan error         // Serve's result
}

func serveCP(t testing.TB, cfg Config) *liveCP {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	srv, err := New(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp := &liveCP{srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { cp.done <- srv.Serve(ctx, ln) }()
	cp.cfg, cp.url = cfg, "http://"+ln.Addr().String()
	cp.h1 = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}
	cp.h2, err = dial.HTTPClient(dial.Config{URL: cp.url})
	if err != nil {
		t.Fatal(err)
	}
	opts := func(tok string) []connect.ClientOption { return dial.Options(dial.Config{URL: cp.url, Token: tok}) }
	cp.runners = pontusv1connect.NewRunnerServiceClient(cp.h2, cp.url, opts(cfg.RunnerToken)...)
	cp.observer = pontusv1connect.NewObserverServiceClient(cp.h2, cp.url, opts(cfg.ObserverToken)...)
	cp.builds = pontusv1connect.NewBuildServiceClient(cp.h2, cp.url, opts(cfg.UserToken)...)
	cp.stop = func() {
		// Idle client connections would hold the HTTP/2 graceful shutdown
		// for its full GOAWAY timeout.
		cp.h1.CloseIdleConnections()
		cp.h2.CloseIdleConnections()
		cancel()
		select {
		case err := <-cp.done:
			cp.done <- err // for a second stop
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("control plane did not stop within 20s")
		}
	}
	t.Cleanup(cp.stop)
	return cp
}

// answer is what the control plane said to a raw request: the HTTP status
// and, for an error, the Connect code and message (for a stream, those of
// its end-of-stream message).
type answer struct {
	status int
	code   string // "" for success
	msg    string
	body   []byte
	open   bool // a stream that was still open when we stopped waiting
}

func (a answer) String() string {
	if a.open {
		return fmt.Sprintf("HTTP %d, stream still open", a.status)
	}
	if a.code == "" {
		return fmt.Sprintf("HTTP %d %.200q", a.status, a.body)
	}
	return fmt.Sprintf("HTTP %d %s: %s", a.status, a.code, a.msg)
}

// rawUnary POSTs body to procedure proc as a Connect unary call.
func (cp *liveCP) rawUnary(t testing.TB, proc, contentType string, body []byte, hdr http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, cp.url+proc, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := cp.h1.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", proc, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a := answer{status: resp.StatusCode, body: data}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Message string }
		if json.Unmarshal(data, &e) == nil {
			a.code, a.msg = e.Code, e.Message
		}
		if a.code == "" {
			a.code = fmt.Sprint(resp.StatusCode)
		}
	}
	return a
}

// envelope frames msg as one Connect streaming message.
func envelope(flags byte, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// rawStream POSTs one request message to the server-streaming procedure
// proc (Connect streaming protocol, codec "json" or "proto") and reads the
// response until its end-of-stream message, or until wait passes.
func (cp *liveCP) rawStream(t testing.TB, proc, codec string, framed []byte, hdr http.Header, wait time.Duration) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cp.url+proc, bytes.NewReader(framed))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/connect+"+codec)
	resp, err := cp.h1.Do(req)
	if errors.Is(err, context.DeadlineExceeded) {
		return answer{status: 0, open: true}
	}
	if err != nil {
		t.Fatalf("POST %s: %v", proc, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		a.body, a.code = data, fmt.Sprint(resp.StatusCode)
		return a
	}
	r := bufio.NewReader(resp.Body)
	for {
		var head [5]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				a.open = true
				return a
			}
			t.Fatalf("%s: stream ended without an end-of-stream message: %v", proc, err)
		}
		msg := make([]byte, binary.BigEndian.Uint32(head[1:]))
		if _, err := io.ReadFull(r, msg); err != nil {
			t.Fatalf("%s: short stream message: %v", proc, err)
		}
		if head[0]&0x02 == 0 {
			a.body = append(a.body, msg...)
			continue
		}
		var end struct {
			Error *struct{ Code, Message string }
		}
		if err := json.Unmarshal(msg, &end); err != nil {
			t.Fatalf("%s: end-of-stream message %q: %v", proc, msg, err)
		}
		if end.Error != nil {
			a.code, a.msg = end.Error.Code, end.Error.Message
		}
		return a
	}
}

// clientErrorCodes are the answers a client's mistake may get: each one a
// 4xx in Connect's HTTP mapping (or 415 for a wrong content type).
var clientErrorCodes = []string{
	"invalid_argument", "not_found", "failed_precondition", "out_of_range", "resource_exhausted",
	"unauthenticated", "permission_denied", "already_exists", "415", "405", "404",
}

// hostileStrings go into every string field.
var hostileStrings = []string{
	"../../x", ";touch pwned", "$(touch pwned)", "`touch pwned`", "HEAD;touch pwned",
	"--upload-pack=touch pwned", "a\nb", "/srv/repo/../../x",
}

// fieldKind says what the control plane may do with a hostile value in a field.
type fieldKind int

const (
	// strict fields name things (commits, branches, clone URLs, labels,
	// runner ids): a hostile value must be refused.
	strict fieldKind = iota
	// lookup fields are search keys: a value that names nothing may also
	// find nothing (an empty answer, or a stream with nothing to send).
	lookup
	// inert fields are free text stored and shown, never used as a path or
	// an argument: a hostile value may be accepted as text.
	inert
)

type stringField struct {
	proc  string
	field string // proto name, as an invalid_argument message names it
	kind  fieldKind
	msg   func(v string) proto.Message
}

// stringFields lists every string field of every request. Each msg is
// otherwise valid against the state TestHostileRequests sets up.
func stringFields() []stringField {
	const (
		rs = "/" + pontusv1connect.RunnerServiceName + "/"
		ob = "/" + pontusv1connect.ObserverServiceName + "/"
		bs = "/" + pontusv1connect.BuildServiceName + "/"
	)
	return []stringField{
		{rs + "Register", "name", inert, func(v string) proto.Message { return &pontusv1.RegisterRequest{Name: v} }},
		{rs + "Register", "labels", strict, func(v string) proto.Message { return &pontusv1.RegisterRequest{Name: "r", Labels: []string{v}} }},
		{rs + "Register", "version", inert, func(v string) proto.Message { return &pontusv1.RegisterRequest{Name: "r", Version: v} }},
		{rs + "Heartbeat", "runner_id", strict, func(v string) proto.Message { return &pontusv1.HeartbeatRequest{RunnerId: v} }},
		{rs + "AcquireJob", "runner_id", strict, func(v string) proto.Message {
			return &pontusv1.AcquireJobRequest{RunnerId: v, Wait: durationpb.New(time.Millisecond)}
		}},
		// AppendLog has no string field (data is bytes: any output is fine).
		{rs + "CompleteJob", "reason", inert, func(v string) proto.Message {
			return &pontusv1.CompleteJobRequest{JobId: 999, Attempt: 1, Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED, Reason: v}
		}},
		{rs + "CompleteJob", "tests", inert, func(v string) proto.Message {
			return &pontusv1.CompleteJobRequest{JobId: 999, Attempt: 1, Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED,
				Tests: []*pontusv1.TestCase{{Name: v, Message: v, Output: v, Suite: v}}}
		}},
		{ob + "ReportCommits", "repo", strict, func(v string) proto.Message {
			return &pontusv1.ReportCommitsRequest{Repo: v, Branch: "main", Commits: []string{commitC}}
		}},
		{ob + "ReportCommits", "branch", strict, func(v string) proto.Message {
			return &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: v, Commits: []string{commitC}}
		}},
		{ob + "ReportCommits", "commits", strict, func(v string) proto.Message {
			return &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Commits: []string{v}}
		}},
		{ob + "ReportCommits", "clone_url", strict, func(v string) proto.Message {
			return &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Commits: []string{commitC}, CloneUrl: v}
		}},
		{ob + "ReportCommits", "labels", strict, func(v string) proto.Message {
			return &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Commits: []string{commitC}, Labels: []string{v}}
		}},
		{ob + "GetCursor", "repo", lookup, func(v string) proto.Message { return &pontusv1.GetCursorRequest{Repo: v, Branch: "main"} }},
		{ob + "GetCursor", "branch", strict, func(v string) proto.Message { return &pontusv1.GetCursorRequest{Repo: "/srv/repo", Branch: v} }},
		{bs + "ListBuilds", "branch", strict, func(v string) proto.Message { return &pontusv1.ListBuildsRequest{Branch: v} }},
		{bs + "ListBuilds", "repo", lookup, func(v string) proto.Message { return &pontusv1.ListBuildsRequest{Repo: v} }},
		{bs + "GetBuild", "commit", strict, func(v string) proto.Message { return &pontusv1.GetBuildRequest{Commit: v} }},
		{bs + "GetBuild", "repo", lookup, func(v string) proto.Message { return &pontusv1.GetBuildRequest{Commit: commitA, Repo: v} }},
		{bs + "WatchBuilds", "repo", lookup, func(v string) proto.Message { return &pontusv1.WatchBuildsRequest{Repo: v} }},
		{bs + "WatchBuilds", "branch", strict, func(v string) proto.Message { return &pontusv1.WatchBuildsRequest{Branch: v} }},
		{bs + "TailLog", "commit", strict, func(v string) proto.Message { return &pontusv1.TailLogRequest{Commit: v} }},
		{bs + "TailLog", "repo", lookup, func(v string) proto.Message { return &pontusv1.TailLogRequest{Commit: commitA, Repo: v} }},
		{bs + "TriggerBuild", "commit", strict, func(v string) proto.Message { return &pontusv1.TriggerBuildRequest{Commit: v} }},
		{bs + "TriggerBuild", "repo", strict, func(v string) proto.Message {
			return &pontusv1.TriggerBuildRequest{Commit: commitC, Repo: v, Branch: "main"}
		}},
		{bs + "TriggerBuild", "branch", strict, func(v string) proto.Message {
			return &pontusv1.TriggerBuildRequest{Commit: commitA, Branch: v}
		}},
		{bs + "CancelBuild", "commit", strict, func(v string) proto.Message { return &pontusv1.CancelBuildRequest{Commit: v} }},
		{bs + "CancelBuild", "repo", lookup, func(v string) proto.Message { return &pontusv1.CancelBuildRequest{Commit: commitA, Repo: v} }},
	}
}

// badRequest is one row of the table of hostile requests.
type badRequest struct {
	name  string
	proc  string
	ctype string // content type of a unary call; "json"/"proto" codec for a stream
	body  []byte // the request message (framed by send for a stream)
	hdr   http.Header
	// want are the acceptable answer codes ("ok" for success, "open" for a
	// stream still open after a short wait); empty means any client error.
	want []string
	// field, for invalid_argument, is a word the message must contain.
	field string
}

var streamingProcs = []string{pontusv1connect.BuildServiceWatchBuildsProcedure, pontusv1connect.BuildServiceTailLogProcedure}

var allProcs = []string{
	pontusv1connect.RunnerServiceRegisterProcedure, pontusv1connect.RunnerServiceHeartbeatProcedure,
	pontusv1connect.RunnerServiceAcquireJobProcedure, pontusv1connect.RunnerServiceAppendLogProcedure,
	pontusv1connect.RunnerServiceCompleteJobProcedure,
	pontusv1connect.ObserverServiceReportCommitsProcedure, pontusv1connect.ObserverServiceGetCursorProcedure,
	pontusv1connect.BuildServiceListBuildsProcedure, pontusv1connect.BuildServiceGetBuildProcedure,
	pontusv1connect.BuildServiceWatchBuildsProcedure, pontusv1connect.BuildServiceTailLogProcedure,
	pontusv1connect.BuildServiceTriggerBuildProcedure, pontusv1connect.BuildServiceCancelBuildProcedure,
	pontusv1connect.BuildServiceListRunnersProcedure,
}

func gzipped(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// send delivers r and returns the answer.
func (cp *liveCP) send(t testing.TB, r badRequest) answer {
	t.Helper()
	if !slices.Contains(streamingProcs, r.proc) || strings.Contains(r.ctype, "/") {
		return cp.rawUnary(t, r.proc, r.ctype, r.body, r.hdr)
	}
	flags := byte(0)
	if r.hdr.Get("Connect-Content-Encoding") == "gzip" {
		flags = 1
	}
	wait := 5 * time.Second
	if slices.Contains(r.want, "open") {
		wait = 300 * time.Millisecond
	}
	return cp.rawStream(t, r.proc, r.ctype, envelope(flags, r.body), r.hdr, wait)
}

// treeSnapshot lists every path under root except those under skip.
func treeSnapshot(t testing.TB, root string, skip ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if slices.Contains(skip, p) {
			return filepath.SkipDir
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every RPC of all three services gets garbage, wrong types, wrong content
// types, empty and oversized bodies, forged and out-of-range numbers,
// unknown ids, and path traversal and shell metacharacters in every string
// field. Every answer is a client error with a useful message, never a 5xx;
// the daemon keeps serving; nothing is written outside data_dir and
// results_dir.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	root := filepath.Dir(cfg.DataDir)
	// Deep enough that "../../x" from either directory stays inside root.
	cfg.DataDir = filepath.Join(root, "srv", "pontus", "data")
	cfg.ResultsDir = filepath.Join(root, "srv", "pontus", "results")
	cfg.LeaseDuration = time.Minute // the forged-attempt answers must not change under us
	cp := serveCP(t, cfg)
	cwd, _ := os.Getwd()
	cwdBefore := treeSnapshot(t, cwd)

	// State: a runner holding job 1 (commit A, attempt 1, 5 log bytes) and
	// build 2 (commit B) queued.
	runner := cp.register(t, "r1")
	cp.report(t, "main", nil, commitA)
	job := cp.acquire(t, runner, time.Second)
	if _, err := cp.runners.AppendLog(t.Context(), &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	cp.report(t, "main", nil, commitB)
	before := treeSnapshot(t, root, cfg.DataDir, cfg.ResultsDir)

	var cases []badRequest
	add := func(r badRequest) { cases = append(cases, r) }
	jsonCT, protoCT := "application/json", "application/proto"
	codec := func(proc, unary string) string {
		if slices.Contains(streamingProcs, proc) {
			return strings.TrimPrefix(unary, "application/")
		}
		return unary
	}
	big := []byte(`{"name":"` + strings.Repeat("a", 12<<20) + `"}`)
	bomb := gzipped(t, big)
	for _, proc := range allProcs {
		add(badRequest{name: "garbage json", proc: proc, ctype: codec(proc, jsonCT), body: []byte("{\"\x00\xff\xfe"), want: []string{"invalid_argument"}})
		add(badRequest{name: "not json", proc: proc, ctype: codec(proc, jsonCT), body: []byte("hello"), want: []string{"invalid_argument"}})
		add(badRequest{name: "json array", proc: proc, ctype: codec(proc, jsonCT), body: []byte("[]"), want: []string{"invalid_argument"}})
		add(badRequest{name: "json null", proc: proc, ctype: codec(proc, jsonCT), body: []byte("null"), want: []string{"invalid_argument"}})
		if proc == pontusv1connect.BuildServiceWatchBuildsProcedure {
			// An empty stream message is the empty request: watch everything.
			add(badRequest{name: "empty json", proc: proc, ctype: codec(proc, jsonCT), body: nil, want: []string{"open"}})
		} else {
			add(badRequest{name: "empty json", proc: proc, ctype: codec(proc, jsonCT), body: nil, want: []string{"invalid_argument"}})
		}
		add(badRequest{name: "garbage proto", proc: proc, ctype: codec(proc, protoCT), body: []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, want: []string{"invalid_argument"}})
		add(badRequest{name: "truncated proto", proc: proc, ctype: codec(proc, protoCT), body: []byte{0x0a, 0x7f, 'x'}, want: []string{"invalid_argument"}})
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=x"} {
			add(badRequest{name: "content type " + ct, proc: proc, ctype: ct, body: []byte("{}"), want: []string{"415"}})
		}
		add(badRequest{name: "12 MB body", proc: proc, ctype: codec(proc, jsonCT), body: big, want: []string{"resource_exhausted"}})
		bombHdr := http.Header{"Content-Encoding": {"gzip"}}
		if slices.Contains(streamingProcs, proc) {
			bombHdr = http.Header{"Connect-Content-Encoding": {"gzip"}}
		}
		add(badRequest{name: fmt.Sprintf("gzip bomb (%d KB inflating to 12 MB)", len(bomb)>>10), proc: proc, ctype: codec(proc, jsonCT), body: bomb, hdr: bombHdr, want: []string{"resource_exhausted"}})
		// The Connect and gRPC specifications prescribe unimplemented (HTTP
		// 501) for a compression the server does not support: the one 5xx
		// a client can provoke, by protocol.
		add(badRequest{name: "unknown compression", proc: proc, ctype: codec(proc, jsonCT), body: []byte("{}"),
			hdr: http.Header{"Content-Encoding": {"br"}, "Connect-Content-Encoding": {"br"}}, want: []string{"unimplemented"}})
	}
	// Wrong JSON types, and values out of range or forged.
	j := func(proc, name, body, field string, want ...string) {
		if len(want) == 0 {
			want = []string{"invalid_argument"}
		}
		add(badRequest{name: name, proc: proc, ctype: codec(proc, jsonCT), body: []byte(body), want: want, field: field})
	}
	rid := fmt.Sprintf("%q", runner)
	{
		p := pontusv1connect.RunnerServiceRegisterProcedure
		j(p, "name is a number", `{"name":5}`, "name")
		j(p, "labels is a string", `{"labels":"linux"}`, "labels")
		j(p, "capacity is a string", `{"capacity":"many"}`, "capacity")
		j(p, "capacity too large for int32", `{"capacity":4294967296}`, "capacity")
		j(p, "negative capacity", `{"capacity":-1}`, "capacity")
		j(p, "capacity over the limit", `{"capacity":5000}`, "capacity")
		j(p, "33 labels", `{"labels":[`+strings.TrimSuffix(strings.Repeat(`"l",`, 33), ",")+`]}`, "labels")
		j(p, "name too long", `{"name":"`+strings.Repeat("n", 129)+`"}`, "name")
		j(p, "version too long", `{"version":"`+strings.Repeat("v", 200)+`"}`, "version")
		j(p, "name not UTF-8", `{"name":"\udc00"}`, "")
	}
	{
		p := pontusv1connect.RunnerServiceHeartbeatProcedure
		j(p, "runner id is a number", `{"runnerId":5}`, "runnerId")
		j(p, "leases is an object", `{"runnerId":`+rid+`,"leases":{"jobId":1}}`, "leases")
		j(p, "job id is a word", `{"runnerId":`+rid+`,"leases":[{"jobId":"one","attempt":1}]}`, "jobId")
		j(p, "no runner id", `{}`, "runner_id")
		j(p, "runner id too long", `{"runnerId":"`+strings.Repeat("r", 65)+`"}`, "runner_id")
		j(p, "unknown runner", `{"runnerId":"r-0000000000000000"}`, "runner_id", "not_found")
		j(p, "zero job id", `{"runnerId":`+rid+`,"leases":[{"attempt":1}]}`, "job_id")
		j(p, "negative attempt", `{"runnerId":`+rid+`,"leases":[{"jobId":1,"attempt":-1}]}`, "attempt")
		j(p, "null lease", `{"runnerId":`+rid+`,"leases":[null]}`, "leases")
		// Unknown or forged leases are not errors: the answer lists them as lost.
		j(p, "unknown job is lost", `{"runnerId":`+rid+`,"leases":[{"jobId":999,"attempt":1}]}`, "", "ok")
		j(p, "forged attempt is lost", `{"runnerId":`+rid+`,"leases":[{"jobId":1,"attempt":7}]}`, "", "ok")
	}
	{
		p := pontusv1connect.RunnerServiceAcquireJobProcedure
		j(p, "runner id is a list", `{"runnerId":[]}`, "runnerId")
		j(p, "wait is a word", `{"runnerId":`+rid+`,"wait":"forever"}`, "wait")
		j(p, "wait is a number", `{"runnerId":`+rid+`,"wait":5}`, "wait")
		j(p, "negative wait", `{"runnerId":`+rid+`,"wait":"-1s"}`, "wait")
		j(p, "unknown runner", `{"runnerId":"r-0000000000000000","wait":"0.01s"}`, "runner_id", "not_found")
		j(p, "empty runner id", `{"wait":"0.01s"}`, "runner_id")
	}
	{
		p := pontusv1connect.RunnerServiceAppendLogProcedure
		j(p, "job id is a word", `{"jobId":"abc","attempt":1}`, "jobId")
		j(p, "data not base64", `{"jobId":1,"attempt":1,"data":"not base64!!"}`, "data")
		j(p, "fractional offset", `{"jobId":1,"attempt":1,"offset":1.5}`, "offset")
		j(p, "negative offset", `{"jobId":1,"attempt":1,"offset":-1,"data":"eA=="}`, "offset")
		j(p, "zero attempt", `{"jobId":1,"attempt":0,"data":"eA=="}`, "attempt")
		j(p, "negative attempt", `{"jobId":1,"attempt":-1,"data":"eA=="}`, "attempt")
		j(p, "forged attempt", `{"jobId":1,"attempt":2,"data":"eA=="}`, "attempt", "failed_precondition")
		j(p, "max attempt", `{"jobId":1,"attempt":2147483647,"data":"eA=="}`, "attempt", "failed_precondition")
		j(p, "zero job id", `{"attempt":1,"data":"eA=="}`, "job_id")
		j(p, "negative job id", `{"jobId":-5,"attempt":1,"data":"eA=="}`, "job_id")
		j(p, "unknown job", `{"jobId":999,"attempt":1,"data":"eA=="}`, "job_id", "not_found")
		j(p, "queued job", `{"jobId":2,"attempt":1,"data":"eA=="}`, "attempt", "failed_precondition")
		j(p, "offset past the end", `{"jobId":1,"attempt":1,"offset":1000,"data":"eA=="}`, "offset", "out_of_range")
		j(p, "huge offset", `{"jobId":1,"attempt":1,"offset":"9223372036854775807","data":"eA=="}`, "offset", "out_of_range")
	}
	{
		p := pontusv1connect.RunnerServiceCompleteJobProcedure
		j(p, "unknown status name", `{"jobId":1,"attempt":1,"status":"BUILD_STATUS_BOGUS"}`, "status")
		j(p, "tests is a string", `{"jobId":1,"attempt":1,"tests":"x"}`, "tests")
		j(p, "exit code too large", `{"jobId":1,"attempt":1,"exitCode":1e20}`, "exitCode")
		j(p, "status not final", `{"jobId":1,"attempt":1,"status":"BUILD_STATUS_QUEUED"}`, "status")
		j(p, "no status", `{"jobId":1,"attempt":1}`, "status")
		j(p, "unknown status number", `{"jobId":1,"attempt":1,"status":99}`, "status")
		j(p, "negative log size", `{"jobId":1,"attempt":1,"status":"BUILD_STATUS_PASSED","logSize":-1}`, "log_size")
		j(p, "negative dropped bytes", `{"jobId":1,"attempt":1,"status":"BUILD_STATUS_PASSED","outputDroppedBytes":-1}`, "output_dropped_bytes")
		j(p, "negative duration", `{"jobId":1,"attempt":1,"status":"BUILD_STATUS_PASSED","duration":"-1s"}`, "duration")
		j(p, "unnamed test", `{"jobId":1,"attempt":1,"status":"BUILD_STATUS_PASSED","tests":[{"outcome":"TEST_OUTCOME_PASSED"}]}`, "tests[0].name")
		j(p, "reason too long", `{"jobId":1,"attempt":1,"status":"BUILD_STATUS_PASSED","reason":"`+strings.Repeat("r", 5000)+`"}`, "reason")
		j(p, "zero attempt", `{"jobId":1,"attempt":0,"status":"BUILD_STATUS_PASSED"}`, "attempt")
		j(p, "negative attempt", `{"jobId":1,"attempt":-3,"status":"BUILD_STATUS_PASSED"}`, "attempt")
		j(p, "forged attempt", `{"jobId":1,"attempt":2,"status":"BUILD_STATUS_PASSED"}`, "attempt", "failed_precondition")
		j(p, "unknown job", `{"jobId":999,"attempt":1,"status":"BUILD_STATUS_PASSED"}`, "job_id", "not_found")
		j(p, "log not all sent", `{"jobId":1,"attempt":1,"status":"BUILD_STATUS_PASSED","logSize":6}`, "log_size", "out_of_range")
	}
	{
		p := pontusv1connect.ObserverServiceReportCommitsProcedure
		j(p, "commits is a string", `{"repo":"/srv/repo","branch":"main","commits":"`+commitC+`"}`, "commits")
		j(p, "repo is an object", `{"repo":{},"branch":"main"}`, "repo")
		j(p, "no repo", `{"branch":"main","commits":["`+commitC+`"]}`, "repo")
		j(p, "no branch", `{"repo":"/srv/repo","commits":["`+commitC+`"]}`, "branch")
		j(p, "empty commit", `{"repo":"/srv/repo","branch":"main","commits":[""]}`, "commits[0]")
		j(p, "abbreviated commit", `{"repo":"/srv/repo","branch":"main","commits":["abc1234"]}`, "commits[0]")
		j(p, "upper-case commit", `{"repo":"/srv/repo","branch":"main","commits":["`+strings.ToUpper(commitC)+`"]}`, "commits[0]")
		j(p, "1001 commits", `{"repo":"/srv/repo","branch":"main","commits":[`+strings.TrimSuffix(strings.Repeat(`"`+commitC+`",`, 1001), ",")+`]}`, "commits")
		j(p, "relative repo without clone url", `{"repo":"srv/repo","branch":"main","commits":["`+commitC+`"]}`, "repo")
		j(p, "ext transport", `{"repo":"/srv/repo","branch":"main","commits":["`+commitC+`"],"cloneUrl":"ext::sh -c touch% pwned"}`, "clone_url")
		j(p, "ssh option host", `{"repo":"/srv/repo","branch":"main","commits":["`+commitC+`"],"cloneUrl":"ssh://-oProxyCommand=touch%20pwned/r"}`, "clone_url")
		j(p, "remote helper scheme", `{"repo":"/srv/repo","branch":"main","commits":["`+commitC+`"],"cloneUrl":"ext://touch pwned"}`, "clone_url")
	}
	{
		p := pontusv1connect.ObserverServiceGetCursorProcedure
		j(p, "branch is a bool", `{"repo":"/srv/repo","branch":true}`, "branch")
		j(p, "no repo", `{"branch":"main"}`, "repo")
		j(p, "no branch", `{"repo":"/srv/repo"}`, "branch")
		j(p, "repo too long", `{"repo":"/`+strings.Repeat("r", 1100)+`","branch":"main"}`, "repo")
	}
	{
		p := pontusv1connect.BuildServiceListBuildsProcedure
		j(p, "limit is a word", `{"limit":"ten"}`, "limit")
		// KNOWN: Connect's JSON codec (protojson with DiscardUnknown) drops an
		// enum name it does not know, so this lists builds of every status.
		j(p, "unknown status name", `{"status":"NOPE"}`, "status", "invalid_argument", "ok")
		j(p, "unknown status number", `{"status":99}`, "status")
		j(p, "negative limit", `{"limit":-1}`, "limit")
		j(p, "limit over 1000", `{"limit":100000}`, "limit")
		j(p, "negative before id", `{"beforeId":-1}`, "before_id")
	}
	{
		p := pontusv1connect.BuildServiceGetBuildProcedure
		j(p, "build id is a word", `{"buildId":"x1"}`, "buildId")
		j(p, "negative build id", `{"buildId":-1}`, "build_id")
		j(p, "neither id nor commit", `{}`, "commit")
		j(p, "both id and commit", `{"buildId":1,"commit":"`+commitA+`"}`, "commit")
		j(p, "unknown build id", `{"buildId":999}`, "build_id", "not_found")
		j(p, "unknown commit", `{"commit":"`+commitC+`"}`, "commit", "not_found")
		j(p, "huge build id", `{"buildId":"9223372036854775807"}`, "build_id", "not_found")
	}
	{
		p := pontusv1connect.BuildServiceWatchBuildsProcedure
		j(p, "repo is a number", `{"repo":1}`, "repo")
		j(p, "branch starts with -", `{"branch":"-x"}`, "branch")
	}
	{
		p := pontusv1connect.BuildServiceTailLogProcedure
		j(p, "follow is a word", `{"buildId":1,"follow":"yes"}`, "follow")
		j(p, "negative offset", `{"buildId":1,"offset":-1}`, "offset")
		j(p, "neither id nor commit", `{}`, "commit")
		j(p, "unknown build", `{"buildId":999}`, "build_id", "not_found")
		j(p, "unknown commit", `{"commit":"`+commitC+`"}`, "commit", "not_found")
	}
	{
		p := pontusv1connect.BuildServiceTriggerBuildProcedure
		j(p, "commit is a number", `{"commit":1}`, "commit")
		j(p, "no commit", `{}`, "commit")
		j(p, "unknown commit without repo", `{"commit":"`+commitC+`"}`, "commit", "not_found")
	}
	{
		p := pontusv1connect.BuildServiceCancelBuildProcedure
		j(p, "fractional build id", `{"buildId":-1.5}`, "buildId")
		j(p, "negative build id", `{"buildId":-1}`, "build_id")
		j(p, "unknown build", `{"buildId":999}`, "build_id", "not_found")
	}
	// Wrong HTTP methods.
	for _, proc := range []string{pontusv1connect.RunnerServiceRegisterProcedure, pontusv1connect.BuildServiceListRunnersProcedure} {
		add(badRequest{name: "unknown procedure", proc: proc + "X", ctype: jsonCT, body: []byte("{}"), want: []string{"404"}})
	}
	// Hostile strings in every string field, as JSON and as binary proto.
	for _, f := range stringFields() {
		for _, v := range hostileStrings {
			want := []string{"invalid_argument"}
			field := f.field
			switch {
			case strings.HasSuffix(f.field, "runner_id"):
				want = []string{"not_found", "invalid_argument"}
			case f.proc == "/"+pontusv1connect.BuildServiceName+"/TriggerBuild" && f.field == "repo":
				// A repository no observer reported is refused whatever its name.
				want = []string{"invalid_argument", "permission_denied"}
			case f.kind == lookup:
				want = []string{"invalid_argument", "not_found", "ok", "open"}
				field = ""
			case f.kind == inert:
				want = []string{"invalid_argument", "not_found", "ok"}
				field = ""
			}
			m := f.msg(v)
			js, err := protojson.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			pb, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s=%q", f.field, v)
			add(badRequest{name: name + " json", proc: f.proc, ctype: codec(f.proc, jsonCT), body: js, want: want, field: field})
			add(badRequest{name: name + " proto", proc: f.proc, ctype: codec(f.proc, protoCT), body: pb, want: want, field: field})
		}
	}

	leaks := []string{root, cfg.DataDir, cfg.ResultsDir, cwd}
	for _, c := range cases {
		a := cp.send(t, c)
		got := a.code
		switch {
		case a.open:
			got = "open"
		case got == "":
			got = "ok"
		}
		desc := fmt.Sprintf("%s %s", c.proc, c.name)
		if a.status >= 500 && !slices.Contains(c.want, got) {
			t.Errorf("%s: server error %s", desc, a)
			continue
		}
		if len(c.want) > 0 && !slices.Contains(c.want, got) {
			t.Errorf("%s: got %s, want %v", desc, a, c.want)
			continue
		}
		if len(c.want) == 0 && !slices.Contains(clientErrorCodes, got) {
			t.Errorf("%s: got %s, want a client error", desc, a)
			continue
		}
		if got == "ok" || got == "open" || got == "415" || got == "404" || got == "405" || got == "unimplemented" {
			continue
		}
		if strings.TrimSpace(a.msg) == "" {
			t.Errorf("%s: %s with no message", desc, got)
		}
		// A semantic error names the field; a JSON syntax error (from the
		// codec, before any field is known) at least says where it is.
		named := strings.Contains(a.msg, c.field) ||
			strings.HasPrefix(a.msg, "unmarshal message") && strings.Contains(a.msg, "(line ")
		if got == "invalid_argument" && c.field != "" && !named {
			t.Errorf("%s: message %q does not name %q", desc, a.msg, c.field)
		}
		for _, p := range leaks {
			if strings.Contains(a.msg, p) {
				t.Errorf("%s: message %q reveals the server path %s", desc, a.msg, p)
			}
		}
	}
	t.Logf("%d hostile requests", len(cases))

	// Still serving, and the state the table probed is intact.
	checkHealth(t, cp, "", "SERVING")
	if b := cp.build(t, job.JobId); b.Status != statusRunning || b.Attempt != 1 || b.LogSize != 5 {
		t.Errorf("job 1 after the table: %s attempt %d log %d", b.Status, b.Attempt, b.LogSize)
	}

	// Free text (reason, test names and messages) is stored as text and
	// never interpreted: completing the job writes exactly the two result
	// files, holding the text verbatim.
	evil := strings.Join(hostileStrings, " ")
	res, err := cp.runners.CompleteJob(t.Context(), &pontusv1.CompleteJobRequest{
		JobId: job.JobId, Attempt: 1, Status: pontusv1.BuildStatus_BUILD_STATUS_FAILED, LogSize: 5, Reason: evil,
		Tests: []*pontusv1.TestCase{{Name: "../../x", Suite: "$(touch pwned)", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FAILED, Message: evil, Output: evil}},
	})
	if err != nil {
		t.Fatalf("CompleteJob with hostile free text: %v", err)
	}
	if res.Build.Reason != evil {
		t.Errorf("reason stored as %q, want it verbatim", res.Build.Reason)
	}
	// Result files are written in the background; the .json comes last.
	waitFor(t, "the result files", 5*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(cfg.ResultsDir, commitA+".json"))
		return err == nil, fmt.Sprint(err)
	})
	entries, err := os.ReadDir(cfg.ResultsDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{commitA, commitA + ".json"}; !slices.Equal(names, want) {
		t.Errorf("results_dir holds %q, want %q", names, want)
	}
	if report, _ := os.ReadFile(filepath.Join(cfg.ResultsDir, commitA)); !bytes.Contains(report, []byte("$(touch pwned)")) {
		t.Errorf("human report lacks the hostile text verbatim:\n%s", report)
	}

	// Nothing appeared outside data_dir and results_dir, nor in the
	// working directory the daemon ran in.
	if after := treeSnapshot(t, root, cfg.DataDir, cfg.ResultsDir); !slices.Equal(before, after) {
		t.Errorf("files appeared outside data_dir/results_dir:\nbefore %q\nafter  %q", before, after)
	}
	for _, p := range treeSnapshot(t, cwd) {
		if base := filepath.Base(p); (base == "pwned" || base == "x") && !slices.Contains(cwdBefore, p) {
			t.Errorf("%s appeared in the working directory", p)
		}
	}
	_ = filepath.WalkDir(cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (d.Name() == "pwned" || d.Name() == "x") {
			t.Errorf("%s appeared in data_dir", p)
		}
		return nil
	})
	checkHealth(t, cp, "", "SERVING")
}

// The same refusals reach gRPC, gRPC-Web and gzip-compressed Connect
// clients with the right status (the 12 MB AppendLog compresses to a few KB:
// the limit holds after decompression).
func TestHostileRequestsOverEveryProtocol(t *testing.T) {
	t.Parallel()
	cp := serveCP(t, testConfig(t))
	for _, opt := range []connect.ClientOption{connect.WithGRPC(), connect.WithGRPCWeb(), connect.WithSendGzip()} {
		obs := pontusv1connect.NewObserverServiceClient(cp.h2, cp.url, opt)
		_, err := obs.ReportCommits(t.Context(), &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "$(touch pwned)", Commits: []string{commitA}})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "branch") {
			t.Errorf("hostile branch: %v", err)
		}
		builds := pontusv1connect.NewBuildServiceClient(cp.h2, cp.url, opt)
		_, err = builds.GetBuild(t.Context(), &pontusv1.GetBuildRequest{Commit: "../../x"})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "commit") {
			t.Errorf("traversal commit: %v", err)
		}
		big := pontusv1connect.NewRunnerServiceClient(cp.h2, cp.url, opt)
		_, err = big.AppendLog(t.Context(), &pontusv1.AppendLogRequest{JobId: 1, Attempt: 1, Data: make([]byte, 12<<20)})
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("12 MB AppendLog: %v", err)
		}
		stream, err := builds.TailLog(t.Context(), &pontusv1.TailLogRequest{BuildId: 1, Offset: -1})
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "offset") {
			t.Errorf("negative TailLog offset: %v", err)
		}
	}
	checkHealth(t, cp, "", "SERVING")
}

// checkHealth calls the gRPC health check the way curl would.
func checkHealth(t testing.TB, cp *liveCP, service, want string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"service": service})
	a := cp.rawUnary(t, "/grpc.health.v1.Health/Check", "application/json", body, nil)
	var got struct{ Status string }
	// grpchealth's JSON spells the enum SERVING_STATUS_SERVING.
	if a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil ||
		(got.Status != want && got.Status != "SERVING_STATUS_"+want) {
		t.Fatalf("health of %q: %s, want %s", service, a, want)
	}
}

const (
	runnerTok   = "runner-secret-0123"
	observerTok = "observer-secret-4567"
	userTok     = "user-secret-89ab"
)

// Each role's token opens its own service and nothing else; the dashboard
// and /metrics need the user token; health and the badge stay public.
func TestTokenMatrix(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.RunnerToken, cfg.ObserverToken, cfg.UserToken = runnerTok, observerTok, userTok
	cp := serveCP(t, cfg)

	type cred struct {
		name   string
		header http.Header
		role   string // whose token, "" for none
		cookie bool
	}
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	cookie := func(tok string) http.Header { return http.Header{"Cookie": {web.CookieName + "=" + tok}} }
	creds := []cred{
		{"no token", nil, "", false},
		{"wrong token", bearer("nope"), "", false},
		{"empty bearer", http.Header{"Authorization": {"Bearer "}}, "", false},
		{"basic auth", http.Header{"Authorization": {"Basic " + userTok}}, "", false},
		{"token without scheme", http.Header{"Authorization": {userTok}}, "", false},
		{"token with a suffix", bearer(userTok + "x"), "", false},
		{"token prefix", bearer(userTok[:len(userTok)-1]), "", false},
		{"runner token", bearer(runnerTok), "runner", false},
		{"observer token", bearer(observerTok), "observer", false},
		{"user token", bearer(userTok), "user", false},
		{"user token, lower-case scheme", http.Header{"Authorization": {"bearer " + userTok}}, "user", false},
		{"runner token, upper-case scheme", http.Header{"Authorization": {"BEARER " + runnerTok}}, "runner", false},
		{"user cookie", cookie(userTok), "user", true},
		{"runner token as cookie", cookie(runnerTok), "", true},
		{"observer token as cookie", cookie(observerTok), "", true},
		{"wrong cookie", cookie("nope"), "", true},
	}
	type endpoint struct {
		name    string
		role    string // "" for public
		cookies bool   // the role's token is also accepted as the cookie
		call    func(h http.Header) answer
	}
	post := func(proc, body string) func(h http.Header) answer {
		return func(h http.Header) answer { return cp.rawUnary(t, proc, "application/json", []byte(body), h) }
	}
	get := func(path string) func(h http.Header) answer {
		return func(h http.Header) answer {
			req, _ := http.NewRequest(http.MethodGet, cp.url+path, nil)
			for k, v := range h {
				req.Header[k] = v
			}
			client := &http.Client{Transport: cp.h1.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			a := answer{status: resp.StatusCode, body: data}
			if resp.StatusCode != http.StatusOK {
				a.code = fmt.Sprint(resp.StatusCode)
			}
			return a
		}
	}
	endpoints := []endpoint{
		{"RunnerService/Register", "runner", false, post(pontusv1connect.RunnerServiceRegisterProcedure, `{"name":"matrix"}`)},
		{"RunnerService/Heartbeat", "runner", false, post(pontusv1connect.RunnerServiceHeartbeatProcedure, `{"runnerId":"r-0000000000000000"}`)},
		{"ObserverService/GetCursor", "observer", false, post(pontusv1connect.ObserverServiceGetCursorProcedure, `{"repo":"/srv/repo","branch":"main"}`)},
		{"ObserverService/ReportCommits", "observer", false, post(pontusv1connect.ObserverServiceReportCommitsProcedure, `{"repo":"/srv/repo","branch":"main","commits":[]}`)},
		{"BuildService/ListRunners", "user", true, post(pontusv1connect.BuildServiceListRunnersProcedure, `{}`)},
		{"BuildService/TriggerBuild", "user", true, post(pontusv1connect.BuildServiceTriggerBuildProcedure, `{"commit":"`+commitC+`"}`)},
		{"BuildService/TailLog", "user", true, func(h http.Header) answer {
			return cp.rawStream(t, pontusv1connect.BuildServiceTailLogProcedure, "json", envelope(0, []byte(`{"buildId":999}`)), h, 5*time.Second)
		}},
		{"/metrics", "user", true, get("/metrics")},
		{"/grpc.health.v1.Health/Check", "", false, post("/grpc.health.v1.Health/Check", `{}`)},
		{"/badge.svg", "", false, get("/badge.svg?branch=main")},
	}
	for _, e := range endpoints {
		for _, c := range creds {
			a := e.call(c.header)
			allowed := e.role == "" || (c.role == e.role && (!c.cookie || e.cookies))
			if a.status >= 500 {
				t.Errorf("%s with %s: server error %s", e.name, c.name, a)
				continue
			}
			// Connect unary: HTTP 401 with code unauthenticated; a stream:
			// unauthenticated in its end message; plain HTTP: 401.
			var refused bool
			switch {
			case strings.HasPrefix(e.name, "/"):
				refused = a.status == http.StatusUnauthorized
			case strings.HasSuffix(e.name, "TailLog"):
				refused = a.code == "unauthenticated"
			default:
				refused = a.code == "unauthenticated" && a.status == http.StatusUnauthorized
			}
			if allowed && (refused || a.status == http.StatusUnauthorized || a.code == "unauthenticated") {
				t.Errorf("%s with %s: refused (%s), want allowed", e.name, c.name, a)
			}
			if !allowed && !refused {
				t.Errorf("%s with %s: got %s, want unauthenticated (401)", e.name, c.name, a)
			}
			for _, tok := range []string{runnerTok, observerTok, userTok} {
				if !allowed && (strings.Contains(a.msg, tok) || bytes.Contains(a.body, []byte(tok))) {
					t.Errorf("%s with %s: the answer reveals a token: %s", e.name, c.name, a)
				}
			}
		}
	}

	// The dashboard: without the user's token (the sign-in cookie, or a
	// bearer header as the API takes it), a redirect to the sign-in page
	// and no build data; with it, the page.
	cp.report(t, "main", nil, commitA) // observer token: set above by serveCP
	for _, c := range creds {
		a := get("/")(c.header)
		if c.role == "user" {
			if a.status != http.StatusOK {
				t.Errorf("dashboard with %s: %s", c.name, a)
			}
			continue
		}
		if a.status == http.StatusOK || bytes.Contains(a.body, []byte(commitA[:12])) {
			t.Errorf("dashboard with %s: %s, want the sign-in redirect", c.name, a)
		}
	}

	// The typed clients (bearer interceptor) work with the right tokens, and
	// a stream and a gRPC call without one are refused.
	if _, err := cp.builds.ListBuilds(t.Context(), &pontusv1.ListBuildsRequest{}); err != nil {
		t.Errorf("ListBuilds with the user token: %v", err)
	}
	anon := pontusv1connect.NewBuildServiceClient(cp.h2, cp.url)
	stream, err := anon.WatchBuilds(t.Context(), &pontusv1.WatchBuildsRequest{})
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("WatchBuilds without a token: %v", err)
	}
	grpcRunner := pontusv1connect.NewRunnerServiceClient(cp.h2, cp.url, append(dial.Options(dial.Config{URL: cp.url, Token: userTok}), connect.WithGRPC())...)
	if _, err := grpcRunner.Register(t.Context(), &pontusv1.RegisterRequest{Name: "x"}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("gRPC Register with the user token: %v", err)
	}
}

// Register's version is shown wherever runners are listed: it must be one
// line of plain text, without control or shell metacharacters.
func TestRegisterVersionIsValidated(t *testing.T) {
	t.Parallel()
	cp := serveCP(t, testConfig(t))
	for _, v := range []string{"v1\nINFO forged log line", "v1\x1b[2J", "$(touch pwned)", "v1;touch pwned"} {
		_, err := cp.runners.Register(t.Context(), &pontusv1.RegisterRequest{Name: "r", Version: v})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "version") {
			t.Errorf("Register with version %q: %v, want invalid_argument naming version", v, err)
		}
	}
	if _, err := cp.runners.Register(t.Context(), &pontusv1.RegisterRequest{Name: "r", Version: "v0.1.0 (go1.26, linux/amd64)"}); err != nil {
		t.Errorf("ordinary version refused: %v", err)
	}
}
