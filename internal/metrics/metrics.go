// Package metrics defines Gatehouse's Prometheus metrics on a registry of
// its own, so that several servers can live in one process (as in tests).
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collectors. It is safe for concurrent use.
type Metrics struct {
	// Registry contains Gatehouse's metrics and, when the engine registers
	// into it, SpiceDB's.
	Registry *prometheus.Registry

	// Requests counts HTTP requests by route pattern, method and status.
	// Pass the method through MethodLabel, so that the label set stays
	// small.
	Requests *prometheus.CounterVec

	// Latency observes HTTP request durations by route pattern, in seconds.
	Latency *prometheus.HistogramVec

	// Checks counts check outcomes: allowed, denied or error.
	Checks *prometheus.CounterVec

	// AuthFailures counts rejected bearer tokens; the reason is logged, not
	// labelled, so the label set stays small.
	AuthFailures prometheus.Counter
}

// New returns metrics registered on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_http_requests_total",
			Help: "HTTP requests by route pattern, method (\"other\" for a nonstandard one) and status code.",
		}, []string{"route", "method", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_http_request_duration_seconds",
			Help:    "HTTP request duration by route pattern, in seconds.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		Checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_check_decisions_total",
			Help: "Permission check outcomes: allowed, denied, or error (also a deny).",
		}, []string{"outcome"}),
		AuthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_authn_failures_total",
			Help: "Requests rejected because their bearer token was missing or invalid.",
		}),
	}
	m.Registry.MustRegister(m.Requests, m.Latency, m.Checks, m.AuthFailures)
	return m
}

// Handler serves the registry in the Prometheus text format, together with
// the process-wide default registry, which holds the Go runtime and process
// collectors and SpiceDB's connection pool metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{m.Registry, prometheus.DefaultGatherer}, promhttp.HandlerOpts{})
}

// MethodLabel returns the value of the method label for an HTTP request
// method: the method itself when it is one of the eight of RFC 9110,
// section 9.3 or PATCH (RFC 5789), and "other" for any other. net/http
// accepts any token as a method, so labelling methods as they come would
// let each client add series without bound. Methods are case-sensitive
// (RFC 9110, section 9.1), so "get" is "other".
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}
