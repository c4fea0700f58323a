package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nhs-terminology/communities/internal/community"
	"net/http"
	"net/url"
	"time"
)

// Fine-grained admin permissions (v2) let a community's owners manage its
// members in the admin console and nothing else. What was verified on the
// pinned Keycloak, and why the permissions are shaped this way, is in
// docs/keycloak-fgap.md.

// OwnerRole is the realm role every community's owner group maps: it
// carries query-users and query-groups, so owners can open the console's
// Users and Groups pages, and the realm-wide permissions below name it.
const OwnerRole = "community-owner"

// Names of the realm-wide policies and permissions (made once per realm).
const (
	policyAdmins      = "role:community-admins"
	policyServiceDesk = "role:service-desk"
	permUsers         = "users:community-admins"
	permRoot          = "groups:communities-root"
)

// policyPrefix begins the name of every per-community policy and
// permission.
const policyPrefix = "community:"

// fgapNames are the names of the per-community policies and permissions
// (Describe says what each is).
func fgapNames(label string) (owners, admins, view, membership string) {
	p := policyPrefix + label + ":"
	return p + "owners", p + "membership-admins", p + "view", p + "membership"
}

type policyRep struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// fgapEntry is a realm's admin-permissions path as found at a time.
type fgapEntry struct {
	base  string
	found time.Time
}

// permissionsFresh is how long a replica takes a realm's admin permissions
// to be on, as it found them, before it reads the setting again: someone
// may switch them off, and a create that made its owners' permissions in
// a realm where they are off would leave the owners without the console's
// membership management until a drift pass. One read a minute a realm,
// whatever the number of creates.
const permissionsFresh = time.Minute

// permissionsBase is the admin-permissions client's authorization path in
// realm. With enable (a create or a repair, never a check that only
// reports) it switches the realm's admin permissions on if they are off;
// otherwise, and for a read-only client, off is errPermissionsOff.
func (c *Client) permissionsBase(ctx context.Context, tok, realm string, enable bool) (string, error) {
	c.mu.Lock()
	e, ok := c.fgap[realm]
	c.mu.Unlock()
	if ok && c.now().Sub(e.found) < permissionsFresh {
		return e.base, nil
	}
	asked := c.now()
	var rep struct {
		AdminPermissionsEnabled bool `json:"adminPermissionsEnabled"`
		AdminPermissionsClient  *struct {
			ID string `json:"id"`
		} `json:"adminPermissionsClient"`
	}
	if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(realm), nil, &rep); err != nil {
		return "", fmt.Errorf("read realm %s: %w", realm, err)
	}
	if !rep.AdminPermissionsEnabled || rep.AdminPermissionsClient == nil {
		if c.opts.ReadOnly || !enable {
			return "", errPermissionsOff
		}
		if _, err := c.raw(ctx, tok, http.MethodPut, pathEscape(realm), map[string]any{"adminPermissionsEnabled": true}, nil); err != nil {
			return "", fmt.Errorf("enable admin permissions in realm %s: %w", realm, err)
		}
		if _, err := c.raw(ctx, tok, http.MethodGet, pathEscape(realm), nil, &rep); err != nil || rep.AdminPermissionsClient == nil {
			return "", fmt.Errorf("read admin permissions client of realm %s: %w", realm, err)
		}
	}
	base := pathEscape(realm) + "/clients/" + rep.AdminPermissionsClient.ID + "/authz/resource-server"
	c.mu.Lock()
	c.fgap[realm] = fgapEntry{base: base, found: asked}
	c.mu.Unlock()
	return base, nil
}

// errPermissionsOff: the realm's admin permissions are off and the caller
// may not switch them on.
var errPermissionsOff = errors.New("admin permissions are not enabled in the realm")

// permissionsOff is the drift of a realm whose admin permissions are off.
func permissionsOff(realm string) community.Drift {
	return community.Drift{What: "admin permissions of realm " + realm, Problem: "not enabled"}
}

// EnsureRealm reads whether realm's admin permissions are on now, not as
// this process first found them (someone may have switched them off
// since, leaving owners without the console's membership management), and
// with repair switches them on: 1 call, 4 when it repairs.
func (c *Client) EnsureRealm(ctx context.Context, realm string, repair bool) ([]community.Drift, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	delete(c.fgap, realm)
	c.mu.Unlock()
	switch _, err := c.permissionsBase(ctx, tok, realm, false); {
	case err == nil:
		return nil, nil
	case !errors.Is(err, errPermissionsOff):
		return nil, err
	}
	d := permissionsOff(realm)
	if repair && !c.opts.ReadOnly {
		if _, err := c.permissionsBase(ctx, tok, realm, true); err != nil {
			return nil, err
		}
		d.Repaired = true
	}
	return []community.Drift{d}, nil
}

// findPolicy looks a policy or permission up by exact name.
func (c *Client) findPolicy(ctx context.Context, tok, base, name string) (*policyRep, error) {
	var found []policyRep
	if _, err := c.raw(ctx, tok, http.MethodGet, base+"/policy?exact=true&name="+url.QueryEscape(name), nil, &found); err != nil {
		return nil, fmt.Errorf("find admin permission %s: %w", name, err)
	}
	for _, p := range found {
		if p.Name == name {
			return &p, nil
		}
	}
	return nil, nil
}

