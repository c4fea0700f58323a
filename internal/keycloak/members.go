package keycloak

import (
	"context"
	"github.com/nhs-terminology/communities/internal/community"
	"net/http"

	"github.com/Nerzal/gocloak/v13"
)

// Members lists the direct members of group groupID.
func (c *Client) Members(ctx context.Context, realm, groupID string) ([]community.Member, error) {
	var out []community.Member
	err := c.eachMember(ctx, realm, groupID, func(u *gocloak.User) bool {
		out = append(out, community.Member{ID: deref(u.ID), Username: deref(u.Username)})
		return true
	})
	return out, err
}

// IsMember reports whether user userID is a direct member of group groupID
// and enabled: a disabled user's token works until it expires, and a
// membership it confers must not.
func (c *Client) IsMember(ctx context.Context, realm, groupID, userID string) (bool, error) {
	found := false
	err := c.eachMember(ctx, realm, groupID, func(u *gocloak.User) bool {
		found = deref(u.ID) == userID && u.Enabled != nil && *u.Enabled
		return deref(u.ID) != userID
	})
	return found, err
}

// eachMember calls fn for each direct member of group groupID, a page at a
// time, until fn returns false.
func (c *Client) eachMember(ctx context.Context, realm, groupID string, fn func(*gocloak.User) bool) error {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return err
	}
	const page = 100
	brief := true
	for first := 0; ; first += page {
		f, m := first, page
		users, err := c.gc.GetGroupMembers(ctx, tok, realm, groupID, gocloak.GetGroupsParams{First: &f, Max: &m, BriefRepresentation: &brief})
		if err != nil {
			return classify("list members of group "+groupID, err)
		}
		for _, u := range users {
			if !fn(u) {
				return nil
			}
		}
		if len(users) < page {
			return nil
		}
	}
}

// AddMember makes user a member of group (idempotent).
func (c *Client) AddMember(ctx context.Context, realm, groupID, userID string) error {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return err
	}
	return classify("add user "+userID+" to group "+groupID, c.gc.AddUserToGroup(ctx, tok, realm, userID, groupID))
}

// RemoveMember takes user out of group (idempotent: not a member is fine).
func (c *Client) RemoveMember(ctx context.Context, realm, groupID, userID string) error {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return err
	}
	err = c.gc.DeleteUserFromGroup(ctx, tok, realm, userID, groupID)
	if statusOf(err) == http.StatusNotFound {
		return nil
	}
	return classify("remove user "+userID+" from group "+groupID, err)
}

// AddDefaultGroup makes every user registered from now on a member of
// group (idempotent).
func (c *Client) AddDefaultGroup(ctx context.Context, realm, groupID string) error {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return err
	}
	return classify("make group "+groupID+" a default group", c.gc.AddDefaultGroup(ctx, tok, realm, groupID))
}

// UserGroups lists the groups user userID is a direct member of; a user
// that does not exist is in none.
func (c *Client) UserGroups(ctx context.Context, realm, userID string) ([]community.GroupRef, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return nil, err
	}
	const page = 100
	brief := true
	var out []community.GroupRef
	for first := 0; ; first += page {
		f, m := first, page
		groups, err := c.gc.GetUserGroups(ctx, tok, realm, userID, gocloak.GetGroupsParams{First: &f, Max: &m, BriefRepresentation: &brief})
		if statusOf(err) == http.StatusNotFound {
			return nil, nil
		}
		if err != nil {
			return nil, classify("list groups of user "+userID, err)
		}
		for _, g := range groups {
			out = append(out, community.GroupRef{ID: deref(g.ID), Path: deref(g.Path)})
		}
		if len(groups) < page {
			return out, nil
		}
	}
}
