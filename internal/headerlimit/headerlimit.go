// Package headerlimit measures a request's headers against a limit, so
// that the service and the FHIR proxy refuse oversized ones alike: a 431
// that names the largest header, a log line and a count. Go's own server
// would answer a bare 431 and say nothing, and the header most likely to
// outgrow a limit is a token whose user joined too many communities.
package headerlimit

import (
	"fmt"
	"net/http"
	"strings"
)

// Excess describes headers over their limit.
type Excess struct {
	Total, Limit int
	// Largest is the largest header's canonical name (Go's, as in
	// http.Header); LargestBytes is its size on the wire.
	Largest      string
	LargestBytes int
}

// Check measures r's request line and headers as they were on the wire
// ("Name: value\r\n" per value) and reports whether they exceed limit
// bytes. Go takes Host out of the header map, and the request line is in
// none: both are counted, so that a long URL or Host is refused like a
// long header. A limit of 0 or less checks nothing.
func Check(r *http.Request, limit int) (Excess, bool) {
	if limit <= 0 {
		return Excess{}, false
	}
	e := Excess{Limit: limit}
	add := func(name string, size int) {
		e.Total += size
		if size > e.LargestBytes {
			e.Largest, e.LargestBytes = name, size
		}
	}
	add(RequestLine, len(r.Method)+len(r.RequestURI)+len(r.Proto)+4)
	if r.Host != "" {
		add("Host", len("Host")+len(r.Host)+4)
	}
	for name, values := range r.Header {
		size := 0
		for _, v := range values {
			size += len(name) + len(v) + 4
		}
		add(name, size)
	}
	return e, e.Total > limit
}

// RequestLine is Excess.Largest when the request line (method, URL,
// protocol) is the largest part.
const RequestLine = "request line"

// Kind is the metric label for the largest header: authorization, cookie
// or other, never the caller's own header name, which would let callers
// make new series.
func (e Excess) Kind() string {
	switch e.Largest {
	case "Authorization", "Cookie":
		return strings.ToLower(e.Largest)
	}
	return "other"
}

// Detail says what was too large and, for a token, why it grows.
func (e Excess) Detail() string {
	d := fmt.Sprintf("the request line and headers are %d bytes, over this service's limit of %d; the largest is %s (%d bytes)",
		e.Total, e.Limit, e.Largest, e.LargestBytes)
	if e.Largest == "Authorization" {
		d += ": the token carries too many roles or scopes (see docs/operations.md, \"Token size\")"
	}
	return d
}

// LogAttrs are the sizes worth logging; never a header's value.
func (e Excess) LogAttrs() []any {
	return []any{"bytes", e.Total, "limit", e.Limit, "largest_header", e.Largest, "largest_bytes", e.LargestBytes}
}

// ServerLimit is the http.Server's MaxHeaderBytes for a limit checked by
// Check: well above it, so that Check, which explains itself, is what
// callers meet, and Go's bare 431 is left for abuse.
func ServerLimit(limit int) int { return 4*limit + 4096 }
