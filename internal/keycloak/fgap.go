package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
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
// whether the realm-wide policies say what RealmPolicies says; with repair
// it switches the permissions on and makes the policies say it again. 2
// calls (1 while the permissions stay off); a repair adds 3 to switch
// them on, 3 to look the roles and the root group up, 1 a policy and 1
// to read them back.
func (c *Client) EnsureRealm(ctx context.Context, realm, root string, repair bool) ([]community.Drift, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return nil, err
	}
	repair = repair && !c.opts.ReadOnly
	c.mu.Lock()
	delete(c.fgap, realm)
	c.mu.Unlock()
	var drift []community.Drift
	base, err := c.permissionsBase(ctx, tok, realm, false)
	switch {
	case errors.Is(err, errPermissionsOff):
		d := permissionsOff(realm)
		if !repair {
			return []community.Drift{d}, nil
		}
		if base, err = c.permissionsBase(ctx, tok, realm, true); err != nil {
			return nil, err
		}
		d.Repaired = true
		drift = append(drift, d)
	case err != nil:
		return nil, err
	}
	policies, err := c.ensureRealmPolicies(ctx, tok, realm, root, base, repair)
	if err != nil {
		return nil, err
	}
	return append(drift, policies...), nil
}

// ensureRealmPolicies compares the realm-wide policies with RealmPolicies
// (1 call), and with repair makes each that differs say what the
// service's says, in base (the realm's admin permissions, on), and reads
// them again (1 call): what was changed widened or narrowed, for every
// community at once, who manages memberships. Only what says it now is
// reported repaired; one whose type was changed cannot be changed back
// and is left to an administrator.
func (c *Client) ensureRealmPolicies(ctx context.Context, tok, realm, root, base string, repair bool) ([]community.Drift, error) {
	drift, stored, err := c.realmPolicyDrift(ctx, tok, realm, root)
	switch {
	case errors.Is(err, errPermissionsOff):
		return []community.Drift{permissionsOff(realm)}, nil
	case err != nil || len(drift) == 0:
		return drift, err
	}
	// The next create reads them again instead of trusting them.
	c.mu.Lock()
	delete(c.fgapChecked, realm)
	c.mu.Unlock()
	if !repair {
		return drift, nil
	}
	bodies, err := c.realmPolicyBodies(ctx, tok, realm, root)
	if err != nil {
		return nil, err
	}
	for i, d := range drift {
		p := bodies[d.What]
		got, ok := stored[p.spec.Name]
		switch {
		case !ok:
			err = c.createPolicy(ctx, tok, base, p.spec.Kind, p.body, nil)
		case got.Type != p.spec.Kind:
			drift[i].Problem += problemByHand
			continue
		default:
			p.body["id"] = got.ID
			if _, err = c.raw(ctx, tok, http.MethodPut, policyKindPath(base, p.spec.Kind)+"/"+got.ID, p.body, nil); err != nil {
				err = fmt.Errorf("repair admin permission %s: %w", p.spec.Name, err)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	still, _, err := c.realmPolicyDrift(ctx, tok, realm, root)
	if err != nil {
		return nil, err
	}
	for i, d := range drift {
		drift[i].Repaired = !slices.ContainsFunc(still, func(s community.Drift) bool { return s.What == d.What })
	}
	return drift, nil
}

// realmPolicyConflict: a realm-wide admin permission does not say what the
// service made it say, so no community is built on it.
type realmPolicyConflict struct{ d community.Drift }

func (e *realmPolicyConflict) Error() string {
	return e.d.What + " " + e.d.Problem + "; 'communities reconcile --repair' makes it so again"
}

// Is makes it a conflict in the service's vocabulary.
func (e *realmPolicyConflict) Is(target error) bool { return target == fault.Conflict }

// problemChanged begins the problem of a realm-wide policy that does not
// say what RealmPolicies says.
const problemChanged = "does not say what the service made it say: "

// realmPolicyDrift reads what realm's realm-wide policies say, in one
// call, and returns how each differs from RealmPolicies (one that grants
// otherwise is critical: it may grant more), in RealmPolicies' order,
// with what those found say. With the realm's admin permissions off it is
// errPermissionsOff.
func (c *Client) realmPolicyDrift(ctx context.Context, tok, realm, root string) ([]community.Drift, map[string]policyContent, error) {
	specs, err := c.realmPolicies()
	if err != nil {
		return nil, nil, err
	}
	stored, err := c.policyContents(ctx, tok, realm, specs, "the realm-wide admin permissions")
	if err != nil {
		return nil, nil, err
	}
	var drift []community.Drift
	policyDrift(specs, stored, func(string) string { return "/" + root }, false,
		func(d community.Drift, _ PolicySpec) { drift = append(drift, d) })
	return drift, stored, nil
}

// policyContents reads what the policies and permissions of specs' names
// say in realm (what, for errors), in one call to the extension, by name;
// with the realm's admin permissions off it is errPermissionsOff.
func (c *Client) policyContents(ctx context.Context, tok, realm string, specs []PolicySpec, what string) (map[string]policyContent, error) {
	q := url.Values{}
	for _, p := range specs {
		q.Add("name", p.Name)
	}
	op := "read " + what + " of realm " + realm
	resp, err := c.raw(ctx, tok, http.MethodGet, pathEscape(realm)+policiesPath+"?"+q.Encode(), nil, nil)
	raw, err := extensionAnswer(op, resp, err)
	if err != nil {
		return nil, err
	}
	var rep struct {
		AdminPermissions bool            `json:"adminPermissions"`
		Policies         []policyContent `json:"policies"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	if !rep.AdminPermissions {
		return nil, errPermissionsOff
	}
	stored := map[string]policyContent{}
	for _, p := range rep.Policies {
		stored[p.Name] = p
	}
	return stored, nil
}

// ownPolicyDrift compares the community's own admin policies and
// permissions (d.Policies) with what those of their names in stored say
// (policyDrift). Survey and Ensure share it. It is pure.
func ownPolicyDrift(d Desired, stored map[string]policyContent, note func(community.Drift, PolicySpec)) {
	policyDrift(d.Policies, stored, d.groupPath, true, note)
}

// policyDrift notes each of specs that differs from what the policy of
// its name in stored says, with its spec: one missing; with own (a
// community's, which carry its marker), one without the marker, someone
// else's, which is never touched; and one that grants otherwise
// (PolicySpec.problems, with groupPath), critical when it may grant more.
// One that only grants less, such as an aggregate Keycloak took a deleted
// role:service-desk out of, is drift all the same. It is pure.
func policyDrift(specs []PolicySpec, stored map[string]policyContent, groupPath func(string) string, own bool,
	note func(community.Drift, PolicySpec)) {
	for _, want := range specs {
		what := permissionWhat(want.Name)
		p, ok := stored[want.Name]
		problem, widens := want.problems(p, groupPath)
		switch {
		case !ok:
			note(community.Drift{What: what, Problem: problemMissing}, want)
		case own && p.Description != want.Description && problem != "":
			// Not the community's to mend, but its own permissions may
			// name it.
			note(community.Drift{What: what, Problem: problemForeign + ", and " + problemChanged + problem, Critical: widens}, want)
		case own && p.Description != want.Description:
			note(community.Drift{What: what, Problem: problemForeign}, want)
		case problem != "":
			note(community.Drift{What: what, Problem: problemChanged + problem, Critical: widens}, want)
		}
	}
}

// policyKindPath is where Keycloak makes policies of kind (role, group,
// aggregate) or scope permissions in base; one of them is there under
// its id.
func policyKindPath(base, kind string) string {
	if kind == "scope" {
		return base + "/permission/scope"
	}
	return base + "/policy/" + kind
}

// realmPolicies is RealmPolicies for the configured service-desk role.
func (c *Client) realmPolicies() ([]PolicySpec, error) {
	if c.opts.ServiceDeskRole == "" {
		return nil, errors.New("no service-desk role is configured: the realm-wide admin permissions name it")
	}
	return RealmPolicies(c.opts.ServiceDeskRole), nil
}

// realmPolicyBody is a realm-wide policy and the representation Keycloak
// takes for it.
type realmPolicyBody struct {
	spec PolicySpec
	body map[string]any
}

// realmPolicyBodies are RealmPolicies' representations by "admin
// permission " and name, in the order to make them, with the ids of the
// roles and the root group they name: 2 calls (3 the first time in a
// realm). The roles are looked up now, not taken from the cache: a role
// deleted and made again by hand has a new id, and a policy naming the
// old one names nobody.
func (c *Client) realmPolicyBodies(ctx context.Context, tok, realm, root string) (map[string]realmPolicyBody, error) {
	specs, err := c.realmPolicies()
	if err != nil {
		return nil, err
	}
	rootID, err := c.rootGroup(ctx, tok, realm, root)
	if err != nil {
		return nil, err
	}
	c.forgetOwnerRole(realm)
	owner, err := c.ownerRole(ctx, tok, realm)
	if err != nil {
		return nil, err
	}
	sd, err := c.gc.GetRealmRole(ctx, tok, realm, c.opts.ServiceDeskRole)
	if err != nil {
		return nil, classify("find realm role "+c.opts.ServiceDeskRole, err)
	}
	roleIDs := map[string]string{OwnerRole: deref(owner.ID), c.opts.ServiceDeskRole: deref(sd.ID)}
	out := map[string]realmPolicyBody{}
	for _, p := range specs {
		out[permissionWhat(p.Name)] = realmPolicyBody{spec: p, body: p.body(func(string) string { return rootID }, roleIDs)}
	}
	return out, nil
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

// createPolicy makes a policy or permission of kind (role, group, aggregate,
// scope). When one of the same name exists already (409) it counts as made
// only if verify, given it, accepts what is stored: a stale policy of an
// earlier community of the same label may name other groups, and taking it
// as ours would give their members this community.
func (c *Client) createPolicy(ctx context.Context, tok, base, kind string, body map[string]any, verify func(*policyDetail) error) error {
	_, err := c.raw(ctx, tok, http.MethodPost, policyKindPath(base, kind), body, nil)
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
			return &ConflictError{What: permissionWhat(name)}
		}
		var d policyDetail
		if _, err := c.raw(ctx, tok, http.MethodGet, base+"/policy/"+p.ID, nil, &d); err != nil {
			return fmt.Errorf("read admin permission %s: %w", name, err)
		}
		if err := verify(&d); err != nil {
			return &ConflictError{What: permissionWhat(name) + " (" + err.Error() + ")"}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("create admin permission %v: %w", body["name"], err)
	}
	return nil
}

// ensureRealmPermissions makes the realm-wide policies and permissions
// (RealmPolicies) that are missing, and checks what they all say, at most
// once per permissionsFresh a realm (1 call; where any is missing, up to 3
// more to look the roles and the root group up, 1 a policy made and 1 to
// read them again): found by name, one made before, by
// anyone, or changed since, counts only if it says what the service's
// would. Taken as found, one that names another role would give that
// role's holders, through the permissions every create makes, every
// community's membership management: a create fails with a conflict
// naming it until a repair makes it say so again.
func (c *Client) ensureRealmPermissions(ctx context.Context, tok, realm, root string) (string, error) {
	base, err := c.permissionsBase(ctx, tok, realm, true)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	checked, ok := c.fgapChecked[realm]
	c.mu.Unlock()
	if ok && c.now().Sub(checked) < permissionsFresh {
		return base, nil
	}
	asked := c.now()
	drift, _, err := c.realmPolicyDrift(ctx, tok, realm, root)
	if err != nil {
		return "", err
	}
	if slices.ContainsFunc(drift, func(d community.Drift) bool { return d.Problem == problemMissing }) {
		bodies, err := c.realmPolicyBodies(ctx, tok, realm, root)
		if err != nil {
			return "", err
		}
		// In RealmPolicies' order: a permission names policies before it.
		// One someone makes meanwhile (409) is judged by the read below.
		for _, d := range drift {
			if d.Problem != problemMissing {
				continue
			}
			b := bodies[d.What]
			if err := c.createPolicy(ctx, tok, base, b.spec.Kind, b.body, nil); err != nil {
				return "", err
			}
		}
		if drift, _, err = c.realmPolicyDrift(ctx, tok, realm, root); err != nil {
			return "", err
		}
	}
	if len(drift) > 0 {
		return "", &realmPolicyConflict{drift[0]}
	}
	c.mu.Lock()
	c.fgapChecked[realm] = asked
	c.mu.Unlock()
	return base, nil
}

// grantOwners makes the realm-wide admin permissions if need be, then the
// community's own policies and permissions (d.Policies), which let its
// owners manage its membership in the admin console. Each carries the
// community's marker in its description.
func (c *Client) grantOwners(ctx context.Context, tok string, s community.Spec, d Desired, a community.Artifacts) error {
	base, err := c.ensureRealmPermissions(ctx, tok, s.Realm, s.Root)
	if err != nil {
		return err
	}
	verify := verifyOwnPolicy(markerDescription(s.ID), a.OwnerGroupID)
	ids := func(member string) string { return groupID(a, member) }
	for _, p := range d.Policies {
		if err := c.createPolicy(ctx, tok, base, p.Kind, p.body(ids, nil), verify); err != nil {
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
