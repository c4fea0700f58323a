package keycloak

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/Nerzal/gocloak/v13"
	json "github.com/go-json-experiment/json"
	"github.com/go-resty/resty/v2"

	"github.com/nhs-terminology/communities/internal/community"
)

// Problems Ensure and Survey report, said once.
const (
	problemMissing = "missing"
	problemForeign = "exists but is not this community's"
	problemEarlier = "made by an earlier version; the realm's community-privileges token mapper replaces it"
	problemGranted = "not granted by the community; its group passes it on to the group's members"
	problemBelow   = "holds groups made by hand, whose members hold its roles without being the community's members; move them out by hand"
	// problemByHand follows a problem a repair leaves to an administrator.
	problemByHand = "; take it off by hand"
)

// mappingWhat names group path's mapping of a role in a drift's What.
func mappingWhat(path, role string) string { return "role mapping " + path + " → " + role }

// permissionWhat names an admin policy or permission in a drift's What.
func permissionWhat(name string) string { return "admin permission " + name }

// adminClient holds a realm's admin roles, which only an administrator
// may take off a group.
const adminClient = "realm-management"

// ungranted notes each role group path maps that the community did not
// grant it: a realm role not in grants, and any client role (a community
// grants none), in the words the survey and Ensure share.
func ungranted(path string, realmRoles []string, clientRoles map[string][]string, grants []string, note func(what, problem string)) {
	for _, name := range realmRoles {
		if !slices.Contains(grants, name) {
			note(mappingWhat(path, name), problemGranted)
		}
	}
	for _, client := range slices.Sorted(maps.Keys(clientRoles)) {
		problem := problemGranted
		if client == adminClient {
			problem += problemByHand
		}
		for _, name := range clientRoles[client] {
			note(mappingWhat(path, client+" client role "+name), problem)
		}
	}
}

// realmView is what a realm holds of communities, read in bulk: the realm
// roles by name, the groups under the root by path (label groups and their
// member groups), what the community admin policies say by name (nil
// when the realm's admin permissions are off) and the client scopes by
// name.
type realmView struct {
	roles    map[string]gocloak.Role
	groups   map[string]gocloak.Group
	policies map[string]policyContent
	scopes   map[string]scopeRep
}

// surveyRep is the extension's answer: realm roles with their markers,
// the groups one and two levels under the root with their markers, role
// mappings and the groups under them (by name), what the community admin
// policies say and the client scopes.
type surveyRep struct {
	Roles            []gocloak.Role  `json:"roles"`
	Groups           []gocloak.Group `json:"groups"`
	AdminPermissions bool            `json:"adminPermissions"`
	Policies         []policyContent `json:"policies"`
	ClientScopes     []scopeRep      `json:"clientScopes"`
}

// surveyPage is what the extension's POST survey reads: the communities of
// Labels, and the realm roles and policies of the names given.
type surveyPage struct {
	Root      string   `json:"root"`
	Attribute string   `json:"attribute"`
	Labels    []string `json:"labels"`
	Roles     []string `json:"roles"`
	Policies  []string `json:"policies"`
}

// page reads specs' artefacts (all under root) in one call: the groups of
// their labels, and the roles and policies Describe names for them.
func (c *Client) page(ctx context.Context, realm, root string, specs []community.Spec) (realmView, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return realmView{}, err
	}
	body := surveyPage{Root: root, Attribute: MarkerAttribute, Labels: []string{}, Roles: []string{}, Policies: []string{}}
	for _, s := range specs {
		d := Describe(s)
		body.Labels = append(body.Labels, s.Label)
		body.Roles = append(append(body.Roles, d.RoleNames()...), d.Legacy.Roles...)
		for _, p := range d.Policies {
			body.Policies = append(body.Policies, p.Name)
		}
	}
	resp, err := c.raw(ctx, tok, http.MethodPost, pathEscape(realm)+surveyPath, body, nil)
	return decodeAnswer(realm, resp, err)
}

