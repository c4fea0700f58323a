package keycloak

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	json "github.com/go-json-experiment/json"

	"github.com/nhs-terminology/communities/internal/community"
)

// What Keycloak does to every community at once when something realm-wide
// that they name is deleted by hand, which the survey tells apart
// (community.Survey.Shared) and MendShared mends in bulk:
//   - role:service-desk deleted: Keycloak takes it out of every aggregate
//     that names it, each community's membership-admins (unlinkedOnly);
//   - the realm role OwnerRole deleted: Keycloak takes it off every group
//     that maps it, each community's owner group, and one made again maps
//     to none.
//
// Both grant less (they fail closed), and no create or delete leaves a
// community so: a create makes a community's groups with their mappings,
// and its policies, in one transaction each.

// unlinkedOnly says whether got, a community's own policy as stored,
// differs from want only in not naming role:service-desk. It is pure.
func unlinkedOnly(want PolicySpec, got policyContent, groupPath func(string) string) bool {
	if want.Kind != "aggregate" || got.Description != want.Description || !slices.Contains(want.Policies, policyServiceDesk) ||
		!slices.Equal(slices.Sorted(slices.Values(got.Policies)), slices.Sorted(slices.Values(linkedBefore(want)))) {
		return false
	}
	got.Policies = want.Policies
	problem, _ := want.problems(got, groupPath)
	return problem == ""
}

// linkedBefore is what aggregate want names but role:service-desk.
func linkedBefore(want PolicySpec) []string {
	return slices.DeleteFunc(slices.Clone(want.Policies), func(name string) bool { return name == policyServiceDesk })
}

// linkAggregate is an aggregate policy as the extension's POST
// policies/link expects to find it before it adds the policy.
type linkAggregate struct {
	Name             string   `json:"name"`
	Description      string   `json:"description"`
	DecisionStrategy string   `json:"decisionStrategy"`
	Policies         []string `json:"policies"`
}

// markedGroup is a member group as the extension's POST roles/grant
// expects to find it (carrying the one marker given) before it maps the
// role.
type markedGroup struct {
	Path   string `json:"path"`
	Marker string `json:"marker"`
}

// grantPageSize is the owner groups a call to POST roles/grant maps the
// role to. Each costs Keycloak about 4 ms alone (it loads the group,
// maps the role, and records an admin event): a page of 500 took 2 s, and
// 11–13 s while eight creates ran, past --keycloak-timeout (10 s), so the
// repair failed whenever creates were busy. A page of 250 takes about a
// second alone. Putting role:service-desk back into 500 aggregates a call
// takes 0.5 s: those pages stay at surveyPageSize.
const grantPageSize = 250

// mend is one difference the extension is asked to mend: the community's
// id and the difference's What, by the name the extension answers with.
type mend struct{ id, what string }

// MendShared mends the differences of shared's communities that a
// realm-wide policy or role deleted by hand left (community.Survey.Shared),
// a page of communities a call to the extension for each kind (over the
// admin API, a read and a write a community): role:service-desk back into
// each aggregate (POST policies/link), OwnerRole back onto each owner
// group (POST roles/grant, grantPageSize groups a call). The extension
// changes each only if it is still as the survey found it, and says which
// it changed. It first reads the realm-wide policies again (1 call), for
// the survey that found them as they should be may be minutes old: one
// that says something else now is a conflict, and nothing is mended.
// Each page rests as the survey's do: each is one transaction of hundreds
// of writes, and sent back to back they would hold one of Keycloak's
// workers for the whole mend; so a mend of 10,000 owner groups takes
// minutes, and each page asks for the admin token anew, as the survey's
// pages do (one token would expire half-way). Once ctx ends no further
// page is sent, and the page under way runs to its end, so that what it
// returns is what Keycloak changed.
func (c *Client) MendShared(ctx context.Context, realm, root string, shared []community.SharedDrift) (map[string][]string, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return nil, err
	}
	drift, _, err := c.realmPolicyDrift(ctx, tok, realm, root)
	if err != nil {
		return nil, err
	}
	if len(drift) > 0 {
		return nil, &realmPolicyConflict{drift[0]}
	}
	var aggregates []linkAggregate
	var groups []markedGroup
	asked := map[string]mend{}
	for _, sd := range shared {
		found := func(what string) bool {
			return slices.ContainsFunc(sd.Drift, func(d community.Drift) bool { return d.What == what })
		}
		d := Describe(sd.Spec)
		for _, p := range d.Policies {
			if what := permissionWhat(p.Name); p.Kind == "aggregate" && slices.Contains(p.Policies, policyServiceDesk) && found(what) {
				aggregates = append(aggregates, linkAggregate{Name: p.Name, Description: p.Description,
					DecisionStrategy: p.Strategy, Policies: linkedBefore(p)})
				asked[p.Name] = mend{sd.Spec.ID, what}
			}
		}
		if owners := d.groupPath(community.RoleOwner); found(mappingWhat(owners, OwnerRole)) {
			groups = append(groups, markedGroup{Path: owners, Marker: sd.Spec.ID})
			asked[owners] = mend{sd.Spec.ID, mappingWhat(owners, OwnerRole)}
		}
	}
	mended := map[string][]string{}
	rest, call := pacer(ctx), context.WithoutCancel(ctx)
	note := func(names []string) {
		for _, name := range names {
			if m, ok := asked[name]; ok {
				mended[m.id] = append(mended[m.id], m.what)
			}
		}
	}
	for page := range slices.Chunk(aggregates, surveyPageSize) {
		if err := rest(); err != nil {
			return mended, err
		}
		if tok, err = c.token(ctx, realm); err != nil {
			return mended, err
		}
		body := struct {
			Policy     string          `json:"policy"`
			Aggregates []linkAggregate `json:"aggregates"`
		}{policyServiceDesk, page}
		names, err := c.changed(call, tok, realm, linkPath, "linked", body,
			"put "+policyServiceDesk+" back into the communities' admin permissions of realm "+realm)
		if note(names); err != nil {
			return mended, err
		}
	}
	for page := range slices.Chunk(groups, grantPageSize) {
		if err := rest(); err != nil {
			return mended, err
		}
		if tok, err = c.token(ctx, realm); err != nil {
			return mended, err
		}
		body := struct {
			Role      string        `json:"role"`
			Root      string        `json:"root"`
			Attribute string        `json:"attribute"`
			Groups    []markedGroup `json:"groups"`
		}{OwnerRole, root, MarkerAttribute, page}
		names, err := c.changed(call, tok, realm, grantPath, "granted", body,
			"map realm role "+OwnerRole+" to the communities' owner groups of realm "+realm)
		if note(names); err != nil {
			return mended, err
		}
	}
	return mended, nil
}

// changed posts body to the extension's path under realm (op says what it
// does, for errors) and returns the names its answer lists under key: what
// it changed.
func (c *Client) changed(ctx context.Context, tok, realm, path, key string, body any, op string) ([]string, error) {
	resp, err := c.raw(ctx, tok, http.MethodPost, pathEscape(realm)+path, body, nil)
	raw, err := extensionAnswer(op, resp, err)
	if err != nil {
		return nil, err
	}
	var rep map[string][]string
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return rep[key], nil
}
