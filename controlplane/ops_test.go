package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// Without tokens the control plane serves loopback only, unless the
// operator says Insecure; the refusal says why and what to do.
func TestCheckExposure(t *testing.T) {
	t.Parallel()
	public := &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 8888}
	all4 := &net.TCPAddr{IP: net.IPv4zero, Port: 8888}
	all6 := &net.TCPAddr{IP: net.IPv6unspecified, Port: 8888}
	loop4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8888}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 8888}
	mapped := &net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 8888}
	unix := &net.UnixAddr{Name: "/run/pontus.sock", Net: "unix"}
	tokens := func(r, o, u string) Config {
		c := DefaultConfig()
		c.RunnerToken, c.ObserverToken, c.UserToken = r, o, u
		return c
	}
	insecure := DefaultConfig()
	insecure.Insecure = true
	for _, c := range []struct {
		name    string
		cfg     Config
		addr    net.Addr
		refused bool
	}{
		{"no tokens, public address", DefaultConfig(), public, true},
		{"no tokens, 0.0.0.0", DefaultConfig(), all4, true},
		{"no tokens, [::]", DefaultConfig(), all6, true},
		{"only the runner token", tokens("r", "", ""), public, true},
		{"no user token", tokens("r", "o", ""), public, true},
		{"all tokens", tokens("r", "o", "u"), public, false},
		{"insecure", insecure, all4, false},
		{"no tokens, 127.0.0.1", DefaultConfig(), loop4, false},
		{"no tokens, ::1", DefaultConfig(), loop6, false},
		{"no tokens, IPv4-mapped loopback", DefaultConfig(), mapped, false},
		{"no tokens, unix socket", DefaultConfig(), unix, false},
	} {
		err := c.cfg.CheckExposure(c.addr)
		if !c.refused {
			if err != nil {
				t.Errorf("%s: %v, want allowed", c.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: allowed, want refused", c.name)
			continue
		}
		for _, want := range []string{"refusing", c.addr.String(), "token", "127.0.0.1", "--insecure"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: message %q does not mention %q", c.name, err, want)
			}
		}
	}

	// Serve itself refuses, at once, and releases the listener.
	srv, err := New(context.Background(), testConfig(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skipf("cannot listen on 0.0.0.0: %v", err)
	}
	if err := srv.Serve(t.Context(), ln); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("Serve on %s without tokens: %v, want a refusal", ln.Addr(), err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("listener still open after the refusal")
	}
}

// The gRPC health check answers curl (Connect JSON over HTTP/1.1) for the
// process and for each service; an unknown service is not_found.
func TestHealthOverCurl(t *testing.T) {
	t.Parallel()
	cp := serveCP(t, testConfig(t))
	checkHealth(t, cp, "", "SERVING")
	for _, svc := range []string{pontusv1connect.RunnerServiceName, pontusv1connect.ObserverServiceName, pontusv1connect.BuildServiceName} {
		checkHealth(t, cp, svc, "SERVING")
	}
	a := cp.rawUnary(t, "/grpc.health.v1.Health/Check", "application/json", []byte(`{"service":"pontus.v1.Nope"}`), nil)
	if a.code != "not_found" {
		t.Errorf("health of an unknown service: %s", a)
	}
	// And over gRPC, as Kubernetes' grpc probe and grpc_health_probe call it.
	hc := grpchealth.NewClient(cp.h2, cp.url, connect.WithGRPC())
	res, err := hc.Check(t.Context(), &grpchealth.CheckRequest{Service: pontusv1connect.RunnerServiceName})
	if err != nil || res.Status != grpchealth.StatusServing {
		t.Errorf("gRPC health check: %v %v", res, err)
	}
}

// rawMsg carries an already-encoded protobuf message through a Connect
// client, so the test can speak a service whose Go types it lacks.
type rawMsg struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(m any) ([]byte, error) {
	r, ok := m.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", m)
	}
	return r.b, nil
}
func (rawCodec) Unmarshal(data []byte, m any) error {
	r, ok := m.(*rawMsg)
	if !ok {
		return fmt.Errorf("rawCodec: %T", m)
	}
	r.b = append([]byte(nil), data...)
	return nil
}

