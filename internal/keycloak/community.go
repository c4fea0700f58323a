package keycloak

import (
	"context"
	"fmt"
	"github.com/nhs-terminology/communities/internal/community"
	"net/http"
	"slices"
	"strings"

	"github.com/Nerzal/gocloak/v13"
)

// MarkerAttribute is set on every artefact a community owns, to the
// community's registry id. Clean-up deletes only what carries the right
// marker, so a role or scope someone made by hand under the same name is
// never removed, and a crashed create can be undone without knowing what
// it got as far as making.
const MarkerAttribute = "communities.id"

// Names are the Keycloak names of a community's artefacts. They follow
// Ontoserver's conventions: authorities PERM_<label>_READ|WRITE and scopes
// grouping/<label>.read|write (which the realm's token mapper makes from
// the roles). OwnerRole and the scopes name what earlier versions made
// (Legacy).
type Names struct {
	ReadRole, WriteRole, OwnerRole string
	ReadScope, WriteScope          string
	GroupPath                      string
}

// NamesFor returns the artefact names of label under root group root.
func NamesFor(root, label string) Names {
	return Names{
		ReadRole:   "PERM_" + label + "_READ",
		WriteRole:  "PERM_" + label + "_WRITE",
		OwnerRole:  "PERM_" + label + "_OWNER",
		ReadScope:  "grouping/" + label + ".read",
		WriteScope: "grouping/" + label + ".write",
		GroupPath:  "/" + root + "/" + label,
	}
}

// Provision makes the artefacts Describe(s) lists, in an order where each
// step only needs what earlier steps made. On error, what was made stays
// made: the caller undoes it with Cleanup, which finds it by name and
// marker.
func (c *Client) Provision(ctx context.Context, s community.Spec) (community.Artifacts, error) {
	var a community.Artifacts
	tok, err := c.token(ctx, s.Realm)
	if err != nil {
		return a, err
	}
	d := Describe(s)
	rootID, err := c.rootGroup(ctx, tok, s.Realm, s.Root)
	if err != nil {
		return a, err
	}
	roles, err := c.makeRoles(ctx, tok, s, d)
	if err != nil {
		return a, err
	}
	a.ReadRoleID, a.WriteRoleID = *roles[d.Roles[0].Name].ID, *roles[d.Roles[1].Name].ID
	if roles[OwnerRole], err = c.ownerRole(ctx, tok, s.Realm); err != nil {
		return a, err
	}

	if a.GroupID, err = c.createGroup(ctx, tok, s.Realm, rootID, d.Group); err != nil {
		return a, err
	}
	for _, g := range d.Children {
		id, err := c.createGroup(ctx, tok, s.Realm, a.GroupID, g)
		if err != nil {
			return a, err
		}
		setGroupID(&a, g.Member, id)
		if err := c.gc.AddRealmRoleToGroup(ctx, tok, s.Realm, id, pick(roles, g.Grants)); err != nil {
			if statusOf(err) == http.StatusNotFound { // the cached OwnerRole may be gone
				c.forgetOwnerRole(s.Realm)
			}
			return a, classify("map roles to group "+g.Path, err)
		}
	}
	if err := c.grantOwners(ctx, tok, s, d, a); err != nil {
		return a, err
	}
	for _, user := range s.Owners {
		if err := c.gc.AddUserToGroup(ctx, tok, s.Realm, user, a.OwnerGroupID); err != nil {
			return a, classify("add owner "+user+" to "+d.Children[0].Path, err)
		}
	}
	return a, nil
}

// pick returns the roles of names, in order.
func pick(roles map[string]gocloak.Role, names []string) []gocloak.Role {
	out := make([]gocloak.Role, 0, len(names))
	for _, n := range names {
		out = append(out, roles[n])
	}
	return out
}

// createGroup makes group g under parent and returns its id.
func (c *Client) createGroup(ctx context.Context, tok, realm, parent string, g GroupSpec) (string, error) {
	body := map[string]any{"name": g.Name, "attributes": g.Attributes}
	if g.Description != "" {
		body["description"] = g.Description
	}
	resp, err := c.raw(ctx, tok, http.MethodPost, pathEscape(realm)+"/groups/"+parent+"/children", body, nil)
	if statusOf(err) == http.StatusConflict {
		return "", &ConflictError{What: "group " + g.Path}
	}
	if err != nil {
		return "", fmt.Errorf("create group %s: %w", g.Path, err)
	}
	return idFromLocation(resp), nil
}

