package controlplane

import (
	"context"
	"strings"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// metrics are the control plane's Prometheus series, all prefixed pontus_.
type metrics struct {
	reg           *prometheus.Registry
	buildsTotal   *prometheus.CounterVec
	jobDuration   prometheus.Histogram
	queueWait     prometheus.Histogram
	leaseExpiries prometheus.Counter
	rpcs          *prometheus.CounterVec
	storeFailing  prometheus.Gauge
	logErrors     prometheus.Counter
	pruned        *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		buildsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pontus_builds_finished_total", Help: "Builds that reached a final status, by status.",
		}, []string{"status"}),
		jobDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pontus_job_duration_seconds", Help: "Wall time of finished jobs, lease to completion.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16),
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pontus_queue_wait_seconds", Help: "Time from a build's creation to its first lease.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
		}),
		leaseExpiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pontus_lease_expiries_total", Help: "Leases that ran out because a runner stopped renewing them.",
		}),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pontus_rpc_requests_total", Help: "RPCs served, by procedure and result code.",
		}, []string{"procedure", "code"}),
	}
	m.storeFailing = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pontus_store_writes_failing", Help: "1 while the store cannot commit writes (health is NOT_SERVING), else 0.",
	})
	m.logErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pontus_log_write_errors_total", Help: "Log appends that could not be written (runners retry them).",
	})
	m.pruned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pontus_pruned_total", Help: "Builds and logs deleted by retention (keep_builds, keep_logs).",
	}, []string{"what"})
	m.reg.MustRegister(m.storeFailing, m.logErrors, m.pruned)
	m.reg.MustRegister(m.buildsTotal, m.jobDuration, m.queueWait, m.leaseExpiries, m.rpcs,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// finished counts a build reaching its final status.
func (m *metrics) finished(b *pontusv1.Build) {
	m.buildsTotal.WithLabelValues(statusName(b.Status)).Inc()
	if b.StartedAt != nil && b.FinishedAt != nil {
		m.jobDuration.Observe(b.FinishedAt.AsTime().Sub(b.StartedAt.AsTime()).Seconds())
	}
}

// registerLive adds the gauges read from the dispatcher's live state.
func (m *metrics) registerLive(d *dispatcher) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pontus_queue_depth", Help: "Jobs (builds, or shards of sharded builds) waiting for a runner.",
	}, func() float64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		return float64(d.queued)
	}))
	m.reg.MustRegister(&liveCollector{d: d,
		builds:  prometheus.NewDesc("pontus_builds", "Builds not yet finished, by status.", []string{"status"}, nil),
		runners: prometheus.NewDesc("pontus_runners", "Known runners, by state.", []string{"state"}, nil),
	})
}

// registerResults adds the result writer's health: whether writing result
// files is failing now (a full or read-only results_dir), and how often it
// failed.
func (m *metrics) registerResults(w *resultWriter) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pontus_result_writes_failing", Help: "1 while result files cannot be written and are being retried, else 0.",
	}, func() float64 { return float64(w.failing.Load()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pontus_result_write_errors_total", Help: "Failed attempts to write result files (each is retried).",
	}, func() float64 { return float64(w.failures.Load()) }))
}

type liveCollector struct {
	d               *dispatcher
	builds, runners *prometheus.Desc
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.builds; ch <- c.runners }

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	builds := map[string]int{"queued": 0, "leased": 0, "running": 0}
	runners := map[string]int{"idle": 0, "busy": 0, "offline": 0}
	d.mu.Lock()
	now := d.now()
	builds["queued"] = d.queued
	for _, lb := range d.active {
		builds[statusName(lb.b.Status)]++
	}
	for _, r := range d.runners {
		runners[strings.ToLower(strings.TrimPrefix(d.runnerStateLocked(r, now).String(), "RUNNER_STATE_"))]++
	}
	d.mu.Unlock()
	for k, v := range builds {
		ch <- prometheus.MustNewConstMetric(c.builds, prometheus.GaugeValue, float64(v), k)
	}
	for k, v := range runners {
		ch <- prometheus.MustNewConstMetric(c.runners, prometheus.GaugeValue, float64(v), k)
	}
}

// rpcCounter is a Connect interceptor counting RPCs by procedure and code.
type rpcCounter struct{ m *metrics }

func (i rpcCounter) count(procedure string, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	i.m.rpcs.WithLabelValues(procedure, code).Inc()
}

func (i rpcCounter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		i.count(req.Spec().Procedure, err)
		return res, err
	}
}

func (i rpcCounter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i rpcCounter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		i.count(conn.Spec().Procedure, err)
		return err
	}
}
