package keycloak

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nhs-terminology/communities/internal/community"
)

// What a community is in Keycloak, said once. Provision makes it, Ensure
// compares Keycloak with it (and repairs), Cleanup removes what of it
// carries the community's marker; none of them names an artefact, a grant
// or a description of its own.

// RoleSpec is a realm role of a community.
type RoleSpec struct {
	Name        string
	Description string
}

// GroupSpec is one of a community's groups. Grants are the realm roles
// its members get; community.Member is "" for the label group and the member role
// (owner, author, consumer) for its children.
type GroupSpec struct {
	Name        string
	Path        string
	Member      string
	Description string
	Attributes  map[string][]string
	Grants      []string
}

// Legacy is what earlier versions made for a community and this one no
// longer does: the role PERM_<label>_OWNER, which went into owners'
// tokens though nothing reads it, and the client scopes
// grouping/<label>.read|write, attached as default scopes to every FHIR
// client, which Keycloak evaluated on every token request of the realm. A
// repair and Cleanup remove those that carry the community's marker.
type Legacy struct {
	Roles  []string
	Scopes []string
}

// PolicySpec is an admin policy or permission on the admin-permissions
// client. Groups and Resources name the community's groups by member role
// ("" is the label group); ids are known only once the groups exist.
type PolicySpec struct {
	Kind         string // role, group, aggregate or scope
	Name         string
	Description  string
	Roles        []string // role policies: realm roles named
	Groups       []string // group policies: member roles of the groups named
	Policies     []string // aggregates and permissions: policies named
	ResourceType string   // permissions
	Resources    []string // permissions: member roles of the groups named
	Scopes       []string // permissions
	Strategy     string   // aggregates: decision strategy
}

// Desired is everything a community owns in Keycloak, in the order
// Provision makes it (Cleanup removes in reverse).
type Desired struct {
	Roles    []RoleSpec // read, write
	Group    GroupSpec
	Children []GroupSpec // owner, author, consumer
	Policies []PolicySpec
	Legacy   Legacy
	Marker   map[string][]string
}

// Describe returns community s's artefacts. It is pure: no Keycloak call.
func Describe(s community.Spec) Desired {
	n := NamesFor(s.Root, s.Label)
	marker := map[string][]string{MarkerAttribute: {s.ID}}
	d := Desired{
		Marker: marker,
		Roles: []RoleSpec{
			{n.ReadRole, "Read resources labelled " + s.Label + ".read (community " + s.Name + ")"},
			{n.WriteRole, "Write resources labelled " + s.Label + ".write (community " + s.Name + ")"},
		},
		// The label group carries the community's name so that owners see
		// it in the admin console's group tree.
		Group: GroupSpec{
			Name: s.Label, Path: n.GroupPath, Description: s.Name,
			Attributes: map[string][]string{MarkerAttribute: {s.ID}, "communityName": {s.Name}, "securityLabel": {s.Label}},
		},
	}
	// Seed 003: owners manage, authors read and write, consumers read.
	// Owners get no role of their own community (nothing reads one, and it
	// would cost every owner's token bytes): OwnerRole, shared by all
	// owners, lets them open the admin console's Users and Groups pages,
	// and the admin permissions below decide what they may change.
	grants := map[string][]string{
		community.RoleOwner:    {OwnerRole},
		community.RoleAuthor:   {n.ReadRole, n.WriteRole},
		community.RoleConsumer: {n.ReadRole},
	}
	for _, member := range community.MemberRoles {
		d.Children = append(d.Children, GroupSpec{
			Name: member, Path: n.GroupPath + "/" + member, Member: member,
			Attributes: marker, Grants: grants[member],
		})
	}
	// The realm's community-privileges token mapper (deploy/keycloak-extension)
	// turns ReadRole and WriteRole into grouping/<label>.read|write scopes
	// or PERM_ authorities; a community adds nothing else to tokens.
	d.Legacy = Legacy{Roles: []string{n.OwnerRole}, Scopes: []string{n.ReadScope, n.WriteScope}}
	owners, admins, view, membership := fgapNames(s.Label)
	desc := markerDescription(s.ID)
	d.Policies = []PolicySpec{
		{Kind: "group", Name: owners, Description: desc, Groups: []string{community.RoleOwner}},
		// An aggregate, because Keycloak refuses any decision strategy but
		// UNANIMOUS on permissions: owners of this community OR service desk.
		{Kind: "aggregate", Name: admins, Description: desc, Strategy: "AFFIRMATIVE",
			Policies: []string{owners, policyServiceDesk}},
		// Seeing the groups is for every community owner: a narrower view
		// permission makes Keycloak refuse to show users who are members
		// of other communities (docs/keycloak-fgap.md).
		{Kind: "scope", Name: view, Description: desc, ResourceType: "Groups",
			Resources: []string{"", community.RoleOwner, community.RoleAuthor, community.RoleConsumer}, Scopes: []string{"view"}, Policies: []string{policyAdmins}},
		{Kind: "scope", Name: membership, Description: desc, ResourceType: "Groups",
			Resources: community.MemberRoles, Scopes: []string{"manage-membership"}, Policies: []string{admins}},
	}
	return d
}