// makeRoles makes the community's realm roles, each with its marker, and
// returns them with their ids (a role mapping names a role by id). One
// POST and one GET per role, not partialImport's single call: on Keycloak
// 26.7.3 partialImport takes time in proportion to the realm's roles
// (0.7–1.0 s at 8,000 roles, against 10–30 ms for a POST), so with it every
// create grew slower as the realm grew. On error what was made stays, for
// Cleanup to find by marker.
func (c *Client) makeRoles(ctx context.Context, tok string, s community.Spec, d Desired) (map[string]gocloak.Role, error) {
	roles := map[string]gocloak.Role{}
	for _, r := range d.Roles {
		attrs := d.Marker
		_, err := c.gc.CreateRealmRole(ctx, tok, s.Realm, gocloak.Role{Name: gocloak.StringP(r.Name),
			Description: gocloak.StringP(r.Description), Attributes: &attrs})
		if statusOf(err) == http.StatusConflict {
			return nil, &ConflictError{What: "realm role " + r.Name}
		}
		if err != nil {
			return nil, classify("create realm role "+r.Name, err)
		}
		made, err := c.gc.GetRealmRole(ctx, tok, s.Realm, r.Name)
		if err != nil {
			return nil, classify("read realm role "+r.Name, err)
		}
		roles[r.Name] = gocloak.Role{ID: made.ID, Name: made.Name}
	}
	return roles, nil
}

// ownerRole is the realm's OwnerRole, looked up once per realm: every
// create maps it.
func (c *Client) ownerRole(ctx context.Context, tok, realm string) (gocloak.Role, error) {
	c.mu.Lock()
	id, ok := c.owners[realm]
	c.mu.Unlock()
	if !ok {
		r, err := c.gc.GetRealmRole(ctx, tok, realm, OwnerRole)
		if err != nil {
			return gocloak.Role{}, classify("find realm role "+OwnerRole+" (realm-export/ defines it)", err)
		}
		id = deref(r.ID)
		c.mu.Lock()
		c.owners[realm] = id
		c.mu.Unlock()
	}
	return gocloak.Role{ID: gocloak.StringP(id), Name: gocloak.StringP(OwnerRole)}, nil
}

// forgetOwnerRole drops the cached OwnerRole of realm, after Keycloak did
// not know it (someone deleted and remade it).
func (c *Client) forgetOwnerRole(realm string) {
	c.mu.Lock()
	delete(c.owners, realm)
	c.mu.Unlock()
}

// rootGroup finds or makes the top-level group all communities live under.
func (c *Client) rootGroup(ctx context.Context, tok, realm, root string) (string, error) {
	key := realm + "/" + root
	c.mu.Lock()
	id, ok := c.roots[key]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	g, err := c.gc.GetGroupByPath(ctx, tok, realm, root)
	switch {
	case err == nil:
		id = *g.ID
	case statusOf(err) != http.StatusNotFound:
		return "", classify("find root group "+root, err)
	case c.opts.ReadOnly:
		return "", fmt.Errorf("root group %s: %w", root, ErrNotFound)
	default:
		desc := "Communities: each child group is one community, with owner, author and consumer groups"
		resp, err := c.raw(ctx, tok, http.MethodPost, pathEscape(realm)+"/groups", map[string]any{"name": root, "description": desc}, nil)
		switch {
		case err == nil:
			id = idFromLocation(resp)
		case statusOf(err) == http.StatusConflict: // another replica made it first
			g, err := c.gc.GetGroupByPath(ctx, tok, realm, root)
			if err != nil {
				return "", classify("find root group "+root, err)
			}
			id = *g.ID
		default:
			return "", fmt.Errorf("create root group %s: %w", root, err)
		}
	}
	c.mu.Lock()
	c.roots[key] = id
	c.mu.Unlock()
	return id, nil
}

// clientUUID maps a clientId to Keycloak's internal id.
func (c *Client) clientUUID(ctx context.Context, tok, realm, clientID string) (string, error) {
	key := realm + "/" + clientID
	c.mu.Lock()
	id, ok := c.clients[key]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	cl, err := c.gc.GetClients(ctx, tok, realm, gocloak.GetClientsParams{ClientID: &clientID})
	if err != nil {
		return "", classify("find client "+clientID, err)
	}
	if len(cl) != 1 || cl[0].ID == nil {
		return "", fmt.Errorf("find client %s in realm %s: %w", clientID, realm, ErrNotFound)
	}
	c.mu.Lock()
	c.clients[key] = *cl[0].ID
	c.mu.Unlock()
	return *cl[0].ID, nil
}

