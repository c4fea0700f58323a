package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/Nerzal/gocloak/v13"
)

// Drift is one way a community's artefacts differ from what they should be.
type Drift struct {
	What     string `json:"what"`               // e.g. "realm role PERM_NDD_READ"
	Problem  string `json:"problem"`            // "missing", "not this community's", ...
	Repaired bool   `json:"repaired,omitempty"` // set when Ensure fixed it
	// Critical drift widened access: a community scope was on a FHIR
	// client without its role mapping, so in every user's token.
	Critical bool `json:"critical,omitempty"`
}

func (d Drift) String() string {
	s := d.What + ": " + d.Problem
	if d.Critical {
		s = "CRITICAL " + s
	}
	if d.Repaired {
		s += " (repaired)"
	}
	return s
}

// Ensure compares a community's artefacts in Keycloak with what Provision
// makes, and with repair makes whatever is missing (roles, groups, role
// mappings, client scopes, scope mappings, default scopes on the FHIR
// clients). Artefacts that exist but belong to someone else (no marker, or
// another community's) are reported and never touched. Owners are not
// checked: membership is the owners' business.
func (c *Client) Ensure(ctx context.Context, s Spec, repair bool) ([]Drift, Artifacts, error) {
	var (
		drift []Drift
		a     Artifacts
	)
	tok, err := c.token(ctx, s.Realm)
	if err != nil {
		return nil, a, err
	}
	n := NamesFor(s.Root, s.Label)
	marker := map[string][]string{MarkerAttribute: {s.ID}}
	note := func(what, problem string, fixed bool) {
		drift = append(drift, Drift{What: what, Problem: problem, Repaired: fixed})
	}

	roles := map[string]gocloak.Role{}
	for _, name := range []string{n.ReadRole, n.WriteRole, n.OwnerRole} {
		r, err := c.gc.GetRealmRole(ctx, tok, s.Realm, name)
		switch {
		case statusOf(err) == http.StatusNotFound:
			if !repair {
				note("realm role "+name, "missing", false)
				continue
			}
			if _, err := c.gc.CreateRealmRole(ctx, tok, s.Realm, gocloak.Role{Name: gocloak.StringP(name), Attributes: &marker,
				Description: gocloak.StringP("Community " + s.Name + " (" + s.Label + ")")}); err != nil {
				return drift, a, classify("recreate realm role "+name, err)
			}
			if r, err = c.gc.GetRealmRole(ctx, tok, s.Realm, name); err != nil {
				return drift, a, classify("read realm role "+name, err)
			}
			note("realm role "+name, "missing", true)
		case err != nil:
			return drift, a, classify("read realm role "+name, err)
		case !hasMarker(r.Attributes, s.ID):
			note("realm role "+name, "exists but is not this community's", false)
			continue
		}
		roles[name] = gocloak.Role{ID: r.ID, Name: r.Name}
	}
	a.ReadRoleID, a.WriteRoleID, a.OwnerRoleID = deref(roles[n.ReadRole].ID), deref(roles[n.WriteRole].ID), deref(roles[n.OwnerRole].ID)

	if err := c.ensureGroups(ctx, tok, s, n, roles, repair, &a, note); err != nil {
		return drift, a, err
	}
	critical := func(what, problem string, contained bool) {
		drift = append(drift, Drift{What: what, Problem: problem, Repaired: contained, Critical: true})
	}
	if err := c.ensureScopes(ctx, tok, s, n, roles, repair, &a, note, critical); err != nil {
		return drift, a, err
	}
	if a.GroupID != "" && a.OwnerGroupID != "" && a.AuthorGroupID != "" && a.ConsumerGroupID != "" {
		if err := c.ensureOwnerPermissions(ctx, tok, s, a, repair, note); err != nil {
			return drift, a, err
		}
	}
	return drift, a, nil
}

