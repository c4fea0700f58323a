package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/community"
)

// Ensure compares a community's artefacts in Keycloak with Describe(s),
// and with repair makes whatever is missing (roles, groups, role mappings,
// admin permissions) and removes what an earlier version made and this
// one does not (d.Legacy). Artefacts that exist but belong to someone else
// (no marker, or another community's) are reported and never touched.
// Owners are not checked: membership is the owners' business.
func (c *Client) Ensure(ctx context.Context, s community.Spec, repair bool) ([]community.Drift, community.Artifacts, error) {
	var (
		drift []community.Drift
		a     community.Artifacts
	)
	tok, err := c.token(ctx, s.Realm)
	if err != nil {
		return nil, a, err
	}
	d := Describe(s)
	note := func(what, problem string, fixed bool) {
		drift = append(drift, community.Drift{What: what, Problem: problem, Repaired: fixed})
	}

	roles := map[string]gocloak.Role{}
	for _, want := range d.Roles {
		r, err := c.gc.GetRealmRole(ctx, tok, s.Realm, want.Name)
		switch {
		case statusOf(err) == http.StatusNotFound:
			if !repair {
				note("realm role "+want.Name, problemMissing, false)
				continue
			}
			attrs := d.Marker
			if _, err := c.gc.CreateRealmRole(ctx, tok, s.Realm, gocloak.Role{Name: gocloak.StringP(want.Name), Attributes: &attrs,
				Description: gocloak.StringP(want.Description)}); err != nil {
				return drift, a, classify("recreate realm role "+want.Name, err)
			}
			if r, err = c.gc.GetRealmRole(ctx, tok, s.Realm, want.Name); err != nil {
				return drift, a, classify("read realm role "+want.Name, err)
			}
			note("realm role "+want.Name, problemMissing, true)
		case err != nil:
			return drift, a, classify("read realm role "+want.Name, err)
		case !hasMarker(r.Attributes, s.ID):
			note("realm role "+want.Name, problemForeign, false)
			continue
		}
		roles[want.Name] = gocloak.Role{ID: r.ID, Name: r.Name}
	}
	a.ReadRoleID, a.WriteRoleID = deref(roles[d.Roles[0].Name].ID), deref(roles[d.Roles[1].Name].ID)
	if repair {
		// Only a repair maps it; a check needs only its name.
		if roles[OwnerRole], err = c.ownerRole(ctx, tok, s.Realm); err != nil {
			return drift, a, err
		}
	}

	critical := func(what, problem string, contained bool) {
		drift = append(drift, community.Drift{What: what, Problem: problem, Repaired: contained, Critical: true})
	}
	regrouped, err := c.ensureGroups(ctx, tok, s, d, roles, repair, &a, note, critical)
	if err != nil {
		return drift, a, err
	}
	if err := c.ensureLegacy(ctx, tok, s, d, repair, note, critical); err != nil {
		return drift, a, err
	}
	// Checked by name, so a report names a missing permission even when a
	// group is missing too. A permission names the groups by id, so it is
	// repaired only when every group is this community's (a repair has
	// made the missing ones by now; a foreign one stays foreign).
	groups := a.GroupID != "" && a.OwnerGroupID != "" && a.AuthorGroupID != "" && a.ConsumerGroupID != ""
	// Keycloak takes a deleted group out of the policies and permissions
	// that named it (keycloak-fgap.md), so a group this repair made anew is
	// named by none of them: they are made again around it.
	if err := c.ensureOwnerPermissions(ctx, tok, s, d, a, repair && groups, regrouped, note, critical); err != nil {
		return drift, a, err
	}
	return drift, a, nil
}