// forget drops cached ids of realm, after a clean-up found them stale.
func (c *Client) forget(realm, root string) {
	c.mu.Lock()
	delete(c.roots, realm+"/"+root)
	c.mu.Unlock()
}

// Cleanup removes every artefact of community id (label under root) that
// carries its marker, those an earlier version made (d.Legacy) included. It
// is idempotent: missing artefacts are skipped, so it can undo a half-made
// create, finish a half-done delete, or run twice. A foreign client scope
// of a community scope's name is left in place but taken off fhirClients:
// once the community's roles are gone it would have no role mapping, and
// Keycloak would put it into every user's token.
func (c *Client) Cleanup(ctx context.Context, realm, root, label, id string, fhirClients []string) (community.CleanupReport, error) {
	var rep community.CleanupReport
	tok, err := c.token(ctx, realm)
	if err != nil {
		return rep, err
	}
	d := Describe(community.Spec{ID: id, Realm: realm, Root: root, Label: label})

	// Permissions first: they name the groups, and Keycloak would delete
	// only some of them with the groups.
	if err := c.revokeOwners(ctx, tok, realm, id, d, &rep); err != nil {
		return rep, err
	}

	var scopes []scopeRep
	if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(realm)+"/client-scopes", nil, &scopes); err != nil {
		return rep, fmt.Errorf("list client scopes: %w", err)
	}
	for _, sc := range scopes {
		if !slices.Contains(d.Legacy.Scopes, sc.Name) {
			continue
		}
		if sc.Attributes[MarkerAttribute] != id {
			for _, clientID := range fhirClients {
				cid, err := c.clientUUID(ctx, tok, realm, clientID)
				if err != nil {
					return rep, err
				}
				if err := c.detachScope(ctx, tok, realm, cid, sc.ID); err != nil {
					return rep, fmt.Errorf("detach foreign client scope %s from %s: %w", sc.Name, clientID, err)
				}
			}
			rep.Foreign = append(rep.Foreign, "client scope "+sc.Name+" (taken off the FHIR clients)")
			continue
		}
		// Keycloak detaches a deleted scope from the clients using it.
		if err := c.gc.DeleteClientScope(ctx, tok, realm, sc.ID); err != nil && statusOf(err) != http.StatusNotFound {
			return rep, classify("delete client scope "+sc.Name, err)
		}
		rep.Deleted = append(rep.Deleted, "client scope "+sc.Name)
	}

	path := d.Group.Path
	g, err := c.gc.GetGroupByPath(ctx, tok, realm, strings.TrimPrefix(path, "/"))
	switch {
	case statusOf(err) == http.StatusNotFound:
		c.forget(realm, root)
	case err != nil:
		return rep, classify("find group "+path, err)
	case !hasMarker(g.Attributes, id):
		rep.Foreign = append(rep.Foreign, "group "+path)
	default:
		// Deleting the group deletes its children; members lose the
		// membership, users stay.
		if err := c.gc.DeleteGroup(ctx, tok, realm, *g.ID); err != nil && statusOf(err) != http.StatusNotFound {
			return rep, classify("delete group "+path, err)
		}
		rep.Deleted = append(rep.Deleted, "group "+path)
	}

	for _, name := range append(d.RoleNames(), d.Legacy.Roles...) {
		r, err := c.gc.GetRealmRole(ctx, tok, realm, name)
		if statusOf(err) == http.StatusNotFound {
			continue
		}
		if err != nil {
			return rep, classify("find realm role "+name, err)
		}
		if !hasMarker(r.Attributes, id) {
			if !slices.Contains(d.Legacy.Roles, name) { // a legacy name is no longer this community's business
				rep.Foreign = append(rep.Foreign, "realm role "+name)
			}
			continue
		}
		if err := c.gc.DeleteRealmRole(ctx, tok, realm, name); err != nil && statusOf(err) != http.StatusNotFound {
			return rep, classify("delete realm role "+name, err)
		}
		rep.Deleted = append(rep.Deleted, "realm role "+name)
	}
	return rep, nil
}

func hasMarker(attrs *map[string][]string, id string) bool {
	if attrs == nil {
		return false
	}
	for _, v := range (*attrs)[MarkerAttribute] {
		if v == id {
			return true
		}
	}
	return false
}

var _ community.IdentityProvider = (*Client)(nil)
