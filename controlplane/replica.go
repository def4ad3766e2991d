package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pontus-ci/pontus/controlplane/leader"
	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Replica is a control plane sharing a PostgreSQL store with other
// replicas. One of them leads (controlplane/leader): it runs the
// dispatcher and serves every RPC; the others forward every call and the
// dashboard to it, and answer unavailable while nobody leads, so clients
// retry. Every replica writes the result files of every finished build
// into its own results_dir, driven from the store (replica_results.go).
type Replica struct {
	cfg      Config
	log      *slog.Logger
	name     string
	st       *store.Postgres
	elector  atomic.Pointer[leader.Elector] // set by Serve
	logs     *logStore
	health   *grpchealth.StaticChecker
	stopping atomic.Bool
	storeOK  atomic.Bool
	sync     *resultSync

	// term is the current leadership term, nil on a standby.
	term atomic.Pointer[term]

	proxy     *httputil.ReverseProxy
	advertise string
	reg       *prometheus.Registry
	handler   http.Handler
}

// replicaHeader marks a call a standby forwarded, so a replica that is not
// the leader never forwards it again.
const replicaHeader = "Pontus-Forwarded-By"

// NewReplica opens the PostgreSQL store in cfg.Store (migrating it) and
// returns a standby; Serve campaigns for leadership. cfg.DataDir keeps this
// replica's generated name when cfg.Name is empty.
func NewReplica(ctx context.Context, cfg Config, logger *slog.Logger) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Store == "" {
		return nil, errors.New("controlplane.store: a replica needs a postgres:// store")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	name, err := replicaName(cfg)
	if err != nil {
		return nil, err
	}
	logger = logger.With("replica", name)
	r := &Replica{cfg: cfg, log: logger, name: name, health: grpchealth.NewStaticChecker(servedServices()...)}
	r.storeOK.Store(true)
	// Every write batch carries the leadership check in its own pipeline
	// (one round trip per group commit).
	fence := func() (string, []any) { return leader.FenceStatement(r.elector.Load()) }
	st, err := store.OpenPostgres(ctx, cfg.Store, store.PostgresOptions{WriteHealth: r.writeHealth, FenceStatement: fence})
	if err != nil {
		return nil, err
	}
	r.st = st
	if err := st.CreateReplicaTables(ctx, replicaTables); err != nil {
		st.Close()
		return nil, err
	}
	r.logs = pgLogStore(st, int64(cfg.MaxLogMiB)<<20)
	mode, _ := cfg.resultsFileMode()
	r.sync = newResultSync(st, name, &resultWriter{dir: cfg.ResultsDir, logs: r.logs, fsync: cfg.Fsync, mode: mode, log: logger},
		func() bool { return r.term.Load() != nil }, logger)
	r.proxy = r.newProxy()
	r.reg = r.newRegistry()
	r.handler = r.routes()
	r.setHealth()
	return r, nil
}

// replicaName is cfg.Name, or a name generated once and kept in data_dir.
func replicaName(cfg Config) (string, error) {
	if cfg.Name != "" {
		return cfg.Name, nil
	}
	path := filepath.Join(cfg.DataDir, "replica-name")
	if b, err := os.ReadFile(path); err == nil {
		name := strings.TrimSpace(string(b))
		if err := validate.Name("name", name); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return name, nil
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "cp-" + hex.EncodeToString(b[:])
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data_dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keep the replica's name: %w", err)
	}
	return name, nil
}

// Name returns the replica's name.
func (r *Replica) Name() string { return r.name }

// Handler returns the HTTP handler serving everything.
func (r *Replica) Handler() http.Handler { return r.handler }

func (r *Replica) writeHealth(err error) {
	if err != nil {
		r.log.Error("store writes are failing", "err", err)
	} else {
		r.log.Info("store writes succeed again")
	}
	r.storeOK.Store(err == nil)
	if t := r.term.Load(); t != nil {
		t.s.metrics.storeFailing.Set(boolGauge(err != nil))
	}
	r.setHealth()
}

