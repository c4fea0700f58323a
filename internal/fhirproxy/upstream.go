package fhirproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-json-experiment/json"

	"github.com/nhs-terminology/communities/pkg/decision"
)

// answer is an upstream response, read whole: it must be judged before
// any of it reaches the caller.
type answer struct {
	status int
	header http.Header
	body   []byte
}

var errTooLarge = errors.New("body too large")

// send makes one upstream call. path is relative to the upstream base and
// already escaped; query is passed as given.
func (p *Proxy) send(c *call, method, path string, query url.Values, body []byte, header http.Header) (*answer, error) {
	u := p.upstream + "/" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(c.r.Context(), method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("X-Request-ID", c.requestID)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	// Prefer (return=, handling=) changes nothing the proxy judges.
	if v := c.r.Header.Get("Prefer"); v != "" {
		req.Header.Set("Prefer", v)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := p.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, p.opts.MaxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > p.opts.MaxBody {
		return nil, errTooLarge
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: raw}, nil
}

// unavailable answers an upstream that failed; the cause, which names the
// upstream, goes to the log only.
func (p *Proxy) unavailable(c *call, err error) {
	p.log.Warn("upstream FHIR server failed", "error", err.Error(), "request_id", c.requestID)
	if errors.Is(err, errTooLarge) {
		p.fail(c, http.StatusBadGateway, "the FHIR server's answer is larger than the proxy passes on")
		return
	}
	c.w.Header().Set("Retry-After", "5")
	p.fail(c, http.StatusBadGateway, "the FHIR server failed or could not be reached")
}

// relay sends an upstream answer on: the upstream base rewritten to the
// proxy's everywhere, only headers that name nothing else kept.
func (p *Proxy) relay(c *call, a *answer, body []byte) {
	h := c.w.Header()
	for _, k := range []string{"ETag", "Last-Modified"} {
		if v := a.header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	for _, k := range []string{"Location", "Content-Location"} {
		if v := a.header.Get(k); v != "" {
			h.Set(k, p.rewrite(c, v))
		}
	}
	if body == nil {
		c.w.WriteHeader(a.status)
		return
	}
	h.Set("Content-Type", "application/fhir+json;charset=UTF-8")
	c.w.WriteHeader(a.status)
	_, _ = c.w.Write(p.rewriteBytes(c, body))
}

func (p *Proxy) rewrite(c *call, s string) string {
	return strings.ReplaceAll(s, p.upstream, c.public)
}

func (p *Proxy) rewriteBytes(c *call, b []byte) []byte {
	return bytes.ReplaceAll(b, []byte(p.upstream), []byte(c.public))
}

// head is what the proxy reads of a resource: enough to judge it.
type head struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID string            `json:"versionId"`
		Security  []decision.Coding `json:"security"`
	} `json:"meta"`
}

// parseHead reads what the proxy judges of a resource the way a FHIR
// server reads it: names matched exactly, a duplicate name or invalid UTF-8
// refused (encoding/json/v2's defaults). The body sent on is the one
// judged, byte for byte, so the proxy must not read labels the server
// does not: encoding/json would take "Meta" or "ſystem" for "meta" or
// "system", and the last of two duplicates, which a server reading names
// exactly ignores or reads otherwise.
func parseHead(raw []byte) (*head, error) {
	var h head
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("not a FHIR resource in JSON: %w", err)
	}
	if h.ResourceType == "" {
		return nil, errors.New("not a FHIR resource: no resourceType")
	}
	return &h, nil
}

// decide judges one interaction for the caller, counting it in the log.
func (p *Proxy) decide(c *call, req decision.Request) decision.Decision {
	d := p.opts.Decisions.Decide(c.privs, req)
	outcome := "deny"
	if d.Allowed {
		outcome = "allow"
	}
	c.outcome = outcome + " " + d.Rule.String()
	return d
}
