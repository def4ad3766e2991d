// Package controlplane is the Pontus dispatcher: it serves RunnerService,
// ObserverService and BuildService (Connect, gRPC and gRPC-Web over HTTP/1.1
// and HTTP/2) on one listener, keeps the queue, leases and runners in a
// durable store, writes result files named by commit id, and serves the
// dashboard, health, reflection and Prometheus metrics.
package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/controlplane/web"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// Limits on what a client may send.
const (
	maxMessageBytes = 8 << 20  // one decoded message (Connect checks after decompression)
	maxBodyBytes    = 16 << 20 // one HTTP request body
)

// servedServices returns the API's services, as health checks name them.
func servedServices() []string {
	return []string{pontusv1connect.RunnerServiceName, pontusv1connect.ObserverServiceName, pontusv1connect.BuildServiceName}
}

// Server is a control plane.
type Server struct {
	cfg     Config
	log     *slog.Logger
	st      store.Store
	d       *dispatcher
	metrics *metrics
	health  *grpchealth.StaticChecker
	handler http.Handler
	// streams and publicStreams bound open streams (limits.go).
	streams, publicStreams *streamLimiter
	// stopping keeps health NOT_SERVING once shutdown began.
	stopping *atomic.Bool
}

// New opens the store in cfg.DataDir (migrating it to this version's
// schema), restores the live state and writes any result files a crash left
// unwritten. The caller owns cfg.DataDir alone for the Server's lifetime:
// pontus locks it first (internal/dirlock).
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := newMetrics()
	health := grpchealth.NewStaticChecker(servedServices()...)
	var stopping atomic.Bool
	writeHealth := func(err error) {
		// Only the store's own failures take the control plane out of
		// service: without it nothing can be accepted. Result files and
		// logs that cannot be written are retried instead.
		if err != nil {
			m.storeFailing.Set(1)
			logger.Error("store writes are failing; reporting NOT_SERVING", "err", err)
		} else {
			m.storeFailing.Set(0)
			logger.Info("store writes succeed again")
		}
		if stopping.Load() {
			return
		}
		status := grpchealth.StatusServing
		if err != nil {
			status = grpchealth.StatusNotServing
		}
		for _, svc := range append([]string{""}, servedServices()...) {
			health.SetStatus(svc, status)
		}
	}
	st, logs, err := openStore(ctx, cfg, writeHealth)
	if err != nil {
		return nil, err
	}
	s, err := assemble(ctx, cfg, st, logs, nil, m, health, &stopping, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// assemble restores the live state from st and builds a Server on it:
// what New does after opening the store, and what a replica does each
// time it is elected leader (replica.go). With forward set, finished
// builds are handed to it instead of being written to results_dir.
func assemble(ctx context.Context, cfg Config, st store.Store, logs *logStore, forward func(*pontusv1.Build),
	m *metrics, health *grpchealth.StaticChecker, stopping *atomic.Bool, logger *slog.Logger) (*Server, error) {
	mode, _ := cfg.resultsFileMode() // validated by New
	results := &resultWriter{dir: cfg.ResultsDir, logs: logs, fsync: cfg.Fsync, mode: mode, log: logger, forward: forward}
	d := newDispatcher(cfg, st, logs, results, m, logger)
	unreported, err := d.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	if err := d.loadSearches(ctx); err != nil {
		return nil, fmt.Errorf("load culprit searches: %w", err)
	}
	results.reload = func() ([]*pontusv1.Build, error) { return st.Unreported(context.Background()) }
	results.start(d.resultsWritten)
	for _, b := range unreported {
		d.reportResults(b)
	}
	m.registerLive(d)
	m.registerResults(results)
	s := &Server{cfg: cfg, log: logger, st: st, d: d, metrics: m, stopping: stopping}
	s.health = health
	s.handler = s.routes()
	logger.Info("control plane state loaded", "live_builds", len(d.builds), "runners", len(d.runners), "data_dir", cfg.DataDir, "store", storeName(cfg))
	return s, nil
}

// Handler returns the HTTP handler serving everything.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	opts := []connect.HandlerOption{
		connect.WithReadMaxBytes(maxMessageBytes),
		connect.WithSendMaxBytes(maxMessageBytes),
		connect.WithCompressMinBytes(1024),
		connect.WithInterceptors(rpcCounter{s.metrics}),
	}
	mux := http.NewServeMux()
	refused := func(r *http.Request) {
		// Counted like the RPCs the interceptor sees, for procedures that
		// exist only, so made-up paths cannot grow the label set.
		if knownProcedure(r.URL.Path) {
			s.metrics.rpcs.WithLabelValues(r.URL.Path, connect.CodeUnauthenticated.String()).Inc()
		}
	}
	mount := func(token string, cookieOK bool, path string, h http.Handler, longLived ...string) {
		h = requireToken(token, cookieOK, h, refused)
		mux.Handle(path, h)
		for _, proc := range longLived {
			mux.Handle(proc, noWriteDeadline(h))
		}
	}
	path, h := pontusv1connect.NewRunnerServiceHandler(runnerService{s.d}, opts...)
	mount(s.cfg.RunnerToken, false, path, h, pontusv1connect.RunnerServiceAcquireJobProcedure)
	path, h = pontusv1connect.NewObserverServiceHandler(observerService{s.d}, opts...)
	mount(s.cfg.ObserverToken, false, path, h)
	builds := buildService{s.d}
	path, h = pontusv1connect.NewBuildServiceHandler(builds, opts...)
	mount(s.cfg.UserToken, true, path, h)
	s.streams = newStreamLimiter("streams", s.cfg.MaxStreams, s.cfg.MaxStreamsPerClient)
	s.publicStreams = newStreamLimiter("unauthenticated streams", s.cfg.MaxPublicStreams, s.cfg.MaxPublicStreamsPerClient)
	for _, proc := range []string{pontusv1connect.BuildServiceWatchBuildsProcedure, pontusv1connect.BuildServiceTailLogProcedure} {
		mux.Handle(proc, requireToken(s.cfg.UserToken, true, noWriteDeadline(limitStreams(h, s.streams)), refused))
	}

	hpath, hh := grpchealth.NewHandler(s.health)
	mux.Handle(hpath, s.endOnShutdown(hh))
	mux.Handle(hpath+"Watch", s.endOnShutdown(limitStreams(hh, s.publicStreams, s.streams)))
	reflector := grpcreflect.NewStaticReflector(
		pontusv1connect.RunnerServiceName, pontusv1connect.ObserverServiceName, pontusv1connect.BuildServiceName,
		grpchealth.HealthV1ServiceName)
	rpath, rh := grpcreflect.NewHandlerV1(reflector)
	mux.Handle(rpath, s.endOnShutdown(limitStreams(rh, s.publicStreams, s.streams)))
	rpath, rh = grpcreflect.NewHandlerV1Alpha(reflector)
	mux.Handle(rpath, s.endOnShutdown(limitStreams(rh, s.publicStreams, s.streams)))

	metricsHandler := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	mux.Handle("/metrics", requireToken(s.cfg.UserToken, true, metricsHandler, nil))
	mux.Handle("/", web.New(builds, web.Options{UserToken: s.cfg.UserToken, Logger: s.log, SigninPerMinute: s.cfg.SigninPerMinute}))
	return http.MaxBytesHandler(hsts(mux), maxBodyBytes)
}