// decodeAnswer is the realm view of the extension's survey answer resp.
func decodeAnswer(realm string, resp *resty.Response, err error) (realmView, error) {
	op := "survey realm " + realm
	raw, err := extensionAnswer(op, resp, err)
	if err != nil {
		return realmView{}, err
	}
	v, err := decodeSurvey(raw)
	if err != nil {
		return realmView{}, fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return v, nil
}

// extensionAnswer is the body of resp, the extension's answer to op. A 404
// for a path Keycloak does not know names the extension: without it,
// every path under the realm's communities is unknown. Any other 404 is
// the extension's own (a client of --fhir-clients the realm lacks, say),
// and its message is passed on instead.
func extensionAnswer(op string, resp *resty.Response, err error) ([]byte, error) {
	switch {
	case errors.Is(err, ErrNotFound) && noSuchPath(resp):
		return nil, fmt.Errorf("%s: %w (is the project's Keycloak extension, deploy/keycloak-extension, installed?)", op, err)
	case errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("%s: %w: %s", op, err, truncate(resp.String(), 300))
	case err != nil:
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return resp.Body(), nil
}

// noSuchPath tells Keycloak's answer to a path no resource serves (JAX-RS's
// own 404) from a 404 a resource gave with its own message.
func noSuchPath(resp *resty.Response) bool {
	var e struct {
		Error string `json:"error"`
	}
	return resp == nil || json.Unmarshal(resp.Body(), &e) != nil || e.Error == "HTTP 404 Not Found"
}

// extensionGet reads the extension's answer at path (under realm) to
// query q into out; op says what it is, for errors.
func (c *Client) extensionGet(ctx context.Context, realm, path string, q url.Values, op string, out any) error {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return err
	}
	resp, err := c.raw(ctx, tok, http.MethodGet, pathEscape(realm)+path+"?"+q.Encode(), nil, nil)
	raw, err := extensionAnswer(op, resp, err)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return nil
}

// labelGroups reads the groups directly under root with their markers.
func (c *Client) labelGroups(ctx context.Context, realm, root string) ([]community.Orphan, error) {
	var groups []gocloak.Group
	if err := c.extensionGet(ctx, realm, groupsPath, url.Values{"root": {root}, "attribute": {MarkerAttribute}},
		"list the groups of realm "+realm, &groups); err != nil {
		return nil, err
	}
	out := make([]community.Orphan, 0, len(groups))
	for _, g := range groups {
		out = append(out, orphanOf(g))
	}
	slices.SortFunc(out, func(a, b community.Orphan) int { return strings.Compare(a.Label, b.Label) })
	return out, nil
}

// markedRep is the extension's GET marked answer: one role and one policy
// for each marker found on them.
type markedRep struct {
	Roles []struct {
		Name   string `json:"name"`
		Marker string `json:"marker"`
	} `json:"roles"`
	AdminPermissions bool        `json:"adminPermissions"`
	Policies         []policyRep `json:"policies"`
}

// marked lists the community roles and admin permissions of realm that
// carry a marker, with the label their name is of. A role or policy whose
// name is no community's is not listed, nor a role with two markers
// (nobody's; see hasMarker).
func (c *Client) marked(ctx context.Context, realm string) ([]community.Orphan, error) {
	var rep markedRep
	if err := c.extensionGet(ctx, realm, markedPath, url.Values{"attribute": {MarkerAttribute}, "policyPrefix": {policyPrefix}},
		"list the marked roles and permissions of realm "+realm, &rep); err != nil {
		return nil, err
	}
	markers := map[string]int{}
	for _, r := range rep.Roles {
		markers[r.Name]++
	}
	var out []community.Orphan
	for _, r := range rep.Roles {
		if l, ok := labelOfRole(r.Name); ok && markers[r.Name] == 1 {
			out = append(out, community.Orphan{Label: l, ID: r.Marker, Artefact: "realm role " + r.Name})
		}
	}
	for _, p := range rep.Policies {
		l, ok := labelOfPolicy(p.Name)
		id, marked := strings.CutPrefix(p.Description, MarkerAttribute+"=")
		if ok && marked {
			out = append(out, community.Orphan{Label: l, ID: id, Artefact: permissionWhat(p.Name)})
		}
	}
	return out, nil
}

// labelOfRole is the label of a community role's name (NamesFor), if it
// is one.
func labelOfRole(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "PERM_")
	for _, kind := range []string{"_READ", "_WRITE", "_OWNER"} {
		if l, cut := strings.CutSuffix(rest, kind); ok && cut && l != "" {
			return l, true
		}
	}
	return "", false
}

// labelOfPolicy is the label of a community admin policy's name
// (fgapNames), if it is one.
func labelOfPolicy(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, policyPrefix)
	l, _, cut := strings.Cut(rest, ":")
	return l, ok && cut && l != ""
}

// CarriesMarker reports whether a role or admin permission of label's
// names (under root) carries community id's marker now: one page of the
// survey, for one community.
func (c *Client) CarriesMarker(ctx context.Context, realm, root, label, id string) (bool, error) {
	s := community.Spec{ID: id, Realm: realm, Root: root, Label: label}
	v, err := c.page(ctx, realm, root, []community.Spec{s})
	if err != nil {
		return false, err
	}
	d := Describe(s)
	for _, name := range append(d.RoleNames(), d.Legacy.Roles...) {
		if r, ok := v.roles[name]; ok && hasMarker(r.Attributes, id) {
			return true, nil
		}
	}
	for _, want := range d.Policies {
		if p, ok := v.policies[want.Name]; ok && p.Description == want.Description {
			return true, nil
		}
	}
	return false, nil
}

