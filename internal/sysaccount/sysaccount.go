// Package sysaccount issues system-to-system accounts (seed 002): a
// confidential client with only the client-credentials grant, whose
// service account's roles and scopes follow from the account's purpose and
// the content it may see. The mapping is the Profiles table below, and
// docs/system-accounts.md repeats it.
package sysaccount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/keycloak"
	"github.com/nhs-terminology/communities/internal/registry"
)

// Content a system account may see (seed 002).
const (
	Published   = "published"
	Unpublished = "unpublished"
)

// Profile is what an account of one purpose and content access gets.
type Profile struct {
	Roles  []string // realm roles of the service account
	Scopes []string // client scopes in its tokens, besides the base ones
	// Reason is the fixed reason_for_request claim (seed 004), if any.
	Reason string
}

// baseScopes every system account's tokens have: realm roles (and the
// authorities claim), provenance claims and the audience of this service.
var baseScopes = []string{"basic", "roles", "provenance", "communities-audience"}

// Profiles maps purpose → content → what the account gets. A missing entry
// is a combination seed 002 does not offer.
var Profiles = map[string]map[string]Profile{
	// "syndication of content to your system": read.
	"syndication": {
		Published:   {Roles: []string{"FHIR_READ", "published-content"}, Scopes: []string{"system/*.read"}},
		Unpublished: {Roles: []string{"FHIR_READ", "published-content", "unpublished-content"}, Scopes: []string{"system/*.read"}},
	},
	// "read-only access to content".
	"consumer": {
		Published:   {Roles: []string{"FHIR_READ", "published-content"}, Scopes: []string{"system/*.read"}},
		Unpublished: {Roles: []string{"FHIR_READ", "published-content", "unpublished-content"}, Scopes: []string{"system/*.read"}},
	},
	// "read and write permissions to non-published content, read-only
	// permissions to published content".
	"authoring": {
		Unpublished: {Roles: []string{"FHIR_READ", "FHIR_WRITE", "published-content", "unpublished-content", "unpublished-authoring"},
			Scopes: []string{"system/*.read", "system/*.write"}},
	},
	// "read-only permissions to published content", for direct care.
	"direct-care": {
		Published: {Roles: []string{"FHIR_READ", "published-content"}, Scopes: []string{"system/*.read"}, Reason: "directcare"},
	},
}

// Request asks for a system account.
type Request struct {
	ClientID      string `json:"clientId"`
	Description   string `json:"description"`
	Purpose       string `json:"purpose"`
	Content       string `json:"content"`
	Justification string `json:"justification,omitempty"`
	Organization  string `json:"organization,omitempty"`
}

// Account is a system account as the API shows it: never with its secret.
type Account struct {
	ClientID      string `json:"clientId"`
	Description   string `json:"description"`
	Purpose       string `json:"purpose"`
	Content       string `json:"content"`
	Organization  string `json:"organization,omitempty"`
	Justification string `json:"justification,omitempty"`
	CreatedBy     string `json:"createdBy,omitempty"`
}

// Errors the API maps to statuses.
var (
	ErrInvalid   = fault.Sentinel(fault.Invalid, "invalid system account request")
	ErrForbidden = fault.Sentinel(fault.Forbidden, "forbidden")
	ErrNotFound  = fault.Sentinel(fault.NotFound, "system account not found")
	ErrDuplicate = fault.Sentinel(fault.Conflict, "client already exists")
)

