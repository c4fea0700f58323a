package fhirproxy

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"

	"github.com/nhs-terminology/communities/pkg/decision"
)

// body reads the request body as a FHIR resource in JSON; ok false once it
// has answered why not.
func (p *Proxy) body(c *call, jsonPatch bool) ([]byte, bool) {
	mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	want := mt == "application/fhir+json" || mt == "application/json"
	if jsonPatch {
		want = mt == "application/json-patch+json"
	}
	if !want {
		detail := "send the resource as application/fhir+json"
		if jsonPatch {
			detail = "patch with JSON Patch (application/json-patch+json); FHIRPath and XML patches are not judged by the proxy"
		}
		p.fail(c, http.StatusUnsupportedMediaType, detail)
		return nil, false
	}
	raw, err := io.ReadAll(io.LimitReader(c.r.Body, p.opts.MaxBody+1))
	if err != nil {
		p.fail(c, http.StatusBadRequest, "could not read the request body")
		return nil, false
	}
	if int64(len(raw)) > p.opts.MaxBody {
		p.fail(c, http.StatusRequestEntityTooLarge, "the request body is larger than the proxy passes on")
		return nil, false
	}
	return raw, true
}

// content parses a resource to store and checks it is of typ (and id),
// and that it holds no conditional reference.
func (p *Proxy) content(c *call, raw []byte, typ, id string) (*head, bool) {
	h, err := parseHead(raw)
	if err != nil {
		p.fail(c, http.StatusBadRequest, err.Error())
		return nil, false
	}
	if !p.noConditionalReference(c, raw) {
		return nil, false
	}
	if h.ResourceType != typ {
		p.fail(c, http.StatusBadRequest, "the body is a "+h.ResourceType+", not a "+typ)
		return nil, false
	}
	if id != "" && h.ID != id {
		p.fail(c, http.StatusBadRequest, "the body's id must be "+id+", the id in the URL")
		return nil, false
	}
	return h, true
}

// noConditionalReference refuses a resource to store that holds a
// conditional reference ("CodeSystem?name=x"): a FHIR server resolves it
// by a search of its own, which no label filters, and the stored reference
// (or the server's error when the search finds none, or several) tells the
// caller what the search found, as a conditional create would.
func (p *Proxy) noConditionalReference(c *call, raw []byte) bool {
	ref, err := conditionalReference(raw)
	switch {
	case err != nil:
		p.fail(c, http.StatusBadRequest, "not a FHIR resource in JSON: "+err.Error())
		return false
	case ref != "":
		// The caller's own text, shortened: a body may be megabytes.
		if r := []rune(ref); len(r) > 80 {
			ref = string(r[:80]) + "…"
		}
		p.refuse(c, "a conditional reference ("+ref+") is not passed on: the FHIR server would resolve it by a search that reaches resources the caller may not read")
		return false
	}
	return true
}

// conditionalReference returns the first value of a member named
// "reference" anywhere in raw that holds a "?", the mark of a search.
func conditionalReference(raw []byte) (string, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	afterReference := false
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		// In an object, an odd count of tokens read means tok was a name.
		kind, n := dec.StackIndex(dec.StackDepth())
		isName := kind == '{' && n%2 == 1
		if !isName && afterReference && tok.Kind() == '"' && strings.Contains(tok.String(), "?") {
			return tok.String(), nil
		}
		afterReference = isName && tok.String() == "reference"
	}
}

// denyWrite answers a denied write: as a missing resource when the caller
// may not even read the stored instance, so that the answer says nothing
// of its labels or content; with the reason otherwise. (A PUT to a free
// id creates, so existence itself is not hidden: docs/fhir.md.)
func (p *Proxy) denyWrite(c *call, d decision.Decision, stored *head, typ, id string) {
	if stored != nil && !p.readable(c, stored) {
		p.notFound(c, typ, id)
		return
	}
	p.fail(c, http.StatusForbidden, d.Reason())
}

func (p *Proxy) create(c *call, typ string) {
	raw, ok := p.body(c, false)
	if !ok {
		return
	}
	h, ok := p.content(c, raw, typ, "")
	if !ok {
		return
	}
	d := p.decide(c, decision.Request{ResourceType: typ, Interaction: decision.Create, NewSecurity: h.Meta.Security})
	if !d.Allowed {
		p.fail(c, http.StatusForbidden, d.Reason())
		return
	}
	a, err := p.send(c, http.MethodPost, typ, nil, raw, nil)
	if err != nil {
		p.unavailable(c, err)
		return
	}
	p.relayWritten(c, a)
}

// update judges a PUT against the stored instance (or as a create when
// there is none) and sends it with If-Match on the version judged.
func (p *Proxy) update(c *call, typ, id string) {
	raw, ok := p.body(c, false)
	if !ok {
		return
	}
	h, ok := p.content(c, raw, typ, id)
	if !ok {
		return
	}
	was, stored, err := p.fetch(c, typ, id, "")
	if err != nil {
		p.unavailable(c, err)
		return
	}
	// The upstream brings a deleted resource back with its history, which
	// a version readable again would show; the labels its last version
	// had are not read here, so only who may write every community's
	// resources may do it.
	if stored == nil && was.status == http.StatusGone && !c.privs.Communities().AllWrite {
		p.fail(c, http.StatusConflict, typ+"/"+id+" was deleted; only a caller who may write every community's resources may bring it back; create it under a new id")
		return
	}
	if stored != nil && !p.precondition(c, stored, typ, id) {
		return
	}
	req := decision.Request{ResourceType: typ, Interaction: decision.Create, NewSecurity: h.Meta.Security}
	header := http.Header{}
	if stored != nil {
		req.Interaction, req.Security = decision.Update, stored.Meta.Security
	}
	d := p.decide(c, req)
	if !d.Allowed {
		p.denyWrite(c, d, stored, typ, id)
		return
	}
	if stored != nil && !p.pinVersion(c, stored, header) {
		return
	}
	a, err := p.send(c, http.MethodPut, typ+"/"+id, nil, raw, header)
	if err != nil {
		p.unavailable(c, err)
		return
	}
	p.relayWritten(c, a)
}