// ensureOwnerPermissions checks the community's own admin policies and
// permissions: what they say, read in one call (ownPolicyDrift). Repair
// first mends the realm-wide ones they build on (the realm's drift, which
// a repair of one community alone must mend too, as apply's of a stale
// record; a check leaves them to the drift check's reading of the realm);
// then it makes what is missing, makes what grants otherwise say what
// Describe says again (one whose type was changed is left to an
// administrator) and reads them back (1 call). With regrouped, or with one
// missing and another changed (an aggregate names its policies, so it
// cannot be put back before they exist, nor they be made beside a changed
// one), it first removes the community's own ones and makes them all
// again.
func (c *Client) ensureOwnerPermissions(ctx context.Context, tok string, s community.Spec, d Desired, a community.Artifacts,
	repair, regrouped bool, note, critical func(string, string, bool)) error {
	base, err := c.permissionsBase(ctx, tok, s.Realm, repair)
	if errors.Is(err, errPermissionsOff) {
		off := permissionsOff(s.Realm)
		note(off.What, off.Problem, false)
		return nil
	}
	if err != nil {
		return err
	}
	if repair {
		realmWide, err := c.ensureRealmPolicies(ctx, tok, s.Realm, s.Root, base, true)
		if err != nil {
			return err
		}
		for _, r := range realmWide {
			report(r, note, critical)
		}
		// The community's own build on them: made or mended beside one
		// that still says something else (its type changed, say), they
		// would grant whatever that one says. They wait, as a create does.
		if slices.ContainsFunc(realmWide, func(d community.Drift) bool { return !d.Repaired }) {
			repair = false
		}
	}
	found, err := c.ownPolicies(ctx, tok, s, d)
	if errors.Is(err, errPermissionsOff) {
		// Switched off since permissionsBase found them on.
		off := permissionsOff(s.Realm)
		note(off.What, off.Problem, false)
		return nil
	}
	if err != nil {
		return err
	}
	missing := false
	var changed []ownChange
	ownPolicyDrift(d, found, func(dr community.Drift, want PolicySpec) {
		switch {
		case dr.Problem == problemMissing:
			missing = true
			note(dr.What, dr.Problem, repair)
		case strings.HasPrefix(dr.Problem, problemChanged):
			changed = append(changed, ownChange{dr, want})
		default:
			report(dr, note, critical) // someone else's
		}
	})
	remake := repair && (regrouped || missing && len(changed) > 0)
	switch {
	case remake:
		// Permissions first: each names the policies before it.
		for i := len(d.Policies) - 1; i >= 0; i-- {
			want := d.Policies[i]
			if p, ok := found[want.Name]; ok && p.Description == want.Description {
				if _, err := c.raw(ctx, tok, http.MethodDelete, base+"/policy/"+p.ID, nil, nil); err != nil && !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("remove admin permission %s to make it again: %w", want.Name, err)
				}
				missing = true
			}
		}
	case repair && len(changed) > 0:
		if err := c.mendOwnPolicies(ctx, tok, s, d, a, base, found, changed); err != nil {
			return err
		}
	}
	if repair && missing {
		if err := c.grantOwners(ctx, tok, s, d, a); err != nil {
			return err
		}
	}
	for _, ch := range changed {
		// grantOwners made them again as Describe says, or failed.
		ch.Repaired = ch.Repaired || remake
		report(ch.Drift, note, critical)
	}
	return nil
}

// ownChange is a community's own policy or permission that grants
// otherwise than want.
type ownChange struct {
	community.Drift
	want PolicySpec
}

// report passes d to critical or note, as it is.
func report(d community.Drift, note, critical func(string, string, bool)) {
	if d.Critical {
		critical(d.What, d.Problem, d.Repaired)
	} else {
		note(d.What, d.Problem, d.Repaired)
	}
}

// ownPolicies reads what the community's own policies and permissions
// say, in one call.
func (c *Client) ownPolicies(ctx context.Context, tok string, s community.Spec, d Desired) (map[string]policyContent, error) {
	return c.policyContents(ctx, tok, s.Realm, d.Policies, "the admin permissions of community "+s.Label)
}

