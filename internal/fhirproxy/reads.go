package fhirproxy

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/nhs-terminology/communities/pkg/decision"
)

// apiLevel answers 403 unless the caller may do interaction on typ at all:
// that reveals nothing about any resource.
func (p *Proxy) apiLevel(c *call, typ string, in decision.Interaction) bool {
	d := p.decide(c, decision.Request{ResourceType: typ, Interaction: in})
	if d.Rule == decision.RuleNoAPIAccess {
		p.fail(c, http.StatusForbidden, d.Reason())
		return false
	}
	return true
}

// readParams keeps only the parameters a read may carry.
func readParams(q url.Values) url.Values {
	out := url.Values{}
	if v, ok := q["_pretty"]; ok {
		out["_pretty"] = v
	}
	return out
}

// fetch reads the current (or, with version, an old) instance upstream:
// no head when it is missing or deleted (the answer then says which).
func (p *Proxy) fetch(c *call, typ, id, version string) (*answer, *head, error) {
	path := typ + "/" + id
	if version != "" {
		path += "/_history/" + version
	}
	a, err := p.send(c, http.MethodGet, path, readParams(c.r.URL.Query()), nil, nil)
	if err != nil {
		return nil, nil, err
	}
	switch a.status {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone:
		return a, nil, nil
	default:
		return nil, nil, &statusError{a.status}
	}
	h, err := parseHead(a.body)
	if err != nil {
		return nil, nil, err
	}
	if h.ResourceType != typ || h.ID != id {
		return nil, nil, &statusError{a.status}
	}
	return a, h, nil
}

type statusError struct{ status int }

func (e *statusError) Error() string { return "unexpected answer " + http.StatusText(e.status) }

// readable reports whether the caller may read h (not logged as the
// request's decision: it only shapes the answer).
func (p *Proxy) readable(c *call, h *head) bool {
	return p.opts.Decisions.Decide(c.privs, decision.Request{ResourceType: h.ResourceType, Interaction: decision.Read, Security: h.Meta.Security}).Allowed
}

// judgeRead decides a read of h as the request's decision.
func (p *Proxy) judgeRead(c *call, h *head) bool {
	return p.decide(c, decision.Request{ResourceType: h.ResourceType, Interaction: decision.Read, Security: h.Meta.Security}).Allowed
}

// currentReadable fetches the current instance and answers for it when it does
// not exist or the caller may not read it (404 either way, so existence
// does not leak); ok is false when it has answered.
func (p *Proxy) currentReadable(c *call, typ, id string) (*answer, bool) {
	a, h, err := p.fetch(c, typ, id, "")
	if err != nil {
		p.unavailable(c, err)
		return nil, false
	}
	if h == nil || !p.judgeRead(c, h) {
		p.notFound(c, typ, id)
		return nil, false
	}
	return a, true
}

// read serves read and vread. A version is readable only while the
// current instance is too: restricting a resource hides its past.
func (p *Proxy) read(c *call, typ, id, version string) {
	if !p.apiLevel(c, typ, decision.Read) {
		return
	}
	a, ok := p.currentReadable(c, typ, id)
	if !ok {
		return
	}
	if version != "" {
		var h *head
		var err error
		if a, h, err = p.fetch(c, typ, id, version); err != nil {
			p.unavailable(c, err)
			return
		}
		if h == nil || !p.judgeRead(c, h) {
			p.notFound(c, typ, id+"/_history/"+version)
			return
		}
	}
	p.relay(c, a, a.body)
}

// search runs a search of one type and filters every entry.
func (p *Proxy) search(c *call, typ string) {
	if !p.apiLevel(c, typ, decision.Search) {
		return
	}
	a, err := p.send(c, http.MethodGet, typ, c.r.URL.Query(), nil, http.Header{"Cache-Control": {"no-cache"}})
	if err != nil {
		p.unavailable(c, err)
		return
	}
	p.relayBundle(c, a, bundleSearch)
}

// page serves the next pages of a search (or of an instance's history),
// whose links point at the base with _getpages. Whoever asks, every entry
// is judged again for them.
func (p *Proxy) page(c *call) {
	q := url.Values{}
	for _, k := range []string{"_getpages", "_getpagesoffset", "_count", "_bundletype", "_pretty", "_format"} {
		if v, ok := c.r.URL.Query()[k]; ok {
			q[k] = v
		}
	}
	a, err := p.send(c, http.MethodGet, "", q, nil, nil)
	if err != nil {
		p.unavailable(c, err)
		return
	}
	p.relayBundle(c, a, bundlePage)
}

// history serves one instance's history, if its current version is
// readable, with every version judged on its own labels.
func (p *Proxy) history(c *call, typ, id string) {
	if !p.apiLevel(c, typ, decision.Read) {
		return
	}
	if _, ok := p.currentReadable(c, typ, id); !ok {
		return
	}
	a, err := p.send(c, http.MethodGet, typ+"/"+id+"/_history", c.r.URL.Query(), nil, nil)
	if err != nil {
		p.unavailable(c, err)
		return
	}
	p.relayBundle(c, a, bundleHistory)
}