// patch applies a JSON Patch to the stored instance to learn the labels
// it would leave, judges that, and sends the same patch with If-Match on
// the version it was applied to, so the upstream makes the same result.
func (p *Proxy) patch(c *call, typ, id string) {
	raw, ok := p.body(c, true)
	if !ok {
		return
	}
	ops, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		p.fail(c, http.StatusBadRequest, "not a JSON Patch: "+err.Error())
		return
	}
	cur, stored, err := p.fetch(c, typ, id, "")
	if err != nil {
		p.unavailable(c, err)
		return
	}
	// A patch keeps what it does not change: for who may not read the
	// instance it would be a way to read it (a patch adding the caller's
	// own read label, or a failing test operation), so it is missing.
	if stored == nil || !p.readable(c, stored) {
		p.notFound(c, typ, id)
		return
	}
	if !p.precondition(c, stored, typ, id) {
		return
	}
	patched, err := ops.Apply(cur.body)
	var h *head
	if err == nil {
		h, err = parseHead(patched)
	}
	if err != nil || h.ResourceType != typ || h.ID != id {
		p.fail(c, http.StatusUnprocessableEntity, "the patch does not apply to "+typ+"/"+id+" as stored, or changes its type or id")
		return
	}
	d := p.decide(c, decision.Request{ResourceType: typ, Interaction: decision.Update, Security: stored.Meta.Security, NewSecurity: h.Meta.Security})
	if !d.Allowed {
		p.denyWrite(c, d, stored, typ, id)
		return
	}
	// Judged after the decision, so that it says nothing of an instance
	// the caller may not write.
	if !p.noConditionalReference(c, patched) {
		return
	}
	header := http.Header{}
	if !p.pinVersion(c, stored, header) {
		return
	}
	header.Set("Content-Type", "application/json-patch+json")
	a, err := p.send(c, http.MethodPatch, typ+"/"+id, nil, raw, header)
	if err != nil {
		p.unavailable(c, err)
		return
	}
	p.relayWritten(c, a)
}

func (p *Proxy) delete(c *call, typ, id string) {
	_, stored, err := p.fetch(c, typ, id, "")
	if err != nil {
		p.unavailable(c, err)
		return
	}
	if stored == nil {
		p.notFound(c, typ, id)
		return
	}
	if !p.precondition(c, stored, typ, id) {
		return
	}
	d := p.decide(c, decision.Request{ResourceType: typ, Interaction: decision.Delete, Security: stored.Meta.Security})
	if !d.Allowed {
		p.denyWrite(c, d, stored, typ, id)
		return
	}
	a, err := p.send(c, http.MethodDelete, typ+"/"+id, nil, nil, nil)
	if err != nil {
		p.unavailable(c, err)
		return
	}
	p.relayWritten(c, a)
}

// precondition answers a caller's If-Match that does not name the stored
// version, before the write is judged: 412 to a caller who may read the
// instance, and 404 to one who may not, as a denied write is, so that the
// answer never tells a write that would be allowed from one that would
// not (a way to test guesses at the labels without writing anything).
func (p *Proxy) precondition(c *call, stored *head, typ, id string) bool {
	m := c.r.Header.Get("If-Match")
	if m == "" || strings.TrimPrefix(m, "W/") == `"`+stored.Meta.VersionID+`"` {
		return true
	}
	if !p.readable(c, stored) {
		p.notFound(c, typ, id)
		return false
	}
	p.fail(c, http.StatusPreconditionFailed, "If-Match does not name the current version")
	return false
}

// pinVersion makes the write apply to the version judged: If-Match on it
// (a caller's own If-Match was checked by precondition).
func (p *Proxy) pinVersion(c *call, stored *head, header http.Header) bool {
	if stored.Meta.VersionID == "" {
		p.unavailable(c, errors.New("stored instance has no versionId"))
		return false
	}
	header.Set("If-Match", `W/"`+stored.Meta.VersionID+`"`)
	return true
}

// relayWritten sends a write's answer on. A resource in it is shown only
// if the caller may read it: write does not imply read.
func (p *Proxy) relayWritten(c *call, a *answer) {
	if a.status >= 500 {
		p.unavailable(c, &statusError{a.status})
		return
	}
	if len(a.body) == 0 {
		p.relay(c, a, nil)
		return
	}
	h, err := parseHead(a.body)
	if err != nil {
		p.relay(c, a, nil)
		return
	}
	if h.ResourceType != "OperationOutcome" && !p.readable(c, h) {
		p.relay(c, a, nil)
		return
	}
	p.relay(c, a, a.body)
}
