package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/community"
)

// Page sizes of the bulk reads, chosen by measuring Keycloak 26.7.3: a
// page of realm roles costs more per role the longer it is (100: 0.2 ms a
// role, 1,000: 0.4, 2,000: 0.7), admin policies less so, and a group in
// full (attributes, role mappings) costs about 3 ms when Keycloak's cache
// does not hold it, which at its default size it does not past about
// 1,000 communities: 1,000 groups a page stay well inside
// --keycloak-timeout. At 10,000 communities a pass reads 20,000 roles,
// 40,000 groups and 40,000 policies in about 80 pages.
const (
	rolePage   = 1000
	policyPage = 2000
	groupPage  = 1000
)

// Problems Ensure and Survey report, said once.
const (
	problemMissing = "missing"
	problemForeign = "exists but is not this community's"
	problemEarlier = "made by an earlier version; the realm's community-privileges token mapper replaces it"
)

// realmView is what a realm holds of communities, read in bulk: the realm
// roles by name, the groups under the root by path (label groups and their
// member groups), the community admin policies by name (nil when the
// realm's admin permissions are off) and the client scopes by name.
type realmView struct {
	roles    map[string]gocloak.Role
	groups   map[string]gocloak.Group
	policies map[string]policyRep
	scopes   map[string]scopeRep
}

// Survey compares every community of specs, all of realm under root, with
// Describe, reading the realm in bulk: a fixed number of calls plus one per
// page, whatever the number of communities. It changes nothing. Pages read at different moments are not one snapshot, so what
// it finds is a suspicion, for Ensure to confirm community by community.
func (c *Client) Survey(ctx context.Context, realm, root string, specs []community.Spec) (community.Survey, error) {
	var out community.Survey
	v := realmView{roles: map[string]gocloak.Role{}, groups: map[string]gocloak.Group{}, scopes: map[string]scopeRep{}}
	get := c.pageReader(ctx, realm)

	err := pages(rolePage, func(first int) (int, error) {
		var roles []gocloak.Role
		q := fmt.Sprintf("/roles?briefRepresentation=false&first=%d&max=%d", first, rolePage)
		if err := get(pathEscape(realm)+q, &roles); err != nil {
			return 0, fmt.Errorf("list realm roles: %w", err)
		}
		for _, r := range roles {
			v.roles[deref(r.Name)] = r
		}
		return len(roles), nil
	})
	if err != nil {
		return out, err
	}

	var scopes []scopeRep
	if err := get(pathEscape(realm)+"/client-scopes", &scopes); err != nil {
		return out, fmt.Errorf("list client scopes: %w", err)
	}
	for _, sc := range scopes {
		v.scopes[sc.Name] = sc
	}

	if out.Groups, err = c.surveyGroups(ctx, get, realm, root, v.groups); err != nil {
		return out, err
	}

	tok, err := c.token(ctx, realm)
	if err != nil {
		return out, err
	}
	switch base, err := c.permissionsBase(ctx, tok, realm); {
	case errors.Is(err, errPermissionsOff):
	case err != nil:
		return out, err
	default:
		v.policies = map[string]policyRep{}
		err = pages(policyPage, func(first int) (int, error) {
			var ps []policyRep
			q := fmt.Sprintf("/policy?name=%s&first=%d&max=%d", url.QueryEscape(policyPrefix), first, policyPage)
			if err := get(base+q, &ps); err != nil {
				return 0, fmt.Errorf("list admin permissions: %w", err)
			}
			for _, p := range ps {
				v.policies[p.Name] = p
			}
			return len(ps), nil
		})
		if err != nil {
			return out, err
		}
	}

	for _, s := range specs {
		if d := v.compare(s); len(d) > 0 {
			if out.Suspects == nil {
				out.Suspects = map[string][]community.Drift{}
			}
			out.Suspects[s.ID] = d
		}
	}
	return out, nil
}

