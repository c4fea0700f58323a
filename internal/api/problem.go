package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/problem"
)

// statuses maps each kind of the service's error vocabulary (internal/fault) to
// its HTTP status; an error of no kind is a 500.
var statuses = map[error]int{
	fault.Invalid:          http.StatusBadRequest,
	fault.Unauthenticated:  http.StatusUnauthorized,
	fault.Forbidden:        http.StatusForbidden,
	fault.NotFound:         http.StatusNotFound,
	fault.MethodNotAllowed: http.StatusMethodNotAllowed,
	fault.Conflict:         http.StatusConflict,
	fault.TooLarge:         http.StatusRequestEntityTooLarge,
	fault.HeadersTooLarge:  http.StatusRequestHeaderFieldsTooLarge,
	fault.UnsupportedMedia: http.StatusUnsupportedMediaType,
	fault.Unprocessable:    http.StatusUnprocessableEntity,
	fault.Refused:          http.StatusBadGateway,
	fault.Unavailable:      http.StatusServiceUnavailable,
}

// fail answers err as problem details. It is the one place where errors
// become statuses: callers get a fault.Error's public text, or the error's
// own text for their own mistakes (4xx); a 5xx never shows its cause,
// which names other systems' internals, and is logged with it.
func (h *handler) fail(c *gin.Context, err error) {
	status, ok := statuses[fault.KindOf(err)]
	if !ok {
		status = http.StatusInternalServerError
	}
	detail := err.Error()
	var pub *fault.Error
	switch {
	case status == http.StatusInternalServerError:
		detail = "internal error; quote the request id to service desk"
	case errors.As(err, &pub):
		detail = pub.Public
	case status >= 500:
		detail = "a server this service depends on failed"
	}
	// The advice follows the kind, not the text: trying again helps when a
	// server did not answer, never when it refused.
	switch status {
	case http.StatusBadGateway:
		detail += "; it refused the request, so trying again will not help: quote the request id to service desk"
	case http.StatusServiceUnavailable:
		detail += "; try again, and quote the request id to service desk if it persists"
	}
	switch status {
	case http.StatusUnauthorized:
		c.Header("WWW-Authenticate", `Bearer realm="`+c.Param("realm")+`", error="invalid_token"`)
	case http.StatusServiceUnavailable:
		c.Header("Retry-After", "5")
	}
	if status >= 500 {
		// observe logs it on the request's line, with its cause.
		c.Set(causeKey, err)
	}
	p := problem.New(status, detail)
	p.Instance = c.Request.URL.Path
	p.RequestID = requestIDOf(c)
	problem.Write(c.Writer, p)
	c.Abort()
}

// refuse answers with an error of kind whose detail is for the caller.
func (h *handler) refuse(c *gin.Context, kind error, detail string) {
	h.fail(c, fault.New(kind, detail, nil))
}
