package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ratelab"
	"ratelab/limit"
)

// metrics are the server's Prometheus collectors, registered on the
// injected registry.
type metrics struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	decisions     *prometheus.CounterVec
	degraded      prometheus.GaugeFunc
	limiterErrors prometheus.Counter
	storeErrors   prometheus.Counter
}

// newMetrics registers the collectors. degraded reports whether the
// limiter store's backend is unreachable (nil: it cannot be).
func newMetrics(reg prometheus.Registerer, degraded func() bool) (*metrics, error) {
	m := &metrics{}
	*m = metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelab_http_requests_total",
			Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ratelab_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelab_limiter_decisions_total",
			Help: "Limiter verdicts per policy tier: allowed, rejected, or shadow_rejected (a shadow policy that would have rejected).",
		}, []string{"policy", "outcome"}),
		degraded: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ratelab_limiter_degraded",
			Help: "1 while the limiter store's backend (Redis) is unreachable: decisions are taken per process by its local fallback, or, when it fails closed, refused with 503.",
		}, func() float64 {
			if degraded != nil && degraded() {
				return 1
			}
			return 0
		}),
		limiterErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ratelab_limiter_errors_total",
			Help: "Decisions the limiter store could not take (503 while it fails closed, 500 otherwise).",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ratelab_store_errors_total",
			Help: "Internal errors while serving requests (database and other store failures).",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.decisions, m.degraded, m.limiterErrors, m.storeErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// knownMethods keeps the method label's cardinality bounded.
var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	if !knownMethods[method] {
		method = "OTHER"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(d.Seconds())
}

// countDecision counts one verdict per policy of the decision (a bulk
// write's many per-script tiers count once, as the worst of them).
func (m *metrics) countDecision(d *limit.Decision) {
	for i := range d.Tiers {
		ts := &d.Tiers[i]
		if i > 0 && d.Tiers[i-1].Policy == ts.Policy {
			continue
		}
		outcome := "allowed"
		for j := i; j < len(d.Tiers) && d.Tiers[j].Policy == ts.Policy; j++ {
			if !d.Tiers[j].Allowed {
				outcome = "rejected"
				if ts.Policy.Shadow {
					outcome = "shadow_rejected"
				}
			}
		}
		m.decisions.WithLabelValues(ts.Policy.Name, outcome).Inc()
	}
}

func (s *Server) handleMetrics(c *call) error {
	if s.metricsElsewhere {
		return ratelab.Errorf(ratelab.ENOTFOUND, "No route for %s %s: metrics are served on their own address.", c.r.Method, c.r.URL.Path)
	}
	s.MetricsHandler().ServeHTTP(c.w, c.r)
	return nil
}

// MetricsHandler serves the server's registry in the Prometheus text
// format, for a listener of its own (Config.MetricsElsewhere).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
}

var _ http.Handler = (*Server)(nil)