// metadata passes the capability statement on, with the upstream base
// rewritten.
func (p *Proxy) metadata(c *call) {
	a, err := p.send(c, http.MethodGet, "metadata", readParams(c.r.URL.Query()), nil, nil)
	if err != nil {
		p.unavailable(c, err)
		return
	}
	if a.status != http.StatusOK {
		p.unavailable(c, &statusError{a.status})
		return
	}
	p.relay(c, a, a.body)
}

// relayBundle filters a searchset or history bundle for the caller and
// sends it on; an upstream error answer (OperationOutcome) is sent on as
// it is, rewritten.
func (p *Proxy) relayBundle(c *call, a *answer, kind bundleKind) {
	if a.status != http.StatusOK {
		if a.status >= 500 {
			p.unavailable(c, &statusError{a.status})
			return
		}
		p.relay(c, a, a.body)
		return
	}
	body, err := p.filterBundle(c, a.body, kind)
	if err != nil {
		p.unavailable(c, err)
		return
	}
	p.relay(c, a, body)
}

// included reports an entry of search mode include.
func included(e map[string]json.RawMessage) bool {
	var s struct{ Mode string }
	return json.Unmarshal(e["search"], &s) == nil && s.Mode == "include"
}

// linked reports whether an included resource refers to one of the shown
// matches, or one of them refers to it (matchRefs: the references of each
// shown match).
func linked(res json.RawMessage, shown []string, matchRefs [][]string) bool {
	own := referencesOf(res)
	for _, m := range shown {
		if slices.ContainsFunc(own, func(ref string) bool { return names(ref, m) }) {
			return true
		}
	}
	h, err := parseHead(res)
	if err != nil {
		return false
	}
	self := h.ResourceType + "/" + h.ID
	for _, refs := range matchRefs {
		if slices.ContainsFunc(refs, func(ref string) bool { return names(ref, self) }) {
			return true
		}
	}
	return false
}

// names reports whether reference ref names key ("Type/id"), relative,
// absolute or versioned.
func names(ref, key string) bool {
	ref, _, _ = strings.Cut(ref, "/_history/")
	return ref == key || strings.HasSuffix(ref, "/"+key)
}

// referencesOf returns the values of raw's reference elements, at any
// depth. Only those link resources: text elsewhere that names one links
// nothing.
func referencesOf(raw json.RawMessage) []string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "reference" {
					out = append(out, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

type bundleKind uint8

const (
	bundleSearch  bundleKind = iota // a search of a type the caller may search
	bundlePage                      // a later page: its search's type is not known here
	bundleHistory                   // one instance's history; the instance was judged
)

// filterBundle leaves out of a bundle every entry the caller may not read
// (match, include and outcome entries alike). The total stays only where
// it is exact: for a caller who may read every community, when nothing
// was left out (and, on a later page, when the page shows the caller may
// search what it holds). Entries without a resource (deleted versions)
// stay only in an instance's history.
func (p *Proxy) filterBundle(c *call, raw []byte, kind bundleKind) ([]byte, error) {
	var b map[string]json.RawMessage
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, err
	}
	var typ string
	if err := json.Unmarshal(b["resourceType"], &typ); err != nil || typ != "Bundle" {
		return nil, &statusError{http.StatusOK}
	}
	var entries []map[string]json.RawMessage
	if e, ok := b["entry"]; ok {
		if err := json.Unmarshal(e, &entries); err != nil {
			return nil, err
		}
	}
	in := decision.Search
	if kind == bundleHistory {
		in = decision.Read
	}
	// Judge every entry; remember the matches shown, for the includes.
	keep := make([]bool, len(entries))
	var shown []string
	removed := 0
	for i, e := range entries {
		res, ok := e["resource"]
		if !ok {
			keep[i] = kind == bundleHistory
			continue
		}
		h, err := parseHead(res)
		if err != nil || !p.decide(c, decision.Request{ResourceType: h.ResourceType, Interaction: in, Security: h.Meta.Security}).Allowed {
			continue
		}
		keep[i] = true
		if !included(e) {
			shown = append(shown, h.ResourceType+"/"+h.ID)
		}
	}
	// An _include or _revinclude entry is there because of a match: it
	// stays only if linked to a match the caller sees, so that it cannot
	// reveal that a hidden resource matched the search.
	// Each shown match's references are read once, not once an include.
	var matchRefs [][]string
	for i, e := range entries {
		if keep[i] && !included(e) {
			matchRefs = append(matchRefs, referencesOf(e["resource"]))
		}
	}
	kept := make([]map[string]json.RawMessage, 0, len(entries))
	for i, e := range entries {
		if keep[i] && included(e) && !linked(e["resource"], shown, matchRefs) {
			keep[i] = false
		}
		if keep[i] {
			kept = append(kept, e)
		} else {
			removed++
		}
	}
	c.outcome = "filtered"
	exact := removed == 0 && c.privs.Communities().AllRead && (kind != bundlePage || len(kept) > 0)
	if !exact {
		delete(b, "total")
	}
	if len(kept) == 0 {
		delete(b, "entry")
	} else {
		e, err := json.Marshal(kept)
		if err != nil {
			return nil, err
		}
		b["entry"] = e
	}
	return json.Marshal(b)
}