// ensureOwnerPermissions checks the owners' admin console permissions and
// the owner group's OwnerRole mapping; repair makes what is missing.
func (c *Client) ensureOwnerPermissions(ctx context.Context, tok string, s Spec, a Artifacts, repair bool, note func(string, string, bool)) error {
	base, err := c.permissionsBase(ctx, tok, s.Realm)
	if errors.Is(err, errPermissionsOff) {
		note("admin permissions of realm "+s.Realm, "not enabled", false)
		return nil
	}
	if err != nil {
		return err
	}
	var missing []string
	owners, admins, view, membership := fgapNames(s.Label)
	for _, name := range []string{owners, admins, view, membership} {
		p, err := c.findPolicy(ctx, tok, base, name)
		if err != nil {
			return err
		}
		if p == nil {
			missing = append(missing, "admin permission "+name)
		} else if !strings.Contains(p.Description, markerDescription(s.ID)) {
			note("admin permission "+name, "exists but is not this community's", false)
		}
	}
	mapped, err := c.gc.GetRealmRolesByGroupID(ctx, tok, s.Realm, a.OwnerGroupID)
	if err != nil {
		return classify("read role mappings of the owner group", err)
	}
	if !slices.ContainsFunc(mapped, func(r *gocloak.Role) bool { return deref(r.Name) == OwnerRole }) {
		missing = append(missing, "role mapping "+NamesFor(s.Root, s.Label).GroupPath+"/owner → "+OwnerRole)
	}
	for _, m := range missing {
		note(m, "missing", repair)
	}
	if repair && len(missing) > 0 {
		return c.grantOwners(ctx, tok, s, a)
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (c *Client) ensureGroups(ctx context.Context, tok string, s Spec, n Names, roles map[string]gocloak.Role,
	repair bool, a *Artifacts, note func(string, string, bool)) error {
	g, err := c.gc.GetGroupByPath(ctx, tok, s.Realm, strings.TrimPrefix(n.GroupPath, "/"))
	switch {
	case statusOf(err) == http.StatusNotFound:
		if !repair {
			note("group "+n.GroupPath, "missing", false)
			return nil
		}
		rootID, err := c.rootGroup(ctx, tok, s.Realm, s.Root)
		if err != nil {
			return err
		}
		resp, err := c.raw(ctx, tok, http.MethodPost, pathEscape(s.Realm)+"/groups/"+rootID+"/children", map[string]any{
			"name": s.Label, "description": s.Name,
			"attributes": map[string][]string{MarkerAttribute: {s.ID}, "communityName": {s.Name}, "securityLabel": {s.Label}},
		}, nil)
		if err != nil {
			return fmt.Errorf("recreate group %s: %w", n.GroupPath, err)
		}
		a.GroupID = idFromLocation(resp)
		note("group "+n.GroupPath, "missing", true)
	case err != nil:
		return classify("read group "+n.GroupPath, err)
	case !hasMarker(g.Attributes, s.ID):
		note("group "+n.GroupPath, "exists but is not this community's", false)
		return nil
	default:
		a.GroupID = *g.ID
	}

	var children []gocloak.Group
	if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(s.Realm)+"/groups/"+a.GroupID+"/children?briefRepresentation=true&max=100", nil, &children); err != nil {
		return fmt.Errorf("list groups under %s: %w", n.GroupPath, err)
	}
	want := map[string][]string{
		RoleOwner: {n.OwnerRole}, RoleAuthor: {n.ReadRole, n.WriteRole}, RoleConsumer: {n.ReadRole},
	}
	ids := map[string]*string{RoleOwner: &a.OwnerGroupID, RoleAuthor: &a.AuthorGroupID, RoleConsumer: &a.ConsumerGroupID}
	marker := map[string][]string{MarkerAttribute: {s.ID}}
	for _, member := range MemberRoles {
		path := n.GroupPath + "/" + member
		idx := slices.IndexFunc(children, func(g gocloak.Group) bool { return deref(g.Name) == member })
		if idx < 0 {
			if !repair {
				note("group "+path, "missing", false)
				continue
			}
			name := member
			id, err := c.gc.CreateChildGroup(ctx, tok, s.Realm, a.GroupID, gocloak.Group{Name: &name, Attributes: &marker})
			if err != nil {
				return classify("recreate group "+path, err)
			}
			*ids[member] = id
			note("group "+path, "missing", true)
		} else {
			*ids[member] = *children[idx].ID
		}
		mapped, err := c.gc.GetRealmRolesByGroupID(ctx, tok, s.Realm, *ids[member])
		if err != nil {
			return classify("read role mappings of "+path, err)
		}
		var lacking []gocloak.Role
		for _, name := range want[member] {
			if !slices.ContainsFunc(mapped, func(r *gocloak.Role) bool { return deref(r.Name) == name }) {
				if r, ok := roles[name]; ok {
					lacking = append(lacking, r)
				}
				note("role mapping "+path+" → "+name, "missing", repair && roles[name].ID != nil)
			}
		}
		if repair && len(lacking) > 0 {
			if err := c.gc.AddRealmRoleToGroup(ctx, tok, s.Realm, *ids[member], lacking); err != nil {
				return classify("map roles to "+path, err)
			}
		}
	}
	return nil
}

type scopeRep struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes"`
}

