package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/fhirproxy"
	"github.com/nhs-terminology/communities/internal/headerlimit"
	"github.com/nhs-terminology/communities/internal/metrics"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// Proxy is the assembled enforcing FHIR proxy ('communities proxy').
type Proxy struct {
	cfg     config.Proxy
	log     *slog.Logger
	handler http.Handler
	cancel  context.CancelFunc
}

// NewProxy builds the proxy from its configuration. It needs neither the
// registry nor Keycloak's admin API: only the realm's keys.
func NewProxy(ctx context.Context, cfg config.Proxy, log *slog.Logger) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	required, err := auth.ParseRequiredClaims(cfg.RequiredClaims, []string{cfg.Realm})
	if err != nil {
		return nil, fmt.Errorf("--required-claims: %w", err)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m := metrics.NewProxy()
	h := fhirproxy.New(fhirproxy.Options{
		Upstream: cfg.Upstream, BasePath: cfg.BasePath, PublicBase: cfg.PublicBaseURL, Realm: cfg.Realm,
		Verifier:       newVerifier(bg, log, cfg.KeycloakURL, cfg.Issuer, cfg.Audience, cfg.Algorithms, cfg.KeycloakTimeout, cfg.TokenCacheSize),
		RequiredClaims: required,
		Decisions:      decision.Config{System: cfg.PermissionsSystem, SystemlessLabels: cfg.SystemlessLabels},
		Client:         &http.Client{Timeout: cfg.UpstreamTimeout},
		MaxBody:        int64(cfg.MaxBodyMiB) << 20,
		MaxHeaderBytes: cfg.MaxHeaderKiB << 10,
		Metrics:        m,
		Logger:         log,
	})
	// /metrics and /healthz beside the FHIR API, as the service serves
	// them beside its own; not a ServeMux, whose path cleaning and
	// redirects would come before the proxy's own reading of the path.
	metricsHandler := m.Handler()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/metrics" && r.Method == http.MethodGet:
			metricsHandler.ServeHTTP(w, r)
		case r.URL.Path == "/healthz" && r.Method == http.MethodGet:
			// Liveness, for the image's health check (communities probe):
			// the process serves HTTP.
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"UP"}`))
		default:
			h.ServeHTTP(w, r)
		}
	})
	return &Proxy{cfg: cfg, log: log, handler: handler, cancel: cancel}, nil
}

// Handler is the proxy's HTTP handler.
func (p *Proxy) Handler() http.Handler { return p.handler }

// Run serves on cfg.Listen until ctx ends, then drains in-flight requests.
// ready, if not nil, gets the bound address.
func (p *Proxy) Run(ctx context.Context, ready func(addr string)) error {
	defer p.cancel()
	return serve(ctx, p.log, p.cfg.Listen, &http.Server{
		Handler:           p.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      2*p.cfg.UpstreamTimeout + time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    headerlimit.ServerLimit(p.cfg.MaxHeaderKiB << 10),
	}, stopping{drain: 20 * time.Second}, func(addr string) {
		p.log.Info("FHIR proxy listening", "addr", addr, "realm", p.cfg.Realm, "base_path", p.cfg.BasePath)
		if ready != nil {
			ready(addr)
		}
	})
}
