package keycloak

import "github.com/nhs-terminology/communities/internal/community"

// The project's Keycloak extension's endpoints under a realm's admin path
// (deploy/keycloak-extension, CommunitiesResource): the survey of
// communities and the groups under the root, for the drift check and for
// deletes, and the one-transaction create of a community's roles and
// groups.
const (
	surveyPath    = "/communities/survey"
	groupsPath    = "/communities/groups"
	artefactsPath = "/communities/artefacts"
	cleanupPath   = "/communities/cleanup"
	heldPath      = "/communities/held"
	markedPath    = "/communities/marked"
	membersPath   = "/communities/members"
	policiesPath  = "/communities/policies"
	linkPath      = "/communities/policies/link"
	grantPath     = "/communities/roles/grant"
)

// removal is what the extension's POST cleanup removes: the artefacts of
// the names given that carry Marker (policies: whose description holds
// PolicyMarker), policies in the order given; an unmarked scope of Scopes
// is taken off Clients instead.
type removal struct {
	Root         string   `json:"root"`
	Attribute    string   `json:"attribute"`
	Marker       string   `json:"marker"`
	Group        string   `json:"group"`
	Roles        []string `json:"roles"`
	LegacyRoles  []string `json:"legacyRoles"`
	Policies     []string `json:"policies"`
	PolicyMarker string   `json:"policyMarker"`
	Scopes       []string `json:"scopes"`
	Clients      []string `json:"clients"`
}

// artefactsBody is what the extension's POST artefacts makes, in the admin
// API's own representations: roles, and a group with its subgroups, each
// with the realm roles it grants by name; Members names, per subgroup, the
// users to add to it.
type artefactsBody struct {
	Parent  string              `json:"parent"`
	Roles   []artefactRole      `json:"roles"`
	Group   artefactGroup       `json:"group"`
	Members map[string][]string `json:"members"`
}

type artefactRole struct {
	Name        string              `json:"name"`
	Description string              `json:"description"`
	Attributes  map[string][]string `json:"attributes"`
}

type artefactGroup struct {
	Name        string              `json:"name"`
	Description string              `json:"description,omitempty"`
	Attributes  map[string][]string `json:"attributes"`
	RealmRoles  []string            `json:"realmRoles,omitempty"`
	SubGroups   []artefactGroup     `json:"subGroups,omitempty"`
}

// artefacts is the body that makes d's roles and groups under the group of
// id parent, with owners (user ids) in its owner group. It is pure.
func (d Desired) artefacts(parent string, owners []string) artefactsBody {
	b := artefactsBody{Parent: parent, Members: map[string][]string{}, Group: groupOf(d.Group)}
	for _, r := range d.Roles {
		b.Roles = append(b.Roles, artefactRole{Name: r.Name, Description: r.Description, Attributes: d.Marker})
	}
	for _, g := range d.Children {
		b.Group.SubGroups = append(b.Group.SubGroups, groupOf(g))
		if g.Member == community.RoleOwner && len(owners) > 0 {
			b.Members[g.Name] = owners
		}
	}
	return b
}

func groupOf(g GroupSpec) artefactGroup {
	return artefactGroup{Name: g.Name, Description: g.Description, Attributes: g.Attributes, RealmRoles: g.Grants}
}