// setHealth reports SERVING while this replica can answer: it leads and
// its store writes succeed, or it is a standby that knows a leader.
func (r *Replica) setHealth() {
	status := grpchealth.StatusNotServing
	switch {
	case r.stopping.Load():
	case r.term.Load() != nil:
		if r.storeOK.Load() {
			status = grpchealth.StatusServing
		}
	case r.forwardTarget() != nil:
		status = grpchealth.StatusServing
	}
	for _, svc := range append([]string{""}, servedServices()...) {
		r.health.SetStatus(svc, status)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Serve serves on ln until ctx is done: it campaigns for leadership, leads
// or forwards, and writes result files; then it shuts down in order like
// Server.Serve and closes the store.
func (r *Replica) Serve(ctx context.Context, ln net.Listener) error {
	if err := r.cfg.CheckExposure(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	r.advertise = advertiseURL(r.cfg, ln.Addr())
	elector := leader.New(leader.Config{URL: r.cfg.Store, Name: r.name, Advertise: r.advertise}, r.log.With("component", "leader"))
	r.elector.Store(elector)
	srv := &http.Server{
		Handler:           r.handler,
		Protocols:         serverProtocols(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
		HTTP2:             &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
	if r.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(r.cfg.TLSCert, r.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { elector.Run(bg, r.lead) })
	wg.Go(func() { r.sync.run(bg) })
	wg.Go(func() { r.watchLeader(bg) })

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	r.log.Info("control plane replica serving", "addr", ln.Addr().String(), "advertise", r.advertise)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	r.stopping.Store(true)
	r.setHealth()
	stopBG() // ends the term: long-polls and streams end with unavailable
	wg.Wait()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	if err := r.st.Close(); err != nil && serveErr == nil {
		serveErr = err
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

func serverProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP2(true)
	return p
}

// advertiseURL is the URL other replicas reach this one at: the listen
// address, with the host name for an unspecified host.
func advertiseURL(cfg Config, addr net.Addr) string {
	if cfg.Advertise != "" {
		return strings.TrimRight(cfg.Advertise, "/")
	}
	host, _, _ := net.SplitHostPort(cfg.Listen)
	_, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// lead runs one leadership term: it waits until writes of any earlier
// term of this replica are settled, loads the state from the store, and
// serves as the leader until ctx ends.
func (r *Replica) lead(ctx context.Context, epoch int64) {
	start := time.Now()
	if err := r.st.Enqueue().Wait(ctx); err != nil {
		r.log.Error("elected, but the store refuses writes; stepping down", "epoch", epoch, "err", err)
		return
	}
	m := newMetrics()
	m.storeFailing.Set(boolGauge(!r.storeOK.Load()))
	var stopping atomic.Bool
	s, err := assemble(ctx, r.cfg, r.st, r.logs, func(*pontusv1.Build) { r.sync.poke() }, m, r.health, &stopping, r.log)
	if err != nil {
		r.log.Error("elected, but cannot load the state; stepping down", "epoch", epoch, "err", err)
		return
	}
	stopLoops := s.startLoops()
	t := &term{s: s}
	r.term.Store(t)
	r.setHealth()
	r.log.Info("leading", "epoch", epoch, "took", time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	r.term.Store(nil)
	s.d.close() // long-polls and streams end with unavailable
	// Wait for the term's calls in flight, so none writes after this
	// replica could be elected again.
	t.mu.Lock()
	t.ended = true
	t.mu.Unlock()
	stopLoops()
	s.d.results.stop()
	r.setHealth()
}

// term is one leadership term's Server and the calls it serves.
type term struct {
	s     *Server
	mu    sync.RWMutex // read-held by each call in flight
	ended bool
}

// serve serves req if the term has not ended, and reports whether it did.
// A term that is ending (its lock wanted) takes no new call: the call is
// forwarded instead of waiting behind calls that may wait for the store.
func (t *term) serve(w http.ResponseWriter, req *http.Request) bool {
	if !t.mu.TryRLock() {
		return false
	}
	defer t.mu.RUnlock()
	if t.ended {
		return false
	}
	t.s.handler.ServeHTTP(w, req)
	return true
}

// watchLeader keeps health current as the leader comes and goes.
func (r *Replica) watchLeader(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.setHealth()
		}
	}
}

// forwardTarget returns the leader's URL to forward to, or nil when there
// is none to forward to (no leader known, or the leader seen is this
// replica, which is not leading any more).
func (r *Replica) forwardTarget() *url.URL {
	e := r.elector.Load()
	if e == nil {
		return nil
	}
	l := e.Leader()
	if l.URL == "" || l.Name == r.name || l.URL == r.advertise || time.Since(l.Seen) > 5*time.Second {
		return nil
	}
	u, err := url.Parse(l.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil
	}
	return u
}

func (r *Replica) routes() http.Handler {
	mux := http.NewServeMux()
	hpath, hh := grpchealth.NewHandler(r.health)
	mux.Handle(hpath, hh)
	mux.Handle("/metrics", requireToken(r.cfg.UserToken, true, r.metricsHandler(), nil))
	mux.HandleFunc("/replica", r.serveStatus)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if t := r.term.Load(); t != nil && t.serve(w, req) {
			return
		}
		r.forward(w, req)
	})
	return http.MaxBytesHandler(hsts(mux), maxBodyBytes)
}

// ReplicaStatus is what GET /replica answers (JSON). It needs no token,
// like health, so it names the leader but not its address.
type ReplicaStatus struct {
	Name   string `json:"name"`
	Role   string `json:"role"` // "leader" or "standby"
	Epoch  int64  `json:"epoch"`
	Leader string `json:"leader,omitempty"`
}

func (r *Replica) status() ReplicaStatus {
	st := ReplicaStatus{Name: r.name, Role: "standby"}
	e := r.elector.Load()
	if e == nil {
		return st
	}
	l := e.Leader()
	st.Leader, st.Epoch = l.Name, l.Epoch
	if epoch := e.Epoch(); epoch != 0 && r.term.Load() != nil {
		st.Role, st.Epoch = "leader", epoch
	}
	return st
}

func (r *Replica) serveStatus(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(r.status())
}

// newRegistry returns the replica's own series: its role and epoch, and
// how its result files keep up.
func (r *Replica) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pontus_replica_leader", Help: "1 while this replica leads (runs the dispatcher), 0 on a standby.",
		}, func() float64 { return boolGauge(r.status().Role == "leader") }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pontus_replica_epoch", Help: "The leadership epoch this replica last saw (its own while it leads).",
		}, func() float64 { return float64(r.status().Epoch) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pontus_replica_results_written_total", Help: "Builds whose result files this replica wrote from the store.",
		}, func() float64 { return float64(r.sync.written.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pontus_replica_result_writes_failing", Help: "1 while this replica cannot write result files from the store (they are retried), else 0.",
		}, func() float64 { return float64(r.sync.w.failing.Load()) }),
	)
	return reg
}