// communityPolicies finds the policies and permissions Describe names for
// label, each by its exact name: one call a name, whatever the realm
// holds. Keycloak's name search is a LIKE in which a label's "_" matches
// any character (A_B's finds A0B's, A1B's, …), so one search a label had
// its own crowded out of a page by look-alikes, and paging it costs calls
// in proportion to them (a label "____" matches every 4-character label).
func (c *Client) communityPolicies(ctx context.Context, tok, base string, d Desired) (map[string]policyRep, error) {
	out := map[string]policyRep{}
	for _, want := range d.Policies {
		p, err := c.findPolicy(ctx, tok, base, want.Name)
		if err != nil {
			return nil, err
		}
		if p != nil {
			out[p.Name] = *p
		}
	}
	return out, nil
}

// createPolicy makes a policy or permission of kind (role, group, aggregate,
// scope). When one of the same name exists already (409) it counts as made
// only if verify, given it, accepts what is stored: a stale policy of an
// earlier community of the same label may name other groups, and taking it
// as ours would give their members this community.
func (c *Client) createPolicy(ctx context.Context, tok, base, kind string, body map[string]any, verify func(*policyDetail) error) error {
	path := base + "/policy/" + kind
	if kind == "scope" {
		path = base + "/permission/scope"
	}
	_, err := c.raw(ctx, tok, http.MethodPost, path, body, nil)
	if statusOf(err) == http.StatusConflict {
		if verify == nil {
			return nil
		}
		name, _ := body["name"].(string)
		p, err := c.findPolicy(ctx, tok, base, name)
		if err != nil {
			return err
		}
		if p == nil {
			return &ConflictError{What: "admin permission " + name}
		}
		var d policyDetail
		if _, err := c.raw(ctx, tok, http.MethodGet, base+"/policy/"+p.ID, nil, &d); err != nil {
			return fmt.Errorf("read admin permission %s: %w", name, err)
		}
		if err := verify(&d); err != nil {
			return &ConflictError{What: "admin permission " + name + " (" + err.Error() + ")"}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("create admin permission %v: %w", body["name"], err)
	}
	return nil
}

// ensureRealmPermissions makes, once per realm, the policies and the
// permission that let every community owner and service desk see users
// and change their group membership (the user side of joining a group),
// and browse the root group in the console's group picker.
func (c *Client) ensureRealmPermissions(ctx context.Context, tok, realm, rootID string) (string, error) {
	base, err := c.permissionsBase(ctx, tok, realm, true)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	done := c.fgapReady[realm]
	c.mu.Unlock()
	if done {
		return base, nil
	}
	owner, err := c.ownerRole(ctx, tok, realm)
	if err != nil {
		return "", err
	}
	sd, err := c.gc.GetRealmRole(ctx, tok, realm, "service-desk")
	if err != nil {
		return "", classify("find realm role service-desk", err)
	}
	steps := []struct {
		kind string
		body map[string]any
	}{
		{"role", map[string]any{"name": policyAdmins, "logic": "POSITIVE",
			"description": "Holders of realm role " + OwnerRole + " or service-desk",
			"roles":       []map[string]any{{"id": *owner.ID, "required": false}, {"id": *sd.ID, "required": false}}}},
		{"role", map[string]any{"name": policyServiceDesk, "logic": "POSITIVE",
			"roles": []map[string]any{{"id": *sd.ID, "required": false}}}},
		{"scope", map[string]any{"name": permUsers, "resourceType": "Users",
			"description": "Community owners and service desk may see users and change their group membership",
			"scopes":      []string{"view", "manage-group-membership"}, "policies": []string{policyAdmins}}},
		{"scope", map[string]any{"name": permRoot, "resourceType": "Groups", "resources": []string{rootID},
			"description": "Community owners and service desk may browse the communities in the group picker",
			"scopes":      []string{"view"}, "policies": []string{policyAdmins}}},
	}
	for _, s := range steps {
		if err := c.createPolicy(ctx, tok, base, s.kind, s.body, nil); err != nil {
			return "", err
		}
	}
	c.mu.Lock()
	c.fgapReady[realm] = true
	c.mu.Unlock()
	return base, nil
}

// grantOwners makes the realm-wide admin permissions if need be, then the
// community's own policies and permissions (d.Policies), which let its
// owners manage its membership in the admin console. Each carries the
// community's marker in its description.
func (c *Client) grantOwners(ctx context.Context, tok string, s community.Spec, d Desired, a community.Artifacts) error {
	rootID, err := c.rootGroup(ctx, tok, s.Realm, s.Root)
	if err != nil {
		return err
	}
	base, err := c.ensureRealmPermissions(ctx, tok, s.Realm, rootID)
	if err != nil {
		return err
	}
	verify := verifyOwnPolicy(markerDescription(s.ID), a.OwnerGroupID)
	for _, p := range d.Policies {
		if err := c.createPolicy(ctx, tok, base, p.Kind, p.body(a), verify); err != nil {
			return err
		}
	}
	return nil
}

// policyDetail is a stored policy or permission as Keycloak's generic
// policy endpoint answers it; group policies keep their groups in config.
type policyDetail struct {
	Description string            `json:"description"`
	Config      map[string]string `json:"config"`
}

// verifyOwnPolicy accepts a stored policy only if it carries the
// community's marker and, for a group policy, names the community's owner
// group and no other (Keycloak leaves one naming none when the group is
// deleted).
func verifyOwnPolicy(desc, ownerGroupID string) func(*policyDetail) error {
	return func(d *policyDetail) error {
		if d.Description != desc {
			return errors.New("it is not this community's")
		}
		raw, ok := d.Config["groups"]
		if !ok {
			return nil
		}
		var groups []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(raw), &groups); err != nil {
			return fmt.Errorf("its groups cannot be read: %w", err)
		}
		if len(groups) != 1 || groups[0].ID != ownerGroupID {
			return errors.New("it does not name the owner group alone")
		}
		return nil
	}
}

func markerDescription(id string) string { return MarkerAttribute + "=" + id }
