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

// Members lists the direct members of group groupID.
func (c *Client) Members(ctx context.Context, realm, groupID string) ([]community.Member, error) {
	var out []community.Member
	err := c.eachMember(ctx, realm, groupID, func(u *gocloak.User) bool {
		out = append(out, member(u))
		return true
	})
	return out, err
}

// MembersPage lists at most max of group groupID's direct members from
// first: one call. Keycloak orders them by username.
func (c *Client) MembersPage(ctx context.Context, realm, groupID string, first, max int) ([]community.Member, error) {
	users, err := c.membersPage(ctx, realm, groupID, first, max)
	if err != nil {
		return nil, err
	}
	out := make([]community.Member, 0, len(users))
	for _, u := range users {
		out = append(out, member(u))
	}
	return out, nil
}

func (c *Client) membersPage(ctx context.Context, realm, groupID string, first, max int) ([]*gocloak.User, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return nil, err
	}
	brief := true
	users, err := c.gc.GetGroupMembers(ctx, tok, realm, groupID, gocloak.GetGroupsParams{First: &first, Max: &max, BriefRepresentation: &brief})
	if err != nil {
		return nil, classify("list members of group "+groupID, err)
	}
	return users, nil
}

func member(u *gocloak.User) community.Member {
	return community.Member{ID: deref(u.ID), Username: deref(u.Username), Enabled: u.Enabled != nil && *u.Enabled}
}

// membersQuery is what the extension's POST members reads: the direct
// members of Groups, at most Max in one answer.
type membersQuery struct {
	Groups []string `json:"groups"`
	Max    int      `json:"max"`
}

// membersAnswer: members by group id; Missing groups do not exist; More
// were not read (the answer was full), for another call.
type membersAnswer struct {
	Members map[string][]community.Member `json:"members"`
	Missing []string                      `json:"missing"`
	More    []string                      `json:"more"`
}

// What one POST members asks: groups (the extension's bound), and members
// answered, well under the extension's 50,000 so that a call stays short
// of --keycloak-timeout and a retry costs little.
const (
	membersGroupsPerCall = 1500
	membersPerCall       = 10000
)

// MembersOf lists the direct members of each of groupIDs, in calls of up
// to 1,500 groups and 10,000 members to the extension (a group that does
// not exist has no entry); a group with more members than one answer holds
// is read page by page as Members reads it.
func (c *Client) MembersOf(ctx context.Context, realm string, groupIDs []string) (map[string][]community.Member, error) {
	out := map[string][]community.Member{}
	op := "list the members of groups of realm " + realm
	for todo := groupIDs; len(todo) > 0; {
		// Asked for each call, not once: a read of many calls may outlive
		// one token (see token).
		tok, err := c.token(ctx, realm)
		if err != nil {
			return nil, err
		}
		ask := todo[:min(len(todo), membersGroupsPerCall)]
		resp, err := c.raw(ctx, tok, http.MethodPost, pathEscape(realm)+membersPath, membersQuery{Groups: ask, Max: membersPerCall}, nil)
		raw, err := extensionAnswer(op, resp, err)
		if err != nil {
			return nil, err
		}
		var a membersAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
		}
		for id, ms := range a.Members {
			out[id] = ms
		}
		rest := todo[len(ask):]
		if len(a.More) > 0 && a.More[0] == ask[0] {
			// Its first group alone is more than an answer holds.
			ms, err := c.Members(ctx, realm, ask[0])
			switch {
			case err == nil:
				out[ask[0]] = ms
			case !errors.Is(err, ErrNotFound): // else deleted meanwhile: missing
				return nil, err
			}
			a.More = a.More[1:]
		}
		if len(a.More) >= len(ask) {
			return nil, fmt.Errorf("%s: %w: the answer read none of the groups asked", op, ErrUnavailable)
		}
		todo = append(slices.Clip(a.More), rest...)
	}
	return out, nil
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
	const page = 100
	for first := 0; ; first += page {
		users, err := c.membersPage(ctx, realm, groupID, first, page)
		if err != nil {
			return err
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
// A group or user Keycloak does not have is fault.NotFound, not done: the
// group may be whole under another id than the caller holds, with the
// user still in it.
func (c *Client) RemoveMember(ctx context.Context, realm, groupID, userID string) error {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return err
	}
	return classify("remove user "+userID+" from group "+groupID, c.gc.DeleteUserFromGroup(ctx, tok, realm, userID, groupID))
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
	const page = 100
	brief := true
	var out []community.GroupRef
	for first := 0; ; first += page {
		tok, err := c.token(ctx, realm)
		if err != nil {
			return nil, err
		}
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