// metricsHandler serves the replica's series, and the leader's while it
// leads; a standby also reports the Go runtime and process.
func (r *Replica) metricsHandler() http.Handler {
	standby := prometheus.NewRegistry()
	standby.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		g := prometheus.Gatherers{r.reg, standby}
		if t := r.term.Load(); t != nil {
			g = prometheus.Gatherers{r.reg, t.s.metrics.reg}
		}
		promhttp.HandlerFor(g, promhttp.HandlerOpts{}).ServeHTTP(w, req)
	})
}

// forward sends a call to the leader, streams included (flushed as they
// come), with its headers (tokens, cookies) as they are.
func (r *Replica) forward(w http.ResponseWriter, req *http.Request) {
	if req.Header.Get(replicaHeader) != "" {
		unavailable(w, "the replica this call was forwarded to does not lead any more; retry")
		return
	}
	if r.forwardTarget() == nil {
		unavailable(w, "no control plane leads at the moment (an election is under way); retry")
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	r.proxy.ServeHTTP(w, req)
}

func unavailable(w http.ResponseWriter, msg string) {
	_ = connect.NewErrorWriter().Write(w, &http.Request{Header: http.Header{"Content-Type": {"application/json"}}},
		connect.NewError(connect.CodeUnavailable, errors.New(msg)))
}

func (r *Replica) newProxy() *httputil.ReverseProxy {
	h2c := &http.Transport{
		Protocols:           new(http.Protocols),
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 10 * time.Second},
	}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.cfg.TLSCert != "" {
		// Replicas usually share a certificate (or its CA): trust it.
		if pem, err := os.ReadFile(r.cfg.TLSCert); err == nil {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			pool.AppendCertsFromPEM(pem)
			tlsCfg.RootCAs = pool
		}
	}
	h2 := &http.Transport{
		Protocols:           new(http.Protocols),
		DialContext:         h2c.DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 64,
		HTTP2:               h2c.HTTP2,
	}
	h2.Protocols.SetHTTP2(true)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := r.forwardTarget()
			if target == nil {
				target = &url.URL{Scheme: "http", Host: "0.0.0.0:0"} // fails: unavailable
			}
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set(replicaHeader, r.name)
		},
		Transport: schemeTransport{"http": h2c, "https": h2},
		// Streams (WatchBuilds, TailLog) pass through as they come.
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			r.log.Debug("forward to the leader failed", "path", req.URL.Path, "err", err)
			unavailable(w, "the leading control plane cannot be reached; retry")
		},
	}
}

// schemeTransport picks a transport by URL scheme.
type schemeTransport map[string]http.RoundTripper

func (t schemeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, ok := t[req.URL.Scheme]
	if !ok {
		return nil, fmt.Errorf("no transport for scheme %q", req.URL.Scheme)
	}
	return rt.RoundTrip(req)
}