// decodeSurvey indexes the extension's answer by name and path. A drift
// pass decodes about 2.5 MB per 1,000 communities; encoding/json/v2's
// decoder reads it in 0.7× the time of encoding/json's
// (BenchmarkSurveyRead).
func decodeSurvey(raw []byte) (realmView, error) {
	var rep surveyRep
	if err := json.Unmarshal(raw, &rep); err != nil {
		return realmView{}, fmt.Errorf("decode the survey: %w", err)
	}
	v := realmView{roles: map[string]gocloak.Role{}, groups: map[string]gocloak.Group{}, scopes: map[string]scopeRep{}}
	for _, role := range rep.Roles {
		v.roles[deref(role.Name)] = role
	}
	for _, g := range rep.Groups {
		v.groups[deref(g.Path)] = g
	}
	if rep.AdminPermissions {
		v.policies = map[string]policyContent{}
		for _, p := range rep.Policies {
			v.policies[p.Name] = p
		}
	}
	for _, sc := range rep.ClientScopes {
		v.scopes[sc.Name] = sc
	}
	return v, nil
}

// A drift pass reads the communities a page at a time (and MendShared
// mends them so), and after each call waits surveyRest times as long as
// the call took, so that a pass takes at most a fifth of one of
// Keycloak's workers whatever the number of communities: in one answer,
// the 10,000 communities of the scale run took 0.9 s of a core, and
// creates made meanwhile were 1.47× as slow.
const (
	surveyPageSize = 500
	surveyRest     = 4
)

// Survey compares every community of specs, all of realm under root, with
// Describe, and the realm-wide admin permissions with RealmPolicies. It
// reads the realm in 3 + N/500 calls to the extension: the groups under
// the root, the markers on roles and admin permissions (one of each per
// marker), what the realm-wide permissions say, then a page of
// communities at a time (their groups and roles, one database query each
// inside Keycloak, what their admin policies say, five, and the client
// scopes). The admin API reads those one entity
// at a time through Keycloak's cache: at 10,000 communities a pass over it
// took 89 calls and 3.5 minutes. It changes nothing. Keycloak's queries are
// not one snapshot while communities are created and deleted, so what it
// finds is a suspicion, for Ensure to confirm community by community. A
// community whose only differences are what a realm-wide policy or role
// deleted by hand leaves of every community is Shared instead: no create
// or delete passes through those states, so the service confirms it from
// its registry.
func (c *Client) Survey(ctx context.Context, realm, root string, specs []community.Spec) (community.Survey, error) {
	var out community.Survey
	rest := pacer(ctx)
	groups, err := c.labelGroups(ctx, realm, root)
	if err != nil {
		return out, err
	}
	out.Groups = groups
	if out.Marked, err = c.marked(ctx, realm); err != nil {
		return out, err
	}
	// Every community's permissions build on the realm-wide ones, made at
	// the realm's first create: with no community, none is missing yet,
	// but one that says otherwise refuses every create.
	tok, err := c.token(ctx, realm)
	if err != nil {
		return out, err
	}
	// Admin permissions off are found by the pages below.
	if out.Realm, _, err = c.realmPolicyDrift(ctx, tok, realm, root); err != nil && !errors.Is(err, errPermissionsOff) {
		return out, err
	}
	if len(specs) == 0 {
		out.Realm = slices.DeleteFunc(out.Realm, func(d community.Drift) bool { return d.Problem == problemMissing })
	}
	specs = slices.SortedFunc(slices.Values(specs), func(a, b community.Spec) int { return strings.Compare(a.Label, b.Label) })
	for page := range slices.Chunk(specs, surveyPageSize) {
		if err := rest(); err != nil {
			return out, err
		}
		v, err := c.page(ctx, realm, root, page)
		if err != nil {
			return out, err
		}
		if v.policies == nil && !slices.Contains(out.Realm, permissionsOff(realm)) {
			out.Realm = append(out.Realm, permissionsOff(realm))
		}
		for _, s := range page {
			d, shared := v.compare(s)
			switch {
			case len(d) == 0 && len(shared) > 0:
				if out.Shared == nil {
					out.Shared = map[string][]community.Drift{}
				}
				out.Shared[s.ID] = shared
			case len(d) > 0:
				if out.Suspects == nil {
					out.Suspects = map[string][]community.Drift{}
				}
				out.Suspects[s.ID] = append(d, shared...)
			}
		}
	}
	return out, nil
}

