package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/Nerzal/gocloak/v13"
)

// SystemAccountAttribute marks the confidential clients this service made
// as system-to-system accounts; only those can be listed, rotated or
// deleted through it.
const SystemAccountAttribute = "communities.systemAccount"

// SystemClient is what a system-to-system account is made of.
type SystemClient struct {
	ClientID     string
	Description  string
	Attributes   map[string]string // recorded on the client
	Organization string            // the service account user's organization attribute
	Roles        []string          // realm roles of the service account
	Scopes       []string          // default client scopes
	Claims       map[string]string // fixed claims (requesting_system, reason_for_request, ...)
}

// CreateSystemClient makes a confidential client with only the client
// credentials grant and a service account with the given roles and no
// others, and returns its secret. On error, whatever was made is removed
// again (an error says so if that failed too).
func (c *Client) CreateSystemClient(ctx context.Context, realm string, s SystemClient) (secret string, err error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return "", err
	}
	// Pending until the account holds only what its profile gives it: a
	// create whose answer is lost leaves a client that is no system
	// account, never listed, found or rotated (only deleted), so no one
	// gets a secret for an account that kept Keycloak's defaults.
	attrs := map[string]string{SystemAccountAttribute: systemAccountPending}
	for k, v := range s.Attributes {
		attrs[k] = v
	}
	var mappers []gocloak.ProtocolMapperRepresentation
	for claim, value := range s.Claims {
		mappers = append(mappers, gocloak.ProtocolMapperRepresentation{
			Name: gocloak.StringP(claim), Protocol: gocloak.StringP("openid-connect"),
			ProtocolMapper: gocloak.StringP("oidc-hardcoded-claim-mapper"),
			Config: &map[string]string{"claim.name": claim, "claim.value": value, "jsonType.label": "String",
				"access.token.claim": "true", "id.token.claim": "false", "introspection.token.claim": "true"},
		})
	}
	scopes := s.Scopes
	id, err := c.gc.CreateClient(ctx, tok, realm, gocloak.Client{
		ClientID: gocloak.StringP(s.ClientID), Name: gocloak.StringP(s.ClientID), Description: gocloak.StringP(s.Description),
		Enabled: gocloak.BoolP(true), PublicClient: gocloak.BoolP(false), ClientAuthenticatorType: gocloak.StringP("client-secret"),
		ServiceAccountsEnabled: gocloak.BoolP(true), StandardFlowEnabled: gocloak.BoolP(false),
		ImplicitFlowEnabled: gocloak.BoolP(false), DirectAccessGrantsEnabled: gocloak.BoolP(false),
		FullScopeAllowed: gocloak.BoolP(true), Protocol: gocloak.StringP("openid-connect"),
		Attributes: &attrs, ProtocolMappers: &mappers, DefaultClientScopes: &scopes, OptionalClientScopes: &[]string{},
	})
	if statusOf(err) == http.StatusConflict {
		return "", &ConflictError{What: "client " + s.ClientID}
	}
	if err != nil {
		return "", classify("create client "+s.ClientID, err)
	}
	defer func() {
		if err != nil {
			if derr := c.gc.DeleteClient(context.WithoutCancel(ctx), tok, realm, id); derr != nil {
				err = errors.Join(err, classify("remove the half-made client "+s.ClientID+" again (delete it by hand)", derr))
			}
		}
	}()
	user, err := c.gc.GetClientServiceAccount(ctx, tok, realm, id)
	if err != nil {
		return "", classify("find the service account of "+s.ClientID, err)
	}
	if err := c.onlyItsOwn(ctx, tok, realm, *user.ID); err != nil {
		return "", fmt.Errorf("%s: %w", s.ClientID, err)
	}
	if s.Organization != "" {
		user.Attributes = &map[string][]string{"organization": {s.Organization}}
		if err := c.gc.UpdateUser(ctx, tok, realm, *user); err != nil {
			return "", classify("set the organization of "+s.ClientID, err)
		}
	}
	var roles []gocloak.Role
	for _, name := range s.Roles {
		r, err := c.gc.GetRealmRole(ctx, tok, realm, name)
		if err != nil {
			return "", classify("find realm role "+name, err)
		}
		roles = append(roles, *r)
	}
	if err := c.gc.AddRealmRoleToUser(ctx, tok, realm, *user.ID, roles); err != nil {
		return "", classify("grant roles to "+s.ClientID, err)
	}
	made, err := c.gc.GetClient(ctx, tok, realm, id)
	if err != nil {
		return "", classify("read the client "+s.ClientID, err)
	}
	if made.Attributes == nil {
		made.Attributes = &map[string]string{}
	}
	(*made.Attributes)[SystemAccountAttribute] = systemAccountDone
	if err := c.gc.UpdateClient(ctx, tok, realm, *made); err != nil {
		return "", classify("mark "+s.ClientID+" a system account", err)
	}
	cred, err := c.gc.GetClientSecret(ctx, tok, realm, id)
	if err != nil {
		return "", classify("read the secret of "+s.ClientID, err)
	}
	if cred.Value == nil {
		return "", fmt.Errorf("read the secret of %s: %w: the answer holds no secret", s.ClientID, ErrUnavailable)
	}
	return *cred.Value, nil
}

