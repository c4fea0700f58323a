package community

import (
	"context"
	"slices"
	"strings"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/label"
)

// Access is what a caller may do with the communities of a realm: the
// answer the admin console's Communities page asks for once, so that it
// shows what the service would allow and never guesses from the token.
// Every operation checks again when it is called.
type Access struct {
	Creator     bool
	ServiceDesk bool
	// CanCreate: may create communities (an API-level author with the
	// creator role, or service desk; Create checks the role in Keycloak
	// again).
	CanCreate bool
	// Owned are the labels of the communities whose owner group the caller
	// is in now, sorted.
	Owned []string
	// Memberships are the caller's roles (owner, author, consumer) in each
	// community they are in now, by label.
	Memberships map[string][]string
}

// Console reports whether the Communities page has anything for the
// caller: creating, managing members, or service desk's work.
func (a *Access) Console() bool { return a.CanCreate || a.ServiceDesk || len(a.Owned) > 0 }

// Access tells what a may do in realm. Its cost is one paged read of the
// caller's groups in Keycloak, one registry query, and for a token that
// claims the service desk or creator role one call to confirm it, whatever
// the number of communities.
func (s *Service) Access(ctx context.Context, realm string, a Actor) (*Access, error) {
	a, err := s.opts.Roles.Confirm(ctx, s.kc, realm, a)
	if err != nil {
		return nil, err
	}
	out := &Access{Creator: a.Creator, ServiceDesk: a.ServiceDesk, CanCreate: a.Creator && a.APIAuthor || a.ServiceDesk,
		Owned: []string{}, Memberships: map[string][]string{}}
	rows, roles, err := s.memberships(ctx, realm, a.Subject)
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		out.Memberships[row.Label] = roles[row.ID]
		if slices.Contains(roles[row.ID], RoleOwner) {
			out.Owned = append(out.Owned, row.Label)
		}
	}
	return out, nil
}

// memberships returns the active communities of realm that user is in now,
// by label, with user's roles in each by community id: one paged read of
// the user's groups and one registry query. A user without a subject (a
// token of no user) is in none.
func (s *Service) memberships(ctx context.Context, realm, user string) ([]Community, map[string][]string, error) {
	if user == "" {
		return nil, nil, nil
	}
	groups, err := s.kc.UserGroups(ctx, realm, user)
	if err != nil {
		return nil, nil, fault.Upstream("Keycloak could not list your groups", err)
	}
	// Group paths name candidates; only a registry row whose group ids
	// match makes a membership, so a group made by hand under the root
	// with a community's name counts for nothing.
	byKey := map[string][]GroupRef{}
	prefix := "/" + s.opts.RootGroup + "/"
	for _, g := range groups {
		rest, ok := strings.CutPrefix(g.Path, prefix)
		if !ok {
			continue
		}
		l, role, ok := strings.Cut(rest, "/")
		if !ok || !slices.Contains(MemberRoles, role) {
			continue
		}
		byKey[label.Key(l)] = append(byKey[label.Key(l)], g)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	rows, err := s.store.ByLabels(ctx, realm, keys)
	if err != nil {
		return nil, nil, fault.Upstream("the registry is unavailable", err)
	}
	roles := map[string][]string{}
	member := rows[:0]
	for _, row := range rows {
		ids := memberGroups(&row)
		for _, role := range MemberRoles {
			if slices.ContainsFunc(byKey[row.LabelKey], func(g GroupRef) bool { return g.ID == ids[role] }) {
				roles[row.ID] = append(roles[row.ID], role)
			}
		}
		if len(roles[row.ID]) > 0 {
			member = append(member, row)
		}
	}
	return member, roles, nil
}