// RoleNames are the names of the community's realm roles.
func (d Desired) RoleNames() []string {
	out := make([]string, len(d.Roles))
	for i, r := range d.Roles {
		out[i] = r.Name
	}
	return out
}

// groupPath is the path of the community's group of a member role ("" is
// the label group).
func (d Desired) groupPath(member string) string {
	for _, c := range d.Children {
		if c.Member == member {
			return c.Path
		}
	}
	return d.Group.Path
}

// RealmPolicies are the realm's own admin policies and permissions, made
// once per realm, which every community's permissions build on: community
// owners and service desk (serviceDesk, the realm role of
// --service-desk-role) may see users and change their group membership
// (the user side of joining a group), and browse the root group (Resources
// "") in the console's group picker; service desk may manage every
// community's membership. They are found by name, so the service compares
// what they say with this whenever it relies on them (PolicySpec.problems).
func RealmPolicies(serviceDesk string) []PolicySpec {
	return []PolicySpec{
		{Kind: "role", Name: policyAdmins, Description: "Holders of realm role " + OwnerRole + " or " + serviceDesk,
			Roles: []string{OwnerRole, serviceDesk}},
		{Kind: "role", Name: policyServiceDesk, Roles: []string{serviceDesk}},
		{Kind: "scope", Name: permUsers, ResourceType: "Users",
			Description: "Community owners and service desk may see users and change their group membership",
			Scopes:      []string{"view", "manage-group-membership"}, Policies: []string{policyAdmins}},
		{Kind: "scope", Name: permRoot, ResourceType: "Groups", Resources: []string{""},
			Description: "Community owners and service desk may browse the communities in the group picker",
			Scopes:      []string{"view"}, Policies: []string{policyAdmins}},
	}
}

// body is the representation Keycloak takes for p, with groupID the id of
// the group of a member role ("" the label group, or the root for a
// realm-wide permission) and roleID the ids of realm roles by name.
func (p PolicySpec) body(groupID func(member string) string, roleID map[string]string) map[string]any {
	b := map[string]any{"name": p.Name, "description": p.Description}
	switch p.Kind {
	case "role":
		b["logic"] = "POSITIVE"
		var roles []map[string]any
		for _, name := range p.Roles {
			roles = append(roles, map[string]any{"id": roleID[name], "required": false})
		}
		b["roles"] = roles
	case "group":
		b["logic"] = "POSITIVE"
		var groups []map[string]any
		for _, m := range p.Groups {
			groups = append(groups, map[string]any{"id": groupID(m), "extendChildren": false})
		}
		// Empty, not absent: a repair's PUT keeps a claim set before.
		b["groups"], b["groupsClaim"] = groups, ""
	case "aggregate":
		b["logic"], b["decisionStrategy"], b["policies"] = "POSITIVE", p.Strategy, p.Policies
	case "scope":
		// Empty, not null: a repair's PUT leaves resources as they are
		// when given none.
		resources := []string{}
		for _, m := range p.Resources {
			resources = append(resources, groupID(m))
		}
		b["resourceType"], b["resources"], b["scopes"], b["policies"] = p.ResourceType, resources, p.Scopes, p.Policies
	}
	return b
}