// onlyItsOwn takes from the service account userID what Keycloak gives
// every new user: the realm's default roles (in the demo realm the role
// consumer, FHIR_READ and published-content with it) and its default
// groups, a default community's consumer group among them. An account
// holds what its profile says and nothing else.
func (c *Client) onlyItsOwn(ctx context.Context, tok, realm, userID string) error {
	held, err := c.gc.GetRealmRolesByUserID(ctx, tok, realm, userID)
	if err != nil {
		return classify("read the default roles of the service account", err)
	}
	if len(held) > 0 {
		roles := make([]gocloak.Role, len(held))
		for i, r := range held {
			roles[i] = *r
		}
		if err := c.gc.DeleteRealmRoleFromUser(ctx, tok, realm, userID, roles); err != nil {
			return classify("take the default roles from the service account", err)
		}
	}
	groups, err := c.UserGroups(ctx, realm, userID)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if err := c.gc.DeleteUserFromGroup(ctx, tok, realm, userID, g.ID); err != nil {
			return classify("take the service account out of default group "+g.Path, err)
		}
	}
	return nil
}

// SystemClientInfo describes a system account without its secret.
type SystemClientInfo struct {
	ID          string
	ClientID    string
	Description string
	Attributes  map[string]string
}

type clientRep struct {
	ID          string            `json:"id"`
	ClientID    string            `json:"clientId"`
	Description string            `json:"description"`
	Attributes  map[string]string `json:"attributes"`
}

// The values of SystemAccountAttribute: a finished system account, and
// one whose create has not finished (or never will).
const (
	systemAccountDone    = "true"
	systemAccountPending = "pending"
)

// system is o as a system account, and whether it is a finished one.
func (o clientRep) system() (SystemClientInfo, bool) {
	return SystemClientInfo{ID: o.ID, ClientID: o.ClientID, Description: o.Description, Attributes: o.Attributes},
		o.Attributes[SystemAccountAttribute] == systemAccountDone
}

// clientsPage is how many clients one call of SystemClients reads.
const clientsPage = 500

// SystemClients lists the system accounts of realm. Keycloak only
// searches attributes it is told are searchable, so the realm's clients
// are read a page at a time, all of them, and filtered here.
func (c *Client) SystemClients(ctx context.Context, realm string) ([]SystemClientInfo, error) {
	var res []SystemClientInfo
	for first := 0; ; first += clientsPage {
		tok, err := c.token(ctx, realm)
		if err != nil {
			return nil, err
		}
		var page []clientRep
		path := fmt.Sprintf("%s/clients?first=%d&max=%d", pathEscape(realm), first, clientsPage)
		if _, err := c.raw(ctx, tok, http.MethodGet, path, nil, &page); err != nil {
			return nil, fmt.Errorf("list system accounts: %w", err)
		}
		for _, o := range page {
			if s, ok := o.system(); ok {
				res = append(res, s)
			}
		}
		if len(page) < clientsPage {
			return res, nil
		}
	}
}

// SystemClient finds one system account by clientId, in one call;
// ErrNotFound when there is none, or the client is not a system account
// this service made.
func (c *Client) SystemClient(ctx context.Context, realm, clientID string) (*SystemClientInfo, error) {
	return c.systemClient(ctx, realm, clientID, false)
}

// systemClient is SystemClient; pending also finds a client whose create
// did not finish.
func (c *Client) systemClient(ctx context.Context, realm, clientID string, pending bool) (*SystemClientInfo, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return nil, err
	}
	// search=false: Keycloak matches the clientId exactly, not as a part.
	var found []clientRep
	path := pathEscape(realm) + "/clients?search=false&clientId=" + url.QueryEscape(clientID)
	if _, err := c.raw(ctx, tok, http.MethodGet, path, nil, &found); err != nil {
		return nil, fmt.Errorf("find system account %s: %w", clientID, err)
	}
	for _, o := range found {
		s, done := o.system()
		if s.ClientID == clientID && (done || pending && o.Attributes[SystemAccountAttribute] == systemAccountPending) {
			return &s, nil
		}
	}
	return nil, fmt.Errorf("system account %s: %w", clientID, ErrNotFound)
}

// DeleteSystemClient removes a system account (and its service account).
// One whose create did not finish is deleted too: deleting it is how its
// clientId is freed to be made again.
func (c *Client) DeleteSystemClient(ctx context.Context, realm, clientID string) error {
	s, err := c.systemClient(ctx, realm, clientID, true)
	if err != nil {
		return err
	}
	tok, err := c.token(ctx, realm)
	if err != nil {
		return err
	}
	err = c.gc.DeleteClient(ctx, tok, realm, s.ID)
	if statusOf(err) == http.StatusNotFound {
		// Found a moment ago: gone since, by this delete's own first try
		// (retried when its answer was lost) or by another.
		return nil
	}
	return classify("delete client "+clientID, err)
}

// RotateSystemClientSecret gives a system account a new secret; the old one
// stops working at once.
func (c *Client) RotateSystemClientSecret(ctx context.Context, realm, clientID string) (string, error) {
	s, err := c.SystemClient(ctx, realm, clientID)
	if err != nil {
		return "", err
	}
	tok, err := c.token(ctx, realm)
	if err != nil {
		return "", err
	}
	cred, err := c.gc.RegenerateClientSecret(ctx, tok, realm, s.ID)
	if err != nil {
		return "", classify("rotate the secret of "+clientID, err)
	}
	// Keycloak has replaced the secret; without the new one in the
	// answer, no one has it, so this must not pass for success.
	if cred.Value == nil {
		return "", fmt.Errorf("rotate the secret of %s: %w: the answer holds no secret", clientID, ErrUnavailable)
	}
	return *cred.Value, nil
}