// listServicesAlpha lists services through grpc.reflection.v1alpha by
// hand: ServerReflectionRequest{list_services: "*"} (field 7) →
// ServerReflectionResponse{list_services_response (6): {service (1):
// {name (1)}}}.
func listServicesAlpha(t testing.TB, cp *liveCP) []string {
	t.Helper()
	client := connect.NewClient[rawMsg, rawMsg](cp.h2, cp.url+"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
		connect.WithCodec(rawCodec{}), connect.WithGRPC())
	stream := client.CallBidiStream(t.Context())
	req := protowire.AppendTag(nil, 7, protowire.BytesType)
	req = protowire.AppendString(req, "*")
	if err := stream.Send(&rawMsg{req}); err != nil {
		t.Fatalf("v1alpha send: %v", err)
	}
	res, err := stream.Receive()
	if err != nil {
		t.Fatalf("v1alpha receive: %v", err)
	}
	_ = stream.CloseRequest()
	_ = stream.CloseResponse()
	var names []string
	fields := func(b []byte, each func(num protowire.Number, v []byte)) {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				t.Fatalf("v1alpha response: bad tag")
			}
			b = b[n:]
			if typ != protowire.BytesType {
				n = protowire.ConsumeFieldValue(num, typ, b)
				b = b[n:]
				continue
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				t.Fatalf("v1alpha response: bad field")
			}
			b = b[n:]
			each(num, v)
		}
	}
	fields(res.b, func(num protowire.Number, v []byte) {
		if num != 6 {
			return
		}
		fields(v, func(num protowire.Number, svc []byte) {
			if num != 1 {
				return
			}
			fields(svc, func(num protowire.Number, name []byte) {
				if num == 1 {
					names = append(names, string(name))
				}
			})
		})
	})
	return names
}

// Reflection (v1 and v1alpha) lists every service, so grpcurl and buf curl
// work without the .proto files.
func TestReflectionListsServices(t *testing.T) {
	t.Parallel()
	cp := serveCP(t, testConfig(t))
	want := []string{
		pontusv1connect.RunnerServiceName, pontusv1connect.ObserverServiceName, pontusv1connect.BuildServiceName,
		grpchealth.HealthV1ServiceName,
	}
	stream := grpcreflect.NewClient(cp.h2, cp.url).NewStream(t.Context())
	names, err := stream.ListServices()
	if err != nil {
		t.Fatalf("v1 ListServices: %v", err)
	}
	for _, w := range want {
		if !slices.ContainsFunc(names, func(n protoreflect.FullName) bool { return string(n) == w }) {
			t.Errorf("v1 ListServices = %v, lacks %s", names, w)
		}
	}
	files, err := stream.FileContainingSymbol(pontusv1connect.BuildServiceName)
	if err != nil || len(files) == 0 || !slices.ContainsFunc(files, func(f *descriptorpb.FileDescriptorProto) bool { return f.GetName() == "pontus/v1/build.proto" }) {
		t.Errorf("v1 FileContainingSymbol(BuildService): %d files, %v", len(files), err)
	}
	if _, err := stream.Close(); err != nil {
		t.Errorf("close v1 stream: %v", err)
	}

	alpha := listServicesAlpha(t, cp)
	for _, w := range want {
		if !slices.Contains(alpha, w) {
			t.Errorf("v1alpha ListServices = %v, lacks %s", alpha, w)
		}
	}
}

// metricsText fetches /metrics and returns its samples by series, e.g.
// `pontus_builds{status="queued"}` → 1.
func metricsText(t testing.TB, cp *liveCP, hdr http.Header) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, cp.url+"/metrics", nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := cp.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// series finds the value of metric name whose labels include all of
// labels (given as `k="v"` pairs), and whether there is one.
func series(m map[string]float64, name string, labels ...string) (float64, bool) {
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(","+strings.TrimSuffix(rest, "}")+",", ","+l+",") {
				ok = false
			}
		}
		if ok {
			return v, true
		}
	}
	return 0, false
}