// ensureScopes checks the community's client scopes, their role mappings
// and their place among the FHIR clients' default scopes. Keycloak puts a
// client scope with no role scope mapping into every user's token, so a
// scope is attached only once its mapping is verified, and a scope of the
// community's name found attached without it is detached at once, in
// report mode too (critical drift), whoever made it.
func (c *Client) ensureScopes(ctx context.Context, tok string, s Spec, n Names, roles map[string]gocloak.Role,
	repair bool, a *Artifacts, note func(string, string, bool), critical func(string, string, bool)) error {
	var all []scopeRep
	if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(s.Realm)+"/client-scopes", nil, &all); err != nil {
		return fmt.Errorf("list client scopes: %w", err)
	}
	type want struct {
		name, role string
		id         *string
		mapped     bool // its role scope mapping is verified
	}
	scopes := []*want{{name: n.ReadScope, role: n.ReadRole, id: &a.ReadScopeID}, {name: n.WriteScope, role: n.WriteRole, id: &a.WriteScopeID}}
	for _, w := range scopes {
		idx := slices.IndexFunc(all, func(r scopeRep) bool { return r.Name == w.name })
		scopeID := ""
		switch {
		case idx < 0 && !repair:
			note("client scope "+w.name, "missing", false)
			continue
		case idx < 0:
			id, err := c.createScope(ctx, tok, s, w.name)
			if err != nil {
				return err
			}
			*w.id, scopeID = id, id
			note("client scope "+w.name, "missing", true)
		case all[idx].Attributes[MarkerAttribute] != s.ID:
			note("client scope "+w.name, "exists but is not this community's", false)
			// Not ours to repair, but whether it is mapped decides
			// whether it may stay on the FHIR clients.
			scopeID = all[idx].ID
		default:
			*w.id, scopeID = all[idx].ID, all[idx].ID
			if all[idx].Attributes["include.in.token.scope"] != "true" {
				note("client scope "+w.name, "not included in the token's scope claim", false)
			}
		}
		var mapped []gocloak.Role
		if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(s.Realm)+"/client-scopes/"+scopeID+"/scope-mappings/realm", nil, &mapped); err != nil {
			return fmt.Errorf("read scope mappings of %s: %w", w.name, err)
		}
		w.mapped = slices.ContainsFunc(mapped, func(r gocloak.Role) bool { return deref(r.Name) == w.role })
		if w.mapped || *w.id == "" {
			continue
		}
		r, ok := roles[w.role]
		note("scope mapping "+w.name+" → "+w.role, "missing", repair && ok)
		if repair && ok {
			if err := c.gc.CreateClientScopesScopeMappingsRealmRoles(ctx, tok, s.Realm, *w.id, []gocloak.Role{r}); err != nil {
				return classify("map role to client scope "+w.name, err)
			}
			w.mapped = true
		}
	}
	for _, clientID := range s.FHIRClients {
		cid, err := c.clientUUID(ctx, tok, s.Realm, clientID)
		if err != nil {
			return err
		}
		defaults, err := c.gc.GetClientsDefaultScopes(ctx, tok, s.Realm, cid)
		if err != nil {
			return classify("read default client scopes of "+clientID, err)
		}
		for _, w := range scopes {
			i := slices.IndexFunc(defaults, func(d *gocloak.ClientScope) bool { return deref(d.Name) == w.name })
			switch {
			case i >= 0 && !w.mapped && c.opts.ReadOnly:
				critical("default client scope "+w.name+" of client "+clientID,
					"attached without its role mapping, so in every user's token; a drift check detaches it", false)
			case i >= 0 && !w.mapped:
				if err := c.detachScope(ctx, tok, s.Realm, cid, deref(defaults[i].ID)); err != nil {
					return fmt.Errorf("detach unmapped client scope %s from %s: %w", w.name, clientID, err)
				}
				critical("default client scope "+w.name+" of client "+clientID,
					"attached without its role mapping, so in every user's token; detached", true)
			case i < 0 && *w.id != "":
				// Attached only once its mapping is verified: an unmapped
				// scope would reach every user's token.
				note("default client scope "+w.name+" of client "+clientID, "missing", repair && w.mapped)
				if repair && w.mapped {
					if err := c.gc.AddDefaultScopeToClient(ctx, tok, s.Realm, cid, *w.id); err != nil {
						return classify("add default client scope "+w.name+" to "+clientID, err)
					}
				}
			}
		}
	}
	return nil
}

// detachScope removes a client scope from a client's default scopes
// (idempotent).
func (c *Client) detachScope(ctx context.Context, tok, realm, clientUUID, scopeID string) error {
	err := c.gc.RemoveDefaultScopeFromClient(ctx, tok, realm, clientUUID, scopeID)
	if statusOf(err) == http.StatusNotFound {
		return nil
	}
	return classify("remove default client scope", err)
}

// Orphan is a community group in Keycloak that no registry row accounts for.
type Orphan struct {
	Label string `json:"label"`
	ID    string `json:"id"` // the marker on it; empty if none
}

// CommunityGroups lists the groups under root with their markers, to find
// what Keycloak holds that the registry does not.
func (c *Client) CommunityGroups(ctx context.Context, realm, root string) ([]Orphan, error) {
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
	var out []Orphan
	const page = 100
	for first := 0; ; first += page {
		var groups []gocloak.Group
		q := fmt.Sprintf("/groups/%s/children?briefRepresentation=false&first=%d&max=%d", rootID, first, page)
		if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(realm)+q, nil, &groups); err != nil {
			return nil, fmt.Errorf("list community groups: %w", err)
		}
		for _, g := range groups {
			o := Orphan{Label: deref(g.Name)}
			if g.Attributes != nil && len((*g.Attributes)[MarkerAttribute]) > 0 {
				o.ID = (*g.Attributes)[MarkerAttribute][0]
			}
			out = append(out, o)
		}
		if len(groups) < page {
			return out, nil
		}
	}
}