// noWriteDeadline lifts the server's write timeout for long-polls and
// streams, which legitimately stay open.
func noWriteDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		h.ServeHTTP(w, r)
	})
}

// endOnShutdown serves h's streams (health Watch, reflection sessions)
// without the write deadline, and ends them when the server shuts down, so
// an open grpcurl session or a load balancer's watch does not hold the
// shutdown to its bound.
func (s *Server) endOnShutdown(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() {
			select {
			case <-s.d.shutdown:
				cancel()
				// Unblocks a handler waiting for the client's next message.
				_ = r.Body.Close()
			case <-ctx.Done():
			}
		}()
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// knownProcedure reports whether path is "/<service>/<method>" of a service
// in the protobuf registry.
func knownProcedure(path string) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok {
		return false
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	return ok && sd.Methods().ByName(protoreflect.Name(method)) != nil
}

// CheckExposure refuses to serve a non-loopback address without tokens
// unless the operator said Insecure.
func (c *Config) CheckExposure(addr net.Addr) error {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() || c.Insecure {
		return nil
	}
	if c.RunnerToken == "" || c.ObserverToken == "" || c.UserToken == "" {
		return fmt.Errorf("refusing to listen on %s without runner, observer and user tokens: anyone who can reach it could run code on your runners. Set PONTUS_RUNNER_TOKEN, PONTUS_OBSERVER_TOKEN and PONTUS_USER_TOKEN (or the *_token_file keys), listen on 127.0.0.1, or pass --insecure", addr)
	}
	return nil
}

// Serve serves on ln until ctx is done, then shuts down in order: health
// goes NOT_SERVING, long-polls and streams end with unavailable, in-flight
// calls finish (bounded), the store is flushed and closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.cfg.CheckExposure(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{
		Handler:           s.handler,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		HTTP2:             &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
	srv.RegisterOnShutdown(s.d.close)
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
		srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
	}

	stopLoops := s.startLoops()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("control plane serving", "addr", ln.Addr().String(), "tls", s.cfg.TLSCert != "")

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.stopping.Store(true)
	for _, svc := range append([]string{""}, servedServices()...) {
		s.health.SetStatus(svc, grpchealth.StatusNotServing)
	}
	s.d.close()
	// Stop expiring leases first: runners cannot renew them while the
	// server shuts down, and a restart extends them anyway.
	stopLoops()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	s.d.results.stop()
	if err := s.st.Close(); err != nil && serveErr == nil {
		serveErr = err
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// startLoops starts what runs beside the RPCs: lease expiry and
// retention. The returned function stops them and waits.
func (s *Server) startLoops() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := min(max(s.cfg.LeaseDuration/6, 20*time.Millisecond), time.Second)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.d.expireLeases()
			case <-ctx.Done():
				return
			}
		}
	})
	wg.Go(func() { s.pruneLoop(ctx) })
	wg.Go(func() { s.d.bisectLoop(ctx) })
	return func() { cancel(); wg.Wait() }
}

// Close releases the store of a Server that was never served.
func (s *Server) Close() error {
	s.d.results.stop()
	return s.st.Close()
}
