// Package metrics defines the service's Prometheus metrics on a registry of
// its own, so that several servers can live in one process (tests) without
// clashing on the global registry.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector the service updates.
type Metrics struct {
	Registry *prometheus.Registry

	Requests        *prometheus.CounterVec
	RequestDuration *prometheus.HistogramVec
	KeycloakCalls   *prometheus.HistogramVec
	RecoveryRuns    prometheus.Counter
	Recovered       prometheus.Counter
	RecoveryErrors  prometheus.Counter
	ReconcileRuns   prometheus.Counter
	DriftFound      *prometheus.GaugeVec
	// DriftErrors and DriftChecked say, by realm, whether the drift check
	// is running at all: DriftFound keeps the last finished check's count.
	DriftErrors  *prometheus.CounterVec
	DriftChecked *prometheus.GaugeVec
	// BackgroundPanics counts background passes (recovery, drift check,
	// default communities) that panicked; the loop goes on.
	BackgroundPanics prometheus.Counter
	Decisions        *prometheus.CounterVec
	NearMissSystems  prometheus.Counter
	// OversizedHeaders counts 431 answers by the largest header:
	// authorization, cookie or other (never the caller's own header name,
	// which would let callers make new series).
	OversizedHeaders *prometheus.CounterVec
}

// New registers the collectors, including Go runtime and process ones.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "communities_http_requests_total",
			Help: "HTTP requests answered, by route, method and status.",
		}, []string{"route", "method", "status"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "communities_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
		KeycloakCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "communities_keycloak_request_duration_seconds",
			Help:    "Calls to Keycloak, by method and status (0: no answer).",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "status"}),
		RecoveryRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "communities_recovery_runs_total",
			Help: "Recovery passes over abandoned operations.",
		}),
		Recovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "communities_recovered_operations_total",
			Help: "Abandoned creates and deletes that recovery undid or finished.",
		}),
		RecoveryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "communities_recovery_errors_total",
			Help: "Recovery passes that stopped on an error.",
		}),
		ReconcileRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "communities_reconcile_runs_total",
			Help: "Drift checks this replica ran as the leader.",
		}),
		DriftFound: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "communities_drift_found",
			Help: "Differences between the registry and Keycloak found by the last drift check, by realm (a check that did not finish sets it only when it found some).",
		}, []string{"realm"}),
		DriftErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "communities_drift_check_errors_total",
			Help: "Drift checks of a realm that ended with an error (a community not checked, the realm not surveyed, or an abandoned operation not recovered), by realm.",
		}, []string{"realm"}),
		DriftChecked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "communities_drift_check_last_finished_timestamp_seconds",
			Help: "When this replica last finished a drift check of every community of the realm, or started (Unix time), by realm.",
		}, []string{"realm"}),
		BackgroundPanics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "communities_background_panics_total",
			Help: "Background passes (recovery, drift check, default communities) that panicked; each is logged with its stack, and the pass runs again at its next interval.",
		}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "communities_decisions_total",
			Help: "Authorisation decisions answered, by outcome (allow, deny) and the rule that settled them.",
		}, []string{"outcome", "rule"}),
		NearMissSystems: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "communities_decision_near_miss_labels_total",
			Help: "Decisions that met a label system almost equal to the permissions system (another scheme, case or a trailing slash); such labels restrict resources to wildcard holders.",
		}),
		OversizedHeaders: oversizedHeaders(),
	}
	m.Registry.MustRegister(m.ReconcileRuns, m.DriftFound, m.DriftErrors, m.DriftChecked, m.BackgroundPanics, m.Decisions, m.NearMissSystems, m.OversizedHeaders)
	m.Registry.MustRegister(m.Requests, m.RequestDuration, m.KeycloakCalls, m.RecoveryRuns, m.Recovered, m.RecoveryErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// oversizedHeaders is the one description of the 431 counter, which the
// service and the FHIR proxy both keep.
func oversizedHeaders() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "communities_request_headers_too_large_total",
		Help: "Requests refused with 431 because their headers exceeded --max-header-kib, by the largest header (authorization, cookie, other).",
	}, []string{"largest"})
}

// Proxy holds what the FHIR proxy counts: its own registry, apart from
// the service's, since it runs as a process of its own.
type Proxy struct {
	Registry *prometheus.Registry
	// OversizedHeaders is as Metrics.OversizedHeaders.
	OversizedHeaders *prometheus.CounterVec
}

// NewProxy registers the proxy's collectors, with Go runtime and process
// ones.
func NewProxy() *Proxy {
	m := &Proxy{Registry: prometheus.NewRegistry(), OversizedHeaders: oversizedHeaders()}
	m.Registry.MustRegister(m.OversizedHeaders, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in Prometheus' text format.
func (m *Proxy) Handler() http.Handler { return handler(m.Registry) }

// ObserveKeycloak records one call to Keycloak.
func (m *Metrics) ObserveKeycloak(method string, status int, took time.Duration) {
	m.KeycloakCalls.WithLabelValues(method, strconv.Itoa(status)).Observe(took.Seconds())
}

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler { return handler(m.Registry) }

func handler(r *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(r, promhttp.HandlerOpts{Registry: r})
}