// mendOwnPolicies makes the community's own policies and permissions of
// changed (found as they were) say what Describe says again, one call
// each, and reads them back: only what says it then is repaired. One
// whose type was changed cannot be changed back and is left to an
// administrator.
func (c *Client) mendOwnPolicies(ctx context.Context, tok string, s community.Spec, d Desired, a community.Artifacts,
	base string, found map[string]policyContent, changed []ownChange) error {
	ids := func(member string) string { return groupID(a, member) }
	put := false
	for i, ch := range changed {
		got := found[ch.want.Name]
		if got.Type != ch.want.Kind {
			changed[i].Problem += problemByHand
			continue
		}
		body := ch.want.body(ids, nil)
		body["id"] = got.ID
		if _, err := c.raw(ctx, tok, http.MethodPut, policyKindPath(base, ch.want.Kind)+"/"+got.ID, body, nil); err != nil {
			return fmt.Errorf("repair admin permission %s: %w", ch.want.Name, err)
		}
		put = true
	}
	if !put {
		return nil
	}
	now, err := c.ownPolicies(ctx, tok, s, d)
	if errors.Is(err, errPermissionsOff) {
		return nil // switched off meanwhile: none is known to say it
	}
	if err != nil {
		return err
	}
	var still []string
	ownPolicyDrift(d, now, func(dr community.Drift, _ PolicySpec) { still = append(still, dr.What) })
	for i := range changed {
		changed[i].Repaired = !slices.Contains(still, changed[i].What)
	}
	return nil
}

// deref is what p points to, or the zero value if it is nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// ensureGroups checks the label group, its member groups and their role
// grants; repair makes what is missing and takes off what the community
// did not grant (critical: the group passes it on to its members), and
// made says whether it made a group. Groups made by hand under a member
// group are reported (critical too) and left: they are not the
// community's to remove.
func (c *Client) ensureGroups(ctx context.Context, tok string, s community.Spec, d Desired, roles map[string]gocloak.Role,
	repair bool, a *community.Artifacts, note, critical func(string, string, bool)) (made bool, err error) {
	g, gerr := c.gc.GetGroupByPath(ctx, tok, s.Realm, strings.TrimPrefix(d.Group.Path, "/"))
	switch {
	case statusOf(gerr) == http.StatusNotFound:
		if !repair {
			note("group "+d.Group.Path, problemMissing, false)
			return false, nil
		}
		rootID, err := c.rootGroup(ctx, tok, s.Realm, s.Root)
		if err != nil {
			return false, err
		}
		if a.GroupID, err = c.createGroup(ctx, tok, s.Realm, rootID, d.Group); err != nil {
			return false, fmt.Errorf("recreate: %w", err)
		}
		made = true
		note("group "+d.Group.Path, problemMissing, true)
	case gerr != nil:
		return false, classify("read group "+d.Group.Path, gerr)
	case !hasMarker(g.Attributes, s.ID):
		note("group "+d.Group.Path, problemForeign, false)
		return false, nil
	default:
		a.GroupID = *g.ID
		m, err := c.mappings(ctx, tok, s.Realm, d.Group.Path, a.GroupID)
		if err != nil {
			return false, err
		}
		if err := c.ungrant(ctx, tok, s.Realm, d.Group.Path, a.GroupID, m, d.Legacy.Roles, repair, critical); err != nil {
			return false, err
		}
	}

	var children []childGroup
	if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(s.Realm)+"/groups/"+a.GroupID+"/children?briefRepresentation=false&max=100", nil, &children); err != nil {
		return made, fmt.Errorf("list groups under %s: %w", d.Group.Path, err)
	}
	for _, want := range d.Children {
		idx := slices.IndexFunc(children, func(g childGroup) bool { return g.Name == want.Name })
		if idx < 0 {
			if !repair {
				note("group "+want.Path, problemMissing, false)
				continue
			}
			id, err := c.createGroup(ctx, tok, s.Realm, a.GroupID, want)
			if err != nil {
				return made, fmt.Errorf("recreate: %w", err)
			}
			made = true
			setGroupID(a, want.Member, id)
			note("group "+want.Path, problemMissing, true)
		} else {
			// A group of the member's name that is not this community's
			// (made by hand in the place of one deleted) is reported, and
			// neither recorded as the community's nor given its roles: the
			// admin permissions name the community's own.
			if !hasMarker(&children[idx].Attributes, s.ID) {
				note("group "+want.Path, problemForeign, false)
				continue
			}
			setGroupID(a, want.Member, children[idx].ID)
			if children[idx].SubGroupCount > 0 {
				critical("group "+want.Path, problemBelow, false)
			}
		}
		id := groupID(*a, want.Member)
		m, err := c.mappings(ctx, tok, s.Realm, want.Path, id)
		if err != nil {
			return made, err
		}
		// An earlier version's owner role goes with the role (ensureLegacy).
		if err := c.ungrant(ctx, tok, s.Realm, want.Path, id, m, slices.Concat(want.Grants, d.Legacy.Roles), repair, critical); err != nil {
			return made, err
		}
		mapped := deref(m.RealmMappings)
		var lacking []gocloak.Role
		for _, name := range want.Grants {
			if !slices.ContainsFunc(mapped, func(r gocloak.Role) bool { return deref(r.Name) == name }) {
				r, ok := roles[name]
				if ok {
					lacking = append(lacking, r)
				}
				note(mappingWhat(want.Path, name), problemMissing, repair && ok)
			}
		}
		if repair && len(lacking) > 0 {
			if err := c.gc.AddRealmRoleToGroup(ctx, tok, s.Realm, id, lacking); err != nil {
				if statusOf(err) == http.StatusNotFound { // the cached OwnerRole may be gone
					c.forgetOwnerRole(s.Realm)
				}
				return made, classify("map roles to "+want.Path, err)
			}
		}
	}
	return made, nil
}

