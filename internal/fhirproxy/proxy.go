// Package fhirproxy is an enforcing proxy in front of an ordinary FHIR
// server: it applies the communities' decision rules (pkg/decision) to
// every interaction with the caller's verified token, so that any FHIR
// server can honour the NDD.read / NDD.write labels Ontoserver enforces
// natively.
//
// What it does, per interaction:
//   - read and vread: the resource is fetched, judged on its labels, and a
//     denied one answers exactly as a missing one (404), so no one learns
//     it exists;
//   - search (and the pages after it): every entry of every page is judged,
//     _include and _revinclude ones too, and denied ones are left out;
//     totals are kept only for callers who may read every community, for
//     whom nothing is left out;
//   - create, update, patch and delete: judged against the stored
//     instance's labels and the new content's (pkg/decision's rule for what
//     a write puts in); an update is sent with If-Match on the version
//     judged, so a concurrent change cannot slip in between;
//   - everything else (batch and transaction bundles, $operations, GraphQL,
//     POST _search, history beyond one instance, conditional writes,
//     parameters that reach other resources or drop meta) is refused with a
//     problem detail: the proxy does not understand it, so it fails closed;
//   - the upstream server's base URL never reaches a caller: bundle links,
//     fullUrls, Location and anything else naming it are rewritten to the
//     proxy's own base.
package fhirproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/headerlimit"
	"github.com/nhs-terminology/communities/internal/metrics"
	"github.com/nhs-terminology/communities/internal/problem"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// Verifier verifies bearer tokens (internal/auth).
type Verifier interface {
	Verify(ctx context.Context, realm, raw string) (*auth.Principal, error)
}

// Options configures a Proxy.
type Options struct {
	// Upstream is the FHIR server's base URL, e.g. http://hapi:8080/fhir.
	Upstream string
	// BasePath is where the proxy serves FHIR, e.g. /fhir.
	BasePath string
	// PublicBase is the proxy's base URL as callers know it; empty: taken
	// from each request's Host.
	PublicBase string
	// Realm is the Keycloak realm whose tokens are accepted.
	Realm          string
	Verifier       Verifier
	RequiredClaims []auth.RequiredClaim
	Decisions      decision.Config
	// Client reaches the upstream; its timeout bounds each call.
	Client *http.Client
	// MaxBody bounds request and upstream response bodies.
	MaxBody int64
	// MaxHeaderBytes limits a request's headers; over it the answer is a
	// problem+json 431 naming the largest header, logged and counted in
	// Metrics. 0: no limit but the http.Server's.
	MaxHeaderBytes int
	Metrics        *metrics.Proxy
	Logger         *slog.Logger
}

// Proxy is the enforcing proxy's HTTP handler.
type Proxy struct {
	opts     Options
	upstream string
	log      *slog.Logger
}

// New returns a Proxy for o.
func New(o Options) *Proxy {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 32 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewProxy()
	}
	o.BasePath = "/" + strings.Trim(o.BasePath, "/")
	return &Proxy{opts: o, upstream: strings.TrimRight(o.Upstream, "/"), log: o.Logger}
}

var (
	typePattern = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// call is one request being served.
type call struct {
	w         http.ResponseWriter
	r         *http.Request
	requestID string
	public    string // the proxy's base URL for this caller
	principal *auth.Principal
	privs     *decision.Privileges
	// outcome is logged: what was decided and why.
	outcome string
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := &call{w: w, r: r, requestID: requestID(r)}
	w.Header().Set("X-Request-ID", c.requestID)
	sw := &statusWriter{ResponseWriter: w}
	c.w = sw
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("panic", "panic", v, "request_id", c.requestID)
			p.fail(c, http.StatusInternalServerError, "internal error; quote the request id to service desk")
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", sw.status, "duration_ms", time.Since(start).Milliseconds(),
			"request_id", c.requestID}
		if c.principal != nil {
			attrs = append(attrs, "sub", c.principal.Subject, "azp", c.principal.ClientID)
		}
		if c.outcome != "" {
			attrs = append(attrs, "decision", c.outcome)
		}
		p.log.Info("fhir request", attrs...)
	}()
	// First, as the service does: a token too large to accept is the one
	// failure its holder cannot see the cause of (issue 14).
	if e, over := headerlimit.Check(r, p.opts.MaxHeaderBytes); over {
		p.opts.Metrics.OversizedHeaders.WithLabelValues(e.Kind()).Inc()
		p.log.Warn("request headers too large", append(e.LogAttrs(), "request_id", c.requestID)...)
		p.fail(c, http.StatusRequestHeaderFieldsTooLarge, e.Detail())
		return
	}
	p.serve(c)
}

