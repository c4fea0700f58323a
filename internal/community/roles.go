package community

import (
	"context"
	"slices"
	"strings"

	"github.com/nhs-terminology/communities/internal/fault"
)

// RoleReader reads, in the identity provider, the realm roles a user holds
// now.
type RoleReader interface {
	// HeldRoles returns which of roles userID holds now, directly, through
	// a group or through a composite; an unknown or disabled user holds none.
	HeldRoles(ctx context.Context, realm, userID string, roles []string) ([]string, error)
}

// Roles names the realm roles an actor's powers come from.
type Roles struct {
	// ServiceDesk may create and delete any community, name its owners,
	// manage its members, and manage system accounts.
	ServiceDesk string
	// Creator, with API-level author access, may create communities and
	// delete those it owns.
	Creator string
}

// Confirm returns a as the identity provider sees it now: a token keeps
// the roles it was issued with until it expires, and either role may have
// been taken away since. A role the token does not claim is never added,
// and an actor whose token claims neither costs no call. An actor already
// confirmed (by an earlier step of the same operation, or because its
// authority is not a token) is returned as it is.
func (r Roles) Confirm(ctx context.Context, kc RoleReader, realm string, a Actor) (Actor, error) {
	if a.Confirmed || !a.ServiceDesk && !a.Creator {
		return a, nil
	}
	var ask []string
	if a.ServiceDesk {
		ask = append(ask, r.ServiceDesk)
	}
	if a.Creator {
		ask = append(ask, r.Creator)
	}
	held, err := kc.HeldRoles(ctx, realm, a.Subject, ask)
	if err != nil {
		return a, fault.Upstream("Keycloak could not confirm the caller's roles; nothing was changed", err)
	}
	a.ServiceDesk = a.ServiceDesk && slices.Contains(held, r.ServiceDesk)
	a.Creator = a.Creator && slices.Contains(held, r.Creator)
	a.Confirmed = true
	return a, nil
}

// takenAway names the roles token claimed that now lacks, for a refusal:
// "the service desk role", "the community creator role", or both.
func takenAway(token, now Actor) string {
	var lost []string
	if token.ServiceDesk && !now.ServiceDesk {
		lost = append(lost, "the service desk role")
	}
	if token.Creator && !now.Creator {
		lost = append(lost, "the community creator role")
	}
	switch len(lost) {
	case 0:
		return ""
	case 1:
		return lost[0] + " has been taken away since this token was issued"
	}
	return strings.Join(lost, " and ") + " have been taken away since this token was issued"
}