// childGroup is a group as Keycloak lists the children of a group.
type childGroup struct {
	ID            string              `json:"id"`
	Name          string              `json:"name"`
	SubGroupCount int                 `json:"subGroupCount"`
	Attributes    map[string][]string `json:"attributes"`
}

// mappings reads the realm and client role mappings of group id (at path).
func (c *Client) mappings(ctx context.Context, tok, realm, path, id string) (*gocloak.MappingsRepresentation, error) {
	m, err := c.gc.GetRoleMappingByGroupID(ctx, tok, realm, id)
	if err != nil {
		return nil, classify("read role mappings of "+path, err)
	}
	return m, nil
}

// ungrant reports the roles m maps to group id (at path) that are not in
// grants, and with repair takes them off, but for the admin roles of
// adminClient: Keycloak refuses the service's account to take those off a
// group, even the ones it holds (tried, 403), so they are left to an
// administrator.
func (c *Client) ungrant(ctx context.Context, tok, realm, path, id string, m *gocloak.MappingsRepresentation, grants []string,
	repair bool, critical func(string, string, bool)) error {
	var realmNames []string
	for _, r := range deref(m.RealmMappings) {
		realmNames = append(realmNames, deref(r.Name))
	}
	clientNames := map[string][]string{}
	for client, cm := range m.ClientMappings {
		if cm != nil {
			for _, r := range deref(cm.Mappings) {
				clientNames[client] = append(clientNames[client], deref(r.Name))
			}
		}
	}
	ungranted(path, realmNames, clientNames, grants, func(what, problem string) {
		critical(what, problem, repair && problem == problemGranted)
	})
	if !repair {
		return nil
	}
	var off []gocloak.Role
	for _, r := range deref(m.RealmMappings) {
		if !slices.Contains(grants, deref(r.Name)) {
			off = append(off, r)
		}
	}
	if len(off) > 0 {
		if err := c.gc.DeleteRealmRoleFromGroup(ctx, tok, realm, id, off); err != nil {
			return classify("take ungranted realm roles off "+path, err)
		}
	}
	for client, cm := range m.ClientMappings {
		if client == adminClient || cm == nil || len(deref(cm.Mappings)) == 0 {
			continue
		}
		if err := c.gc.DeleteClientRoleFromGroup(ctx, tok, realm, deref(cm.ID), id, deref(cm.Mappings)); err != nil {
			return classify("take client roles of "+client+" off "+path, err)
		}
	}
	return nil
}

type scopeRep struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes"`
}