func (p *Proxy) serve(c *call) {
	r := c.r
	if r.URL.Path != p.opts.BasePath && !strings.HasPrefix(r.URL.Path, p.opts.BasePath+"/") {
		p.fail(c, http.StatusNotFound, "no such resource: the FHIR API is under "+p.opts.BasePath)
		return
	}
	c.public = p.publicBase(r)
	// The escaped path, so an encoded "/" cannot hide a segment.
	rest := strings.Trim(strings.TrimPrefix(r.URL.EscapedPath(), p.opts.BasePath), "/")
	var segs []string
	if rest != "" {
		segs = strings.Split(rest, "/")
	}
	if len(segs) == 1 && segs[0] == "metadata" && r.Method == http.MethodGet {
		// The capability statement names no resource; clients read it
		// before they have a token.
		p.metadata(c)
		return
	}
	if !p.authenticate(c) {
		return
	}
	if why := refusedParams(r.URL.Query()); why != "" {
		p.fail(c, http.StatusBadRequest, why)
		return
	}
	if why := p.refusedFormat(r); why != "" {
		p.fail(c, http.StatusNotAcceptable, why)
		return
	}
	p.route(c, segs)
}

func (p *Proxy) route(c *call, segs []string) {
	m := c.r.Method
	for _, s := range segs {
		if strings.HasPrefix(s, "$") || strings.HasPrefix(s, "%24") {
			p.refuse(c, "operations ("+s+") are not passed on: the proxy cannot judge what they read or change")
			return
		}
	}
	if len(segs) == 0 {
		switch {
		case m == http.MethodGet && c.r.URL.Query().Has("_getpages"):
			p.page(c)
		case m == http.MethodPost:
			p.refuse(c, "batch and transaction bundles are not passed on: send each interaction on its own")
		default:
			p.refuse(c, m+" on the base (system-level search) is not passed on: search one resource type")
		}
		return
	}
	typ := segs[0]
	if typ == "_history" || typ == "_search" {
		p.refuse(c, typ+" across all types is not passed on: search or read one resource type")
		return
	}
	if !typePattern.MatchString(typ) {
		p.fail(c, http.StatusNotFound, "no such resource type: "+typ)
		return
	}
	if typ == "Subscription" && m != http.MethodGet {
		// On a server with subscriptions on, the server itself would send
		// whatever a subscription matches, where the proxy never sees it.
		p.refuse(c, "Subscription writes are not passed on: the server would send the resources a subscription matches without the proxy judging them")
		return
	}
	switch len(segs) {
	case 1:
		switch m {
		case http.MethodGet:
			p.search(c, typ)
		case http.MethodPost:
			if c.r.Header.Get("If-None-Exist") != "" {
				p.refuse(c, "conditional create (If-None-Exist) is not passed on: its search would reach resources the caller may not read")
				return
			}
			p.create(c, typ)
		case http.MethodPut, http.MethodPatch, http.MethodDelete:
			p.refuse(c, "conditional "+strings.ToLower(m)+" (by search) is not passed on: name the resource by its id")
		default:
			p.notAllowed(c)
		}
		return
	case 2:
		switch {
		case segs[1] == "_search" && m == http.MethodGet:
			p.search(c, typ)
			return
		case segs[1] == "_search":
			p.refuse(c, "search by POST is not passed on: search with GET")
			return
		case segs[1] == "_history":
			p.refuse(c, "history of a whole type is not passed on: ask for one instance's history")
			return
		}
	}
	id := segs[1]
	if !idPattern.MatchString(id) {
		p.fail(c, http.StatusNotFound, "no such resource: "+typ+"/"+id)
		return
	}
	switch {
	case len(segs) == 2:
		switch m {
		case http.MethodGet:
			p.read(c, typ, id, "")
		case http.MethodPut:
			p.update(c, typ, id)
		case http.MethodPatch:
			p.patch(c, typ, id)
		case http.MethodDelete:
			p.delete(c, typ, id)
		default:
			p.notAllowed(c)
		}
	case len(segs) == 3 && segs[2] == "_history" && m == http.MethodGet:
		p.history(c, typ, id)
	case len(segs) == 4 && segs[2] == "_history" && m == http.MethodGet && idPattern.MatchString(segs[3]):
		p.read(c, typ, id, segs[3])
	default:
		p.fail(c, http.StatusNotFound, "no such resource: "+c.r.URL.Path)
	}
}