// surveyGroups reads the label groups under root (with their markers) and,
// with one search per member role, every member group with its role
// mappings, into groups by path; it returns the label groups for the
// orphan check. Keycloak answers a search with the matched groups' whole
// path, each group in full (attributes and realm roles).
func (c *Client) surveyGroups(ctx context.Context, get func(string, any) error, realm, root string,
	groups map[string]gocloak.Group) ([]community.Orphan, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return nil, err
	}
	rootID, err := c.rootGroup(ctx, tok, realm, root)
	if errors.Is(err, ErrNotFound) { // read-only, and no community made yet
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var labels []community.Orphan
	// Without subGroupsCount=false Keycloak counts each group's children
	// with a query of its own: 9 s instead of 0.2 s for 1,000 groups.
	err = pages(groupPage, func(first int) (int, error) {
		var page []gocloak.Group
		q := fmt.Sprintf("/groups/%s/children?briefRepresentation=false&subGroupsCount=false&first=%d&max=%d", rootID, first, groupPage)
		if err := get(pathEscape(realm)+q, &page); err != nil {
			return 0, fmt.Errorf("list community groups: %w", err)
		}
		for _, g := range page {
			path := "/" + root + "/" + deref(g.Name)
			if _, seen := groups[path]; seen { // a page boundary moved
				continue
			}
			groups[path] = g
			labels = append(labels, orphanOf(g))
		}
		return len(page), nil
	})
	if err != nil {
		return nil, err
	}
	prefix := "/" + root + "/"
	for _, member := range community.MemberRoles {
		err := pages(groupPage, func(first int) (int, error) {
			var page []gocloak.Group
			q := fmt.Sprintf("/groups?search=%s&exact=true&briefRepresentation=false&subGroupsCount=false&first=%d&max=%d",
				url.QueryEscape(member), first, groupPage)
			if err := get(pathEscape(realm)+q, &page); err != nil {
				return 0, fmt.Errorf("search groups named %s: %w", member, err)
			}
			matched := 0
			walkGroups(page, func(g gocloak.Group) {
				if deref(g.Name) != member {
					return
				}
				matched++
				if p := deref(g.Path); strings.HasPrefix(p, prefix) && strings.Count(p, "/") == 3 {
					groups[p] = g
				}
			})
			return matched, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return labels, nil
}

// pageReader GETs admin API paths into out, each with the admin token as
// it is then: a pass at 10,000 communities takes minutes, longer than a
// token lives.
func (c *Client) pageReader(ctx context.Context, realm string) func(path string, out any) error {
	return func(path string, out any) error {
		tok, err := c.token(ctx, realm)
		if err != nil {
			return err
		}
		_, err = c.raw(ctx, tok, http.MethodGet, path, nil, out)
		return err
	}
}

// walkGroups calls fn for every group of a tree Keycloak answered.
func walkGroups(gs []gocloak.Group, fn func(gocloak.Group)) {
	for _, g := range gs {
		fn(g)
		if g.SubGroups != nil {
			walkGroups(*g.SubGroups, fn)
		}
	}
}

// pages calls read with first = 0, size, 2×size, ... until a page comes
// back short.
func pages(size int, read func(first int) (int, error)) error {
	for first := 0; ; first += size {
		n, err := read(first)
		if err != nil {
			return err
		}
		if n < size {
			return nil
		}
	}
}

// compare returns how community s's artefacts in v differ from Describe(s),
// in Ensure's words; owners are not checked. It is pure.
func (v realmView) compare(s community.Spec) []community.Drift {
	var drift []community.Drift
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
		for _, want := range d.Children {
			g, ok := v.groups[want.Path]
			if !ok {
				note("group "+want.Path, problemMissing)
				continue
			}
			var mapped []string
			if g.RealmRoles != nil {
				mapped = *g.RealmRoles
			}
			for _, name := range want.Grants {
				if !slices.Contains(mapped, name) {
					note("role mapping "+want.Path+" → "+name, problemMissing)
				}
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
	if v.policies == nil {
		note("admin permissions of realm "+s.Realm, "not enabled")
		return drift
	}
	for _, want := range d.Policies {
		switch p, ok := v.policies[want.Name]; {
		case !ok:
			note("admin permission "+want.Name, problemMissing)
		case !strings.Contains(p.Description, want.Description):
			note("admin permission "+want.Name, problemForeign)
		}
	}
	return drift
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

// orphanOf is label group g with its marker.
func orphanOf(g gocloak.Group) community.Orphan {
	o := community.Orphan{Label: deref(g.Name)}
	if g.Attributes != nil && len((*g.Attributes)[MarkerAttribute]) > 0 {
		o.ID = (*g.Attributes)[MarkerAttribute][0]
	}
	return o
}