// ensureLegacy looks for what an earlier version made for the community
// and this one does not (d.Legacy); a repair deletes what carries the
// community's marker. Keycloak puts a client scope with no role scope
// mapping into every user's token, so a scope of a legacy name, whoever
// made it, found among a FHIR client's default scopes without its role
// mapping is detached at once, in report mode too (critical drift).
func (c *Client) ensureLegacy(ctx context.Context, tok string, s community.Spec, d Desired,
	repair bool, note func(string, string, bool), critical func(string, string, bool)) error {
	for _, name := range d.Legacy.Roles {
		r, err := c.gc.GetRealmRole(ctx, tok, s.Realm, name)
		switch {
		case statusOf(err) == http.StatusNotFound:
			continue
		case err != nil:
			return classify("read realm role "+name, err)
		case !hasMarker(r.Attributes, s.ID):
			continue // someone else's role: not this community's business
		}
		note("realm role "+name, problemEarlier, repair)
		if repair {
			if err := c.gc.DeleteRealmRole(ctx, tok, s.Realm, name); err != nil && statusOf(err) != http.StatusNotFound {
				return classify("delete realm role "+name, err)
			}
		}
	}

	var all []scopeRep
	if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(s.Realm)+"/client-scopes", nil, &all); err != nil {
		return fmt.Errorf("list client scopes: %w", err)
	}
	n := NamesFor(s.Root, s.Label)
	roleOf := map[string]string{n.ReadScope: n.ReadRole, n.WriteScope: n.WriteRole}
	for _, sc := range all {
		if !slices.Contains(d.Legacy.Scopes, sc.Name) {
			continue
		}
		var mapped []gocloak.Role
		if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(s.Realm)+"/client-scopes/"+sc.ID+"/scope-mappings/realm", nil, &mapped); err != nil {
			return fmt.Errorf("read scope mappings of %s: %w", sc.Name, err)
		}
		if !slices.ContainsFunc(mapped, func(r gocloak.Role) bool { return deref(r.Name) == roleOf[sc.Name] }) {
			if err := c.detachUnmapped(ctx, tok, s, sc, critical); err != nil {
				return err
			}
		}
		if sc.Attributes[MarkerAttribute] != s.ID {
			continue
		}
		note("client scope "+sc.Name, problemEarlier, repair)
		// Keycloak detaches a deleted scope from the clients using it.
		if repair {
			if err := c.gc.DeleteClientScope(ctx, tok, s.Realm, sc.ID); err != nil && statusOf(err) != http.StatusNotFound {
				return classify("delete client scope "+sc.Name, err)
			}
		}
	}
	return nil
}

// detachUnmapped takes client scope sc, which has no role mapping, off the
// FHIR clients' default scopes; a read-only client only reports it.
func (c *Client) detachUnmapped(ctx context.Context, tok string, s community.Spec, sc scopeRep, critical func(string, string, bool)) error {
	for _, clientID := range s.FHIRClients {
		cid, err := c.clientUUID(ctx, tok, s.Realm, clientID)
		if err != nil {
			return err
		}
		defaults, err := c.gc.GetClientsDefaultScopes(ctx, tok, s.Realm, cid)
		if statusOf(err) == http.StatusNotFound {
			// The client was made again under a new id since it was
			// looked up: look again, or every check fails until a restart.
			c.forgetClient(s.Realm, clientID)
			if cid, err = c.clientUUID(ctx, tok, s.Realm, clientID); err != nil {
				return err
			}
			defaults, err = c.gc.GetClientsDefaultScopes(ctx, tok, s.Realm, cid)
		}
		if err != nil {
			return classify("read default client scopes of "+clientID, err)
		}
		if !slices.ContainsFunc(defaults, func(d *gocloak.ClientScope) bool { return deref(d.ID) == sc.ID }) {
			continue
		}
		what := "default client scope " + sc.Name + " of client " + clientID
		if c.opts.ReadOnly {
			critical(what, "attached without its role mapping, so in every user's token; a drift check detaches it", false)
			continue
		}
		if err := c.detachScope(ctx, tok, s.Realm, cid, sc.ID); err != nil {
			return fmt.Errorf("detach unmapped client scope %s from %s: %w", sc.Name, clientID, err)
		}
		critical(what, "attached without its role mapping, so in every user's token; detached", true)
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
