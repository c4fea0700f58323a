package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/community"
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

// Provision makes the artefacts Describe(s) lists in two steps: the roles,
// groups, role mappings and owners' memberships in one call to the
// project's Keycloak extension (one transaction: all made or none), then
// the four admin policies and permissions, one call each, which the
// extension leaves to Keycloak's own admin API. On error, what was made
// stays made: the caller undoes it with Cleanup, which finds it by name and
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
	var made struct {
		Roles  map[string]string `json:"roles"`
		Groups map[string]string `json:"groups"`
	}
	_, err = c.raw(ctx, tok, http.MethodPost, pathEscape(s.Realm)+artefactsPath, d.artefacts(rootID, s.Owners), &made)
	var se *StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusConflict:
		var body struct {
			ErrorMessage string `json:"errorMessage"`
		}
		if json.Unmarshal([]byte(se.Body), &body) != nil || body.ErrorMessage == "" {
			body.ErrorMessage = "a role or group of community " + s.Label
		}
		return a, &ConflictError{What: body.ErrorMessage}
	case errors.Is(err, ErrNotFound):
		c.forget(s.Realm, s.Root) // the root group may be gone
		return a, fmt.Errorf("create the artefacts of %s: %w", s.Label, err)
	case err != nil:
		return a, fmt.Errorf("create the artefacts of %s: %w", s.Label, err)
	}
	a.ReadRoleID, a.WriteRoleID = made.Roles[d.Roles[0].Name], made.Roles[d.Roles[1].Name]
	a.GroupID = made.Groups[d.Group.Path]
	for _, g := range d.Children {
		setGroupID(&a, g.Member, made.Groups[g.Path])
	}
	if a.ReadRoleID == "" || a.WriteRoleID == "" || a.GroupID == "" || a.OwnerGroupID == "" || a.AuthorGroupID == "" || a.ConsumerGroupID == "" {
		return a, fmt.Errorf("create the artefacts of %s: %w: Keycloak's answer lacks ids: %v", s.Label, ErrUnavailable, made)
	}
	if err := c.grantOwners(ctx, tok, s, d, a); err != nil {
		return a, err
	}
	return a, nil
}

// createGroup makes group g under parent and returns its id (Ensure's
// repairs; Provision makes all groups in one call).
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

// ownerRole is the realm's OwnerRole, looked up once per realm: the
// realm-wide admin permissions name it and a repair maps it (a create maps
// it by name, in the extension).
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

// forgetClient drops the cached id of realm's client clientID.
func (c *Client) forgetClient(realm, clientID string) {
	c.mu.Lock()
	delete(c.clients, realm+"/"+clientID)
	c.mu.Unlock()
}

// forget drops cached ids of realm, after a clean-up found them stale.
func (c *Client) forget(realm, root string) {
	c.mu.Lock()
	delete(c.roots, realm+"/"+root)
	c.mu.Unlock()
}

// Cleanup removes every artefact of community id (label under root) that
// carries its marker, those an earlier version made (d.Legacy) included, in
// one call to the extension and one Keycloak transaction: all of it or, on
// any error, none. It is idempotent: missing artefacts are skipped, so it
// can undo a half-made create, finish a delete that failed, or run twice.
// A group made by hand under the community's groups is kept, and so are
// the groups above it, unmarked and without role mappings; all are listed
// as foreign.
// A foreign client scope of a community scope's name is left in place but
// taken off fhirClients: once the community's roles are gone it would have
// no role mapping, and Keycloak would put it into every user's token.
func (c *Client) Cleanup(ctx context.Context, realm, root, label, id string, fhirClients []string) (community.CleanupReport, error) {
	var rep community.CleanupReport
	tok, err := c.token(ctx, realm)
	if err != nil {
		return rep, err
	}
	d := Describe(community.Spec{ID: id, Realm: realm, Root: root, Label: label})
	body := removal{Root: root, Attribute: MarkerAttribute, Marker: id, Group: label, Roles: d.RoleNames(),
		LegacyRoles: d.Legacy.Roles, PolicyMarker: markerDescription(id), Scopes: d.Legacy.Scopes, Clients: fhirClients}
	if body.Clients == nil {
		body.Clients = []string{}
	}
	// Permissions first, the reverse of the order Provision makes them:
	// they name the groups, and each names the one before it.
	for i := len(d.Policies) - 1; i >= 0; i-- {
		body.Policies = append(body.Policies, d.Policies[i].Name)
	}
	var out struct {
		Deleted []string `json:"deleted"`
		Foreign []string `json:"foreign"`
	}
	resp, err := c.raw(ctx, tok, http.MethodPost, pathEscape(realm)+cleanupPath, body, nil)
	raw, err := extensionAnswer("remove community "+label+" of realm "+realm, resp, err)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return rep, fmt.Errorf("remove community %s: %w: %w", label, ErrUnavailable, err)
	}
	rep.Deleted, rep.Foreign = out.Deleted, out.Foreign
	if group := "group " + d.Group.Path; !slices.Contains(rep.Deleted, group) && !slices.Contains(rep.Foreign, group) {
		c.forget(realm, root) // the root group may be gone too
	}
	return rep, nil
}

// hasMarker reports whether attrs mark community id's artefact: the marker
// is their one value. A second value (added by hand) makes the artefact
// nobody's, never one of two communities' (the extension's cleanup agrees).
func hasMarker(attrs *map[string][]string, id string) bool {
	return attrs != nil && slices.Equal((*attrs)[MarkerAttribute], []string{id})
}

var _ community.IdentityProvider = (*Client)(nil)