// policyContent is what a stored policy or permission says, as the
// extension's GET policies reads it: realm and client roles by name (a
// client's as client/role), groups by path, and resources that are
// groups as "group " and the path, each list sorted.
type policyContent struct {
	ID               string   `json:"id"`
	Name             string   `json:"name"`
	Description      string   `json:"description"`
	Type             string   `json:"type"`
	Logic            string   `json:"logic"`
	DecisionStrategy string   `json:"decisionStrategy"`
	ResourceType     string   `json:"resourceType"`
	FetchRoles       bool     `json:"fetchRoles"`
	GroupsClaim      string   `json:"groupsClaim"`
	Roles            []string `json:"roles"`
	ClientRoles      []string `json:"clientRoles"`
	Groups           []string `json:"groups"`
	Policies         []string `json:"policies"`
	Scopes           []string `json:"scopes"`
	Resources        []string `json:"resources"`
}

// problems says how got differs from p in what it grants (not its
// description), with groupPath the path of the group of a member role: ""
// if it says what p says; and whether the difference may grant more than
// p does (widens), so that what only narrows, such as the permissions
// Keycloak took a deleted group out of, is not reported as critical. A
// permission on no group in particular is Keycloak's on the resource named
// for its type (all users); one left with none at all, or whose policies
// differ (a permission needs all of them, so one fewer asks less), may
// grant more. What the service cannot judge (another type, logic or
// strategy, roles fetched from the user, groups matched in a claim) may
// too. It is pure.
func (p PolicySpec) problems(got policyContent, groupPath func(member string) string) (problem string, widens bool) {
	var out []string
	// differ notes a list that differs; what it holds more than want
	// widens, and with narrows false so does what it holds less.
	differ := func(what string, have, want []string, narrows bool) {
		have, want = slices.Sorted(slices.Values(have)), slices.Sorted(slices.Values(want))
		if slices.Equal(have, want) {
			return
		}
		out = append(out, fmt.Sprintf("%s %q, not %q", what, have, want))
		widens = widens || !narrows || slices.ContainsFunc(have, func(h string) bool { return !slices.Contains(want, h) })
	}
	same := func(what, have, want string) {
		if have != want {
			out = append(out, fmt.Sprintf("%s %q, not %q", what, have, want))
			widens = true
		}
	}
	same("type", got.Type, p.Kind)
	same("logic", got.Logic, "POSITIVE")
	var groups, resources []string
	for _, m := range p.Groups {
		groups = append(groups, groupPath(m))
	}
	for _, m := range p.Resources {
		resources = append(resources, "group "+groupPath(m))
	}
	if got.FetchRoles {
		// Roles read from the user instead of the token: not what the
		// service made, and it changes whom they match.
		out = append(out, "fetches roles")
		widens = true
	}
	if got.GroupsClaim != "" {
		// Groups read from a claim of the token instead of the user's
		// memberships: whoever can put the claim in a token matches.
		out = append(out, fmt.Sprintf("matches groups in claim %q", got.GroupsClaim))
		widens = true
	}
	policiesNarrow := true
	switch p.Kind {
	case "aggregate":
		same("decision strategy", got.DecisionStrategy, p.Strategy)
	case "scope":
		same("resource type", got.ResourceType, p.ResourceType)
		if len(resources) == 0 {
			resources = []string{p.ResourceType}
		}
		if len(got.Resources) == 0 {
			got.Resources = []string{"(none)"}
		}
		policiesNarrow = false
	}
	differ("roles", got.Roles, p.Roles, true)
	differ("client roles", got.ClientRoles, nil, true)
	differ("groups", got.Groups, groups, true)
	differ("policies", got.Policies, p.Policies, policiesNarrow)
	differ("scopes", got.Scopes, p.Scopes, true)
	differ("resources", got.Resources, resources, true)
	return strings.Join(out, "; "), widens
}

// groupID is the id of the label group ("") or of a member group.
func groupID(a community.Artifacts, member string) string {
	switch member {
	case community.RoleOwner:
		return a.OwnerGroupID
	case community.RoleAuthor:
		return a.AuthorGroupID
	case community.RoleConsumer:
		return a.ConsumerGroupID
	}
	return a.GroupID
}

// setGroupID records the id of the label group ("") or a member group.
func setGroupID(a *community.Artifacts, member, id string) {
	switch member {
	case community.RoleOwner:
		a.OwnerGroupID = id
	case community.RoleAuthor:
		a.AuthorGroupID = id
	case community.RoleConsumer:
		a.ConsumerGroupID = id
	default:
		a.GroupID = id
	}
}