// authenticate lets a request through only with a valid bearer token of
// the realm that satisfies its required claims, as the service does.
// Every token failure gets the same answer; the reason goes to the log.
func (p *Proxy) authenticate(c *call) bool {
	raw, ok := auth.BearerToken(c.r.Header.Get("Authorization"))
	var err error
	if ok {
		c.principal, err = p.opts.Verifier.Verify(c.r.Context(), p.opts.Realm, raw)
	} else {
		err = fmt.Errorf("%w: no bearer token", auth.ErrInvalidToken)
	}
	var pub *fault.Error
	switch {
	case fault.KindOf(err) == fault.Unavailable && errors.As(err, &pub):
		// The token could not be checked (Keycloak's keys could not be
		// fetched): refused, but as "try again", as the service does, so
		// that a client keeps a good one.
		p.log.Warn("token not checked", "reason", err.Error(), "request_id", c.requestID)
		c.w.Header().Set("Retry-After", "5")
		p.fail(c, http.StatusServiceUnavailable, pub.Public+"; try again")
		return false
	case err != nil && !errors.Is(err, auth.ErrInvalidToken):
		p.log.Error("token not checked", "error", err.Error(), "request_id", c.requestID)
		p.fail(c, http.StatusInternalServerError, "internal error; quote the request id to service desk")
		return false
	}
	if err != nil {
		p.log.Info("token refused", "reason", err.Error(), "request_id", c.requestID)
		c.w.Header().Set("WWW-Authenticate", `Bearer realm="`+p.opts.Realm+`", error="invalid_token"`)
		p.fail(c, http.StatusUnauthorized, "a valid bearer token issued by realm "+p.opts.Realm+" is required")
		return false
	}
	if why := c.principal.Lacks(p.opts.RequiredClaims, p.opts.Realm); why != "" {
		p.fail(c, http.StatusForbidden, why)
		return false
	}
	c.privs = c.principal.Privileges
	return true
}

// publicBase is the proxy's base URL for links in answers.
func (p *Proxy) publicBase(r *http.Request) string {
	if p.opts.PublicBase != "" {
		return strings.TrimRight(p.opts.PublicBase, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + p.opts.BasePath
}

// refusedParams names a search or read parameter the proxy will not pass
// on, or "". Each one either reaches resources other than those returned
// (so a search would reveal what a denied resource holds: chains, a
// chained _sort, _has, _filter, _list, _query) or returns resources
// without their meta.security or as separate entries (_elements,
// _summary, _contained), which would make a labelled resource look
// unlabelled.
func refusedParams(q map[string][]string) string {
	for name := range q {
		base, _, _ := strings.Cut(name, ":")
		switch {
		case base == "_elements" || base == "_summary":
			return "parameter " + base + " is not passed on: the proxy must see every resource's meta.security"
		case base == "_contained" || base == "_containedType":
			return "parameter " + base + " is not passed on: contained resources are judged with their container"
		case base == "_has" || base == "_filter" || base == "_list" || base == "_query":
			return "parameter " + base + " is not passed on: it searches resources the caller may not read"
		case strings.Contains(name, "."):
			return "chained parameter " + name + " is not passed on: it searches resources the caller may not read"
		case base == "_sort" && slices.ContainsFunc(q[name], func(v string) bool { return strings.Contains(v, ".") }):
			// A chained sort orders what is shown by what it refers to.
			return "a chained _sort is not passed on: it sorts by resources the caller may not read"
		}
	}
	return ""
}

// refusedFormat: answers are judged and rewritten as JSON, so only JSON is
// asked for.
func (p *Proxy) refusedFormat(r *http.Request) string {
	for _, f := range r.URL.Query()["_format"] {
		if !strings.Contains(f, "json") {
			return "only JSON is served through the proxy (_format=" + f + ")"
		}
	}
	if a := r.Header.Get("Accept"); a != "" && !strings.Contains(a, "json") && !strings.Contains(a, "*/*") {
		return "only JSON is served through the proxy (Accept: " + a + ")"
	}
	return ""
}

func (p *Proxy) refuse(c *call, why string) {
	c.outcome = "refused"
	p.fail(c, http.StatusNotImplemented, why)
}

func (p *Proxy) notAllowed(c *call) {
	p.fail(c, http.StatusMethodNotAllowed, c.r.Method+" is not allowed on "+c.r.URL.Path)
}

func (p *Proxy) fail(c *call, status int, detail string) {
	d := problem.New(status, detail)
	d.Instance = c.r.URL.Path
	d.RequestID = c.requestID
	problem.Write(c.w, d)
}

// notFound answers a resource that is missing, deleted, or that the
// caller may not read, all alike.
func (p *Proxy) notFound(c *call, typ, id string) {
	p.fail(c, http.StatusNotFound, typ+"/"+id+" is not known")
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-ID"); requestIDPattern.MatchString(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