// After a build runs through (register, report, acquire, append,
// complete) and another loses its lease, /metrics shows the pontus_ series
// with the values that happened.
func TestMetricsAfterABuild(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.RunnerToken, cfg.ObserverToken, cfg.UserToken = runnerTok, observerTok, userTok
	cp := serveCP(t, cfg)
	ctx := t.Context()

	runner := cp.register(t, "r1")
	cp.report(t, "main", nil, commitA)
	job := cp.acquire(t, runner, time.Second)
	out := []byte("ok 1 - works\n")
	if _, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Data: out}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: 1,
		Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED, LogSize: int64(len(out)), Duration: durationpb.New(1500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	// A second build is taken by a runner that then dies: its lease expires
	// and the build is queued again.
	b2 := cp.report(t, "main", nil, commitB)[0]
	dead := cp.register(t, "dead")
	if j := cp.acquire(t, dead, time.Second); j == nil || j.JobId != b2.Id {
		t.Fatalf("dead runner's job: %+v", j)
	}
	waitFor(t, "the lease to expire", 5*time.Second, func() (bool, string) {
		b := cp.build(t, b2.Id)
		return b.Status == statusQueued && b.Attempt == 1, b.Status.String()
	})
	// An error, and a call refused for its token.
	if _, err := cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{BuildId: 999}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("GetBuild 999: %v", err)
	}
	if a := cp.rawUnary(t, pontusv1connect.RunnerServiceRegisterProcedure, "application/json", []byte(`{}`),
		http.Header{"Authorization": {"Bearer " + userTok}}); a.code != "unauthenticated" {
		t.Fatalf("Register with the user token: %s", a)
	}

	m := metricsText(t, cp, http.Header{"Authorization": {"Bearer " + userTok}})
	expect := func(name string, want float64, labels ...string) {
		t.Helper()
		got, ok := series(m, name, labels...)
		if !ok {
			t.Errorf("/metrics lacks %s%v", name, labels)
		} else if got != want {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	atLeast := func(name string, min float64, labels ...string) {
		t.Helper()
		got, ok := series(m, name, labels...)
		if !ok || got < min {
			t.Errorf("%s%v = %v (present %v), want at least %v", name, labels, got, ok, min)
		}
	}
	expect("pontus_queue_depth", 1)
	expect("pontus_builds", 1, `status="queued"`)
	expect("pontus_builds", 0, `status="leased"`)
	expect("pontus_builds", 0, `status="running"`)
	var runners float64
	for _, st := range []string{"idle", "busy", "offline"} {
		v, ok := series(m, "pontus_runners", `state="`+st+`"`)
		if !ok {
			t.Errorf("/metrics lacks pontus_runners{state=%q}", st)
		}
		runners += v
	}
	if runners != 2 {
		t.Errorf("pontus_runners sums to %v, want 2", runners)
	}
	expect("pontus_builds_finished_total", 1, `status="passed"`)
	expect("pontus_job_duration_seconds_count", 1)
	expect("pontus_job_duration_seconds_bucket", 1, `le="+Inf"`)
	if sum, _ := series(m, "pontus_job_duration_seconds_sum"); sum <= 0 || sum > 60 {
		t.Errorf("pontus_job_duration_seconds_sum = %v, want the job's few seconds", sum)
	}
	expect("pontus_lease_expiries_total", 1)
	atLeast("pontus_queue_wait_seconds_count", 2)
	proc := func(p string) string { return `procedure="` + p + `"` }
	expect("pontus_rpc_requests_total", 2, proc(pontusv1connect.RunnerServiceRegisterProcedure), `code="ok"`)
	expect("pontus_rpc_requests_total", 2, proc(pontusv1connect.RunnerServiceAcquireJobProcedure), `code="ok"`)
	expect("pontus_rpc_requests_total", 1, proc(pontusv1connect.RunnerServiceAppendLogProcedure), `code="ok"`)
	expect("pontus_rpc_requests_total", 1, proc(pontusv1connect.RunnerServiceCompleteJobProcedure), `code="ok"`)
	expect("pontus_rpc_requests_total", 2, proc(pontusv1connect.ObserverServiceReportCommitsProcedure), `code="ok"`)
	expect("pontus_rpc_requests_total", 1, proc(pontusv1connect.BuildServiceGetBuildProcedure), `code="not_found"`)
	expect("pontus_rpc_requests_total", 1, proc(pontusv1connect.RunnerServiceRegisterProcedure), `code="unauthenticated"`)
	// The label set stays bounded: a refused call to a made-up procedure is
	// not a new series.
	cp.rawUnary(t, "/pontus.v1.RunnerService/Made-Up-"+strconv.Itoa(int(time.Now().UnixNano())), "application/json", []byte(`{}`), nil)
	for k := range metricsText(t, cp, http.Header{"Authorization": {"Bearer " + userTok}}) {
		if strings.Contains(k, "Made-Up") {
			t.Errorf("a made-up procedure became a series: %s", k)
		}
	}
}

// Shutdown is graceful and prompt: health goes NOT_SERVING; the long-poll
// and the streams (WatchBuilds, TailLog) end at once with unavailable; a
// health watch and a reflection stream do not hold the shutdown; a unary
// call in flight finishes.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.PollTimeout = time.Minute
	cfg.LeaseDuration = time.Minute
	cp := serveCP(t, cfg)
	ctx := t.Context()

	runner := cp.register(t, "busy")
	cp.report(t, "main", nil, commitA)
	job := cp.acquire(t, runner, time.Second)
	if _, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	idle := cp.register(t, "idle")

	type ended struct {
		what string
		err  error
		at   time.Time
	}
	endc := make(chan ended, 4)
	go func() {
		res, err := cp.runners.AcquireJob(ctx, &pontusv1.AcquireJobRequest{RunnerId: idle, Wait: durationpb.New(time.Minute)})
		if err == nil {
			err = fmt.Errorf("returned %v", res)
		}
		endc <- ended{"AcquireJob", err, time.Now()}
	}()
	go func() {
		// An error may come from the call or from Receive.
		watch, err := cp.builds.WatchBuilds(ctx, &pontusv1.WatchBuildsRequest{})
		if err == nil {
			for watch.Receive() {
			}
			err = watch.Err()
		}
		endc <- ended{"WatchBuilds", err, time.Now()}
	}()
	tail, err := cp.builds.TailLog(ctx, &pontusv1.TailLogRequest{BuildId: job.JobId, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if !tail.Receive() || string(tail.Msg().Data) != "hello" {
		t.Fatalf("TailLog first message: %v %v", tail.Msg(), tail.Err())
	}
	go func() {
		for tail.Receive() {
		}
		endc <- ended{"TailLog", tail.Err(), time.Now()}
	}()
	// A health watch (as a load balancer keeps) and a reflection stream (as
	// an open grpcurl session keeps).
	healthEvents := grpchealth.NewClient(cp.h2, cp.url).Watch(ctx, &grpchealth.CheckRequest{})
	if ev := <-healthEvents; ev.Err != nil || ev.Response.Status != grpchealth.StatusServing {
		t.Fatalf("health watch: %+v", ev)
	}
	healthDone := make(chan bool, 1) // whether the watch saw NOT_SERVING before it ended
	go func() {
		saw := false
		for ev := range healthEvents {
			saw = saw || ev.Err == nil && ev.Response.Status == grpchealth.StatusNotServing
		}
		healthDone <- saw
	}()
	refl := grpcreflect.NewClient(cp.h2, cp.url).NewStream(ctx)
	defer refl.Close()
	if _, err := refl.ListServices(); err != nil {
		t.Fatalf("reflection: %v", err)
	}
	waitFor(t, "the long-poll and the watch to be in place", 5*time.Second, func() (bool, string) {
		d := cp.srv.d
		d.mu.Lock()
		defer d.mu.Unlock()
		select {
		case e := <-endc:
			t.Fatalf("%s ended early: %v", e.what, e.err)
		default:
		}
		return len(d.waiters) == 1 && len(d.subs) == 1, fmt.Sprintf("%d waiters, %d subscribers", len(d.waiters), len(d.subs))
	})

	// A unary call in flight: AppendLog over HTTP/1.1 with "Expect:
	// 100-continue", so we know the handler is reading its body before the
	// shutdown starts, and send the body after.
	bodyR, bodyW := io.Pipe()
	reading := make(chan struct{})
	tr := &http.Transport{ExpectContinueTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got100Continue: func() { close(reading) },
	}), http.MethodPost, cp.url+pontusv1connect.RunnerServiceAppendLogProcedure, bodyR)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Expect", "100-continue")
	inflight := make(chan answer, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			inflight <- answer{code: err.Error()}
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		inflight <- answer{status: resp.StatusCode, body: data}
	}()
	select {
	case <-reading:
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight call's handler never started reading")
	}

	start := time.Now()
	cp.cancel()

	// Health goes NOT_SERVING, for the process and every service. (New
	// connections are refused by now: the checker is where it shows.)
	waitFor(t, "health NOT_SERVING", 5*time.Second, func() (bool, string) {
		var states []string
		for _, svc := range []string{"", pontusv1connect.RunnerServiceName, pontusv1connect.ObserverServiceName, pontusv1connect.BuildServiceName} {
			res, err := cp.srv.health.Check(ctx, &grpchealth.CheckRequest{Service: svc})
			if err != nil {
				return false, err.Error()
			}
			states = append(states, fmt.Sprintf("%q=%s", svc, res.Status))
			if res.Status != grpchealth.StatusNotServing {
				return false, strings.Join(states, " ")
			}
		}
		return true, ""
	})

	for range 3 {
		select {
		case e := <-endc:
			if connect.CodeOf(e.err) != connect.CodeUnavailable {
				t.Errorf("%s ended with %v, want unavailable", e.what, e.err)
			}
			if d := e.at.Sub(start); d > time.Second {
				t.Errorf("%s ended %s after the shutdown started, want at once", e.what, d)
			}
			t.Logf("%s ended %s after the shutdown started: %v", e.what, e.at.Sub(start).Round(time.Millisecond), e.err)
		case <-time.After(5 * time.Second):
			t.Fatal("a long-poll or stream did not end within 5s of the shutdown")
		}
	}

	// The in-flight call finishes.
	if _, err := io.Copy(bodyW, strings.NewReader(fmt.Sprintf(`{"jobId":%d,"attempt":1,"offset":5,"data":"IHdvcmxk"}`, job.JobId))); err != nil {
		t.Fatalf("send the in-flight body: %v", err)
	}
	bodyW.Close()
	select {
	case a := <-inflight:
		if a.status != http.StatusOK || !bytes.Contains(a.body, []byte(`"size":"11"`)) {
			t.Errorf("in-flight AppendLog: %s", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight call did not finish")
	}

	// The health watch ends too (having seen NOT_SERVING, or not: either
	// tells a load balancer to stop sending).
	select {
	case saw := <-healthDone:
		t.Logf("health watch ended; saw NOT_SERVING: %v", saw)
	case <-time.After(5 * time.Second):
		t.Error("the health watch was still open 5s after the shutdown started")
	}

	// Nothing held the shutdown to its 10 s bound.
	cp.h2.CloseIdleConnections()
	select {
	case err := <-cp.done:
		cp.done <- err
		if err != nil {
			t.Errorf("serve: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("shutdown took %s; a stream held it", d)
		}
		t.Logf("shutdown took %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return within 15s of the shutdown")
	}
}

// A watch answers at once (response headers, no message), so a client
// knows its subscription is live before anything changes: connect-go's
// WatchBuilds() call waits for those headers, so without them it would block
// until the first event (as would TailLog following a build with no output).
func TestStreamsAnswerAtOnce(t *testing.T) {
	t.Parallel()
	cp := serveCP(t, testConfig(t))
	b := cp.report(t, "main", nil, commitA)[0]
	// Each call gets 1 s; one that returns only when its context expires
	// (connect-go then reports the error on Receive) waited for an event.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := cp.builds.WatchBuilds(ctx, &pontusv1.WatchBuildsRequest{}); err != nil || ctx.Err() != nil {
		t.Errorf("WatchBuilds on a quiet control plane returned only at its deadline (%v); want the stream at once", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := cp.builds.TailLog(ctx, &pontusv1.TailLogRequest{BuildId: b.Id, Follow: true}); err != nil || ctx.Err() != nil {
		t.Errorf("TailLog following a queued build returned only at its deadline (%v); want the stream at once", err)
	}
}
