package api

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
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/headerlimit"
	"github.com/nhs-terminology/communities/internal/keycloak"
)

// A caller's request id is reused only when it is short and plain, so it
// cannot inject anything into logs or headers.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (h *handler) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-ID")
	if !requestIDPattern.MatchString(id) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	c.Header("X-Request-ID", id)
	ctx := context.WithValue(c.Request.Context(), requestIDKey, id)
	ctx = keycloak.WithRequestID(ctx, id)
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

func requestIDOf(c *gin.Context) string {
	id, _ := c.Request.Context().Value(requestIDKey).(string)
	return id
}

// headerLimit refuses requests whose headers exceed opts.MaxHeaderBytes
// with a 431 that says which header is largest, so that a caller whose
// token outgrew the limit learns why instead of meeting Go's bare 431
// (the http.Server's own limit is headerlimit.ServerLimit, well above).
func (h *handler) headerLimit(c *gin.Context) {
	e, over := headerlimit.Check(c.Request, h.opts.MaxHeaderBytes)
	if !over {
		c.Next()
		return
	}
	h.opts.Metrics.OversizedHeaders.WithLabelValues(e.Kind()).Inc()
	h.log.WarnContext(c.Request.Context(), "request headers too large", append(e.LogAttrs(), "request_id", requestIDOf(c))...)
	h.refuse(c, fault.HeadersTooLarge, e.Detail())
}

// quietRoutes answer machines at a high rate (a FHIR server asks for a
// decision on each of its requests; probes and scrapes poll): their
// successes are counted in metrics and logged at debug only, so that the
// log holds what people do and what went wrong.
func quietRoutes() map[string]bool {
	quiet := map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}
	for _, p := range Prefixes {
		for _, r := range []string{"/decision", "/labels"} {
			quiet[p+"/realms/:realm"+AuthzPrefix+r] = true
		}
	}
	return quiet
}

// causeKey holds, in the gin context, the cause of a request's 5xx for
// observe's line: the caller never sees it.
const causeKey = "communities.cause"

// observe logs every request and counts it. It logs the route template,
// never the Authorization header or bodies, so no token or secret reaches
// the logs.
func (h *handler) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	took := time.Since(start)
	method := methodLabel(c.Request.Method)
	h.opts.Metrics.Requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	h.opts.Metrics.RequestDuration.WithLabelValues(route, method).Observe(took.Seconds())
	level := slog.LevelInfo
	// A failure after the answer's status was written keeps that status:
	// its cause says it is an error all the same.
	cause, failed := c.Get(causeKey)
	switch {
	case status >= 500 || failed:
		level = slog.LevelError
	case status < 400 && h.quiet[route]:
		level = slog.LevelDebug
	}
	// A FHIR server's decisions log at debug, which is off in production:
	// the line is not even assembled then.
	if !h.log.Enabled(c.Request.Context(), level) {
		return
	}
	attrs := []any{"method", method, "route", route, "status", status,
		"duration_ms", took.Milliseconds(), "request_id", requestIDOf(c)}
	if p, ok := c.Request.Context().Value(principalKey).(*auth.Principal); ok {
		attrs = append(attrs, "sub", p.Subject, "azp", p.ClientID)
	}
	if realm := c.Param("realm"); realm != "" {
		attrs = append(attrs, "realm", realm)
	}
	if failed {
		attrs = append(attrs, "error", cause)
	}
	h.log.Log(c.Request.Context(), level, "request", attrs...)
}

// methodLabel is the method as metrics and logs name it: Go's server takes
// any token as a method, and each new label value is a series kept for
// the life of the process, so a method no route has is "other".
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

func (h *handler) recoverer(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			h.fail(c, fmt.Errorf("panic: %v", r))
		}
	}()
	c.Next()
}

// realm answers 404 for realms this service does not manage, before any
// token is looked at.
func (h *handler) realm(c *gin.Context) {
	if !h.realms[c.Param("realm")] {
		h.refuse(c, fault.NotFound, "realm "+strconv.Quote(c.Param("realm"))+" is not managed by this service")
		return
	}
	c.Next()
}

// authenticate lets a request through only with a valid bearer token of
// the realm in the path. Every failure gets the same answer; the reason goes
// to the log only, so callers cannot probe which check failed.
func (h *handler) authenticate(c *gin.Context) {
	raw, ok := auth.BearerToken(c.GetHeader("Authorization"))
	if !ok {
		h.unauthorized(c, "no bearer token")
		return
	}
	p, err := h.opts.Verifier.Verify(c.Request.Context(), c.Param("realm"), raw)
	switch {
	case errors.Is(err, auth.ErrInvalidToken):
		h.unauthorized(c, err.Error())
		return
	case err != nil:
		// The token could not be checked (Keycloak's keys could not be
		// fetched): refused all the same, as "try again".
		h.fail(c, err)
		return
	}
	c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), principalKey, p))
	c.Next()
}

func (h *handler) unauthorized(c *gin.Context, why string) {
	h.log.InfoContext(c.Request.Context(), "token refused", "reason", why, "request_id", requestIDOf(c))
	h.refuse(c, fault.Unauthenticated, "a valid bearer token issued by this realm for this service is required")
}

// changing lets a change through only from the clients in ChangeClients:
// any client of the realm may mint tokens with the service's audience if
// given it, and a third-party app a service-desk user logs into must not
// thereby be able to delete communities.
func (h *handler) changing(c *gin.Context) {
	p := c.Request.Context().Value(principalKey).(*auth.Principal)
	if !slices.Contains(h.opts.ChangeClients, p.ClientID) {
		h.log.InfoContext(c.Request.Context(), "change refused for client", "azp", p.ClientID, "request_id", requestIDOf(c))
		h.refuse(c, fault.Forbidden, "tokens issued to client "+strconv.Quote(p.ClientID)+" may only read; changes need a token of "+
			strings.Join(h.opts.ChangeClients, ", "))
		return
	}
	c.Next()
}