// pacer returns a function that waits surveyRest times as long as has
// passed since it was made or last returned, or until ctx ends.
func pacer(ctx context.Context) func() error {
	since := time.Now()
	return func() error {
		// select picks at random among ready cases: a rest of about
		// nothing would let a call through after ctx ended.
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.NewTimer(surveyRest * time.Since(since))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		since = time.Now()
		return nil
	}
}

// compare returns how community s's artefacts in v differ from Describe(s),
// in Ensure's words; owners are not checked. What a realm-wide policy or
// role deleted by hand leaves of every community (shared.go) is shared,
// not in drift: its aggregate left without role:service-desk and otherwise
// as Describe says (unlinkedOnly), and its owner group without OwnerRole.
// It is pure.
func (v realmView) compare(s community.Spec) (drift, shared []community.Drift) {
	note := func(what, problem string) {
		drift = append(drift, community.Drift{What: what, Problem: problem})
	}
	d := Describe(s)
	for _, want := range d.Roles {
		switch r, ok := v.roles[want.Name]; {
		case !ok:
			note("realm role "+want.Name, problemMissing)
		case !hasMarker(r.Attributes, s.ID):
			note("realm role "+want.Name, problemForeign)
		}
	}
	switch g, ok := v.groups[d.Group.Path]; {
	case !ok:
		note("group "+d.Group.Path, problemMissing)
	case !hasMarker(g.Attributes, s.ID):
		note("group "+d.Group.Path, problemForeign)
	default:
		ungranted(d.Group.Path, deref(g.RealmRoles), deref(g.ClientRoles), d.Legacy.Roles, note)
		for _, want := range d.Children {
			g, ok := v.groups[want.Path]
			switch {
			case !ok:
				note("group "+want.Path, problemMissing)
				continue
			case !hasMarker(g.Attributes, s.ID):
				note("group "+want.Path, problemForeign)
				continue
			}
			mapped := deref(g.RealmRoles)
			for _, name := range want.Grants {
				switch {
				case slices.Contains(mapped, name):
				case name == OwnerRole:
					shared = append(shared, community.Drift{What: mappingWhat(want.Path, name), Problem: problemMissing})
				default:
					note(mappingWhat(want.Path, name), problemMissing)
				}
			}
			ungranted(want.Path, mapped, deref(g.ClientRoles), slices.Concat(want.Grants, d.Legacy.Roles), note)
			if g.SubGroups != nil && len(*g.SubGroups) > 0 {
				note("group "+want.Path, problemBelow)
			}
		}
	}
	for _, name := range d.Legacy.Roles {
		if r, ok := v.roles[name]; ok && hasMarker(r.Attributes, s.ID) {
			note("realm role "+name, problemEarlier)
		}
	}
	// Any scope of a legacy name is suspect: Ensure checks its role
	// mapping and whether a FHIR client carries it.
	for _, name := range d.Legacy.Scopes {
		if _, ok := v.scopes[name]; ok {
			note("client scope "+name, "exists")
		}
	}
	// Admin permissions off are the realm's drift (Survey.Realm), not
	// each community's.
	if v.policies == nil {
		return drift, shared
	}
	ownPolicyDrift(d, v.policies, func(dr community.Drift, want PolicySpec) {
		if got, ok := v.policies[want.Name]; ok && unlinkedOnly(want, got, d.groupPath) {
			shared = append(shared, dr)
			return
		}
		drift = append(drift, dr)
	})
	return drift, shared
}

// CommunityGroup finds the group of label under root now, with its marker.
func (c *Client) CommunityGroup(ctx context.Context, realm, root, label string) (community.Orphan, bool, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return community.Orphan{}, false, err
	}
	g, err := c.gc.GetGroupByPath(ctx, tok, realm, root+"/"+label)
	switch {
	case statusOf(err) == http.StatusNotFound:
		return community.Orphan{}, false, nil
	case err != nil:
		return community.Orphan{}, false, classify("find group /"+root+"/"+label, err)
	}
	return orphanOf(*g), true, nil
}

// orphanOf is label group g with its marker, if it has one marker (see
// hasMarker).
func orphanOf(g gocloak.Group) community.Orphan {
	o := community.Orphan{Label: deref(g.Name)}
	if g.Attributes != nil && len((*g.Attributes)[MarkerAttribute]) == 1 {
		o.ID = (*g.Attributes)[MarkerAttribute][0]
	}
	return o
}