var (
	clientIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{2,62}$`)
	orgPattern      = regexp.MustCompile(`^[A-Za-z0-9 ._-]{1,64}$`)
)

// Validate checks r and returns the profile it gets.
func Validate(r Request) (Profile, error) {
	if !clientIDPattern.MatchString(r.ClientID) {
		return Profile{}, fmt.Errorf("%w: clientId must be 3-63 lower-case letters, digits and '-'", ErrInvalid)
	}
	if utf8.RuneCountInString(r.Description) > 255 || strings.ContainsFunc(r.Description, isControl) {
		return Profile{}, fmt.Errorf("%w: description: at most 255 characters, no control characters", ErrInvalid)
	}
	if r.Organization != "" && !orgPattern.MatchString(r.Organization) {
		return Profile{}, fmt.Errorf("%w: organization: 1-64 letters, digits, spaces and . _ -", ErrInvalid)
	}
	byContent, ok := Profiles[r.Purpose]
	if !ok {
		return Profile{}, fmt.Errorf("%w: purpose must be syndication, consumer, authoring or direct-care", ErrInvalid)
	}
	p, ok := byContent[r.Content]
	if !ok {
		var allowed []string
		for c := range byContent {
			allowed = append(allowed, c)
		}
		return Profile{}, fmt.Errorf("%w: purpose %s offers content %s only (seed 002)", ErrInvalid, r.Purpose, strings.Join(allowed, " or "))
	}
	if r.Content == Unpublished && len(strings.TrimSpace(r.Justification)) < 20 {
		return Profile{}, fmt.Errorf("%w: access to unpublished content needs a justification of at least 20 characters (seed 002: it gets increased scrutiny)", ErrInvalid)
	}
	if utf8.RuneCountInString(r.Justification) > 2000 || strings.ContainsFunc(r.Justification, isControl) {
		return Profile{}, fmt.Errorf("%w: justification: at most 2000 characters, no control characters", ErrInvalid)
	}
	return p, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Keycloak is what the service needs of Keycloak.
type Keycloak interface {
	community.RoleReader
	CreateSystemClient(ctx context.Context, realm string, s keycloak.SystemClient) (string, error)
	SystemClients(ctx context.Context, realm string) ([]keycloak.SystemClientInfo, error)
	SystemClient(ctx context.Context, realm, clientID string) (*keycloak.SystemClientInfo, error)
	DeleteSystemClient(ctx context.Context, realm, clientID string) error
	RotateSystemClientSecret(ctx context.Context, realm, clientID string) (string, error)
}

// Service issues, lists, rotates and deletes system accounts; only service
// desk may, and every change is audited.
type Service struct {
	kc    Keycloak
	roles community.Roles
	store *registry.Store
	log   *slog.Logger
}

// New builds a Service.
func New(kc Keycloak, roles community.Roles, store *registry.Store, log *slog.Logger) *Service {
	return &Service{kc: kc, roles: roles, store: store, log: log}
}

// audit records a change, or an attempt; a failed write is logged, since
// the change itself has happened in Keycloak and cannot be taken back.
func (s *Service) audit(ctx context.Context, realm, action string, a community.Actor, clientID, outcome, detail string) {
	if err := s.store.Audit(context.WithoutCancel(ctx), &community.AuditEvent{Realm: realm, Action: action, Label: clientID,
		ActorSub: a.Subject, ActorClient: a.ClientID, ActorUsername: a.Username, RequestID: a.RequestID,
		Outcome: outcome, Detail: detail, Claims: community.Claims(a.Claims)}); err != nil {
		s.log.ErrorContext(ctx, "audit write failed", "action", action, "client", clientID, "outcome", outcome, "error", err)
	}
}

// mayManage: service desk, as Keycloak sees the caller now (the token
// may predate the role's removal).
func (s *Service) mayManage(ctx context.Context, realm string, a community.Actor) error {
	if !a.ServiceDesk {
		return fmt.Errorf("%w: only service desk manages system accounts", ErrForbidden)
	}
	held, err := s.roles.Confirm(ctx, s.kc, realm, a)
	if err != nil {
		return err
	}
	if !held.ServiceDesk {
		return fmt.Errorf("%w: the service desk role has been taken away since this token was issued", ErrForbidden)
	}
	return nil
}

// denied records a refusal by mayManage; a failure to confirm is not one.
func (s *Service) denied(ctx context.Context, realm, action string, a community.Actor, clientID string, err error) {
	if errors.Is(err, ErrForbidden) {
		s.audit(ctx, realm, action, a, clientID, "denied", err.Error())
	}
}

// Create issues an account and returns it with its secret, which is shown
// this once and never again.
func (s *Service) Create(ctx context.Context, realm string, a community.Actor, r Request) (Account, string, error) {
	if err := s.mayManage(ctx, realm, a); err != nil {
		s.denied(ctx, realm, "create-system-account", a, r.ClientID, err)
		return Account{}, "", err
	}
	p, err := Validate(r)
	if err != nil {
		return Account{}, "", err
	}
	claims := map[string]string{"requesting_system": r.ClientID}
	if p.Reason != "" {
		claims["reason_for_request"] = p.Reason
	}
	attrs := map[string]string{"communities.purpose": r.Purpose, "communities.content": r.Content,
		"communities.organization": r.Organization, "communities.createdBy": a.Username}
	if r.Content == Unpublished {
		attrs["communities.justification"] = r.Justification
	}
	secret, err := s.kc.CreateSystemClient(ctx, realm, keycloak.SystemClient{
		ClientID: r.ClientID, Description: r.Description, Attributes: attrs, Organization: r.Organization,
		Roles: p.Roles, Scopes: append(append([]string{}, baseScopes...), p.Scopes...), Claims: claims,
	})
	detail := fmt.Sprintf("purpose=%s content=%s roles=%v", r.Purpose, r.Content, p.Roles)
	if r.Content == Unpublished {
		detail += " justification=" + r.Justification
	}
	var clash *keycloak.ConflictError
	if errors.As(err, &clash) {
		s.audit(ctx, realm, "create-system-account", a, r.ClientID, "conflict", detail)
		return Account{}, "", fmt.Errorf("%w: %s", ErrDuplicate, clash.Error())
	}
	if err != nil {
		s.audit(ctx, realm, "create-system-account", a, r.ClientID, "failed", detail+": "+err.Error())
		return Account{}, "", fault.Upstream("Keycloak could not make the system account", err)
	}
	s.audit(ctx, realm, "create-system-account", a, r.ClientID, "success", detail)
	return Account{ClientID: r.ClientID, Description: r.Description, Purpose: r.Purpose, Content: r.Content,
		Organization: r.Organization, Justification: r.Justification, CreatedBy: a.Username}, secret, nil
}

func account(i keycloak.SystemClientInfo) Account {
	return Account{ClientID: i.ClientID, Description: i.Description, Purpose: i.Attributes["communities.purpose"],
		Content: i.Attributes["communities.content"], Organization: i.Attributes["communities.organization"],
		Justification: i.Attributes["communities.justification"], CreatedBy: i.Attributes["communities.createdBy"]}
}

// List returns the realm's system accounts, without secrets.
func (s *Service) List(ctx context.Context, realm string, a community.Actor) ([]Account, error) {
	if err := s.mayManage(ctx, realm, a); err != nil {
		return nil, err
	}
	infos, err := s.kc.SystemClients(ctx, realm)
	if err != nil {
		return nil, fault.Upstream("Keycloak could not list the system accounts", err)
	}
	out := make([]Account, 0, len(infos))
	for _, i := range infos {
		out = append(out, account(i))
	}
	return out, nil
}

// Get returns one system account, without its secret.
func (s *Service) Get(ctx context.Context, realm string, a community.Actor, clientID string) (Account, error) {
	if err := s.mayManage(ctx, realm, a); err != nil {
		return Account{}, err
	}
	i, err := s.kc.SystemClient(ctx, realm, clientID)
	if errors.Is(err, keycloak.ErrNotFound) {
		return Account{}, fmt.Errorf("%w: %s", ErrNotFound, clientID)
	}
	if err != nil {
		return Account{}, fault.Upstream("Keycloak could not read the system account", err)
	}
	return account(*i), nil
}

// Delete removes a system account; its tokens stop being issued at once.
func (s *Service) Delete(ctx context.Context, realm string, a community.Actor, clientID string) error {
	if err := s.mayManage(ctx, realm, a); err != nil {
		s.denied(ctx, realm, "delete-system-account", a, clientID, err)
		return err
	}
	err := s.kc.DeleteSystemClient(ctx, realm, clientID)
	if errors.Is(err, keycloak.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, clientID)
	}
	if err != nil {
		s.audit(ctx, realm, "delete-system-account", a, clientID, "failed", err.Error())
		return fault.Upstream("Keycloak could not delete the system account", err)
	}
	s.audit(ctx, realm, "delete-system-account", a, clientID, "success", "")
	return nil
}

// Rotate gives the account a new secret, returned this once.
func (s *Service) Rotate(ctx context.Context, realm string, a community.Actor, clientID string) (string, error) {
	if err := s.mayManage(ctx, realm, a); err != nil {
		s.denied(ctx, realm, "rotate-system-account-secret", a, clientID, err)
		return "", err
	}
	secret, err := s.kc.RotateSystemClientSecret(ctx, realm, clientID)
	if errors.Is(err, keycloak.ErrNotFound) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, clientID)
	}
	if err != nil {
		s.audit(ctx, realm, "rotate-system-account-secret", a, clientID, "failed", err.Error())
		return "", fault.Upstream("Keycloak could not rotate the secret", err)
	}
	s.audit(ctx, realm, "rotate-system-account-secret", a, clientID, "success", "")
	return secret, nil
}
