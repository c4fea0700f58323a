// Package api is the service's HTTP interface (Gin): the communities
// endpoints under /realms/{realm} and the legacy /auth/realms/{realm},
// health, readiness, metrics and the OpenAPI description.
package api

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-contrib/cors"
	"github.com/gin-gonic/gin"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/label"
	"github.com/nhs-terminology/communities/internal/metrics"
	"github.com/nhs-terminology/communities/internal/sysaccount"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// OpenAPI is the description of this API, served at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Prefixes the realm routes are served under. The seeds' URLs use the
// pre-Quarkus Keycloak path /auth/realms/...; Keycloak 17+ uses /realms/...
var Prefixes = []string{"", "/auth"}

// Verifier verifies bearer tokens.
type Verifier interface {
	Verify(ctx context.Context, realm, raw string) (*auth.Principal, error)
}

// Readiness reports whether the service can do its work.
type Readiness func(ctx context.Context) error

// Options configures the handler.
type Options struct {
	Realms          []string
	CreatorRole     string
	ServiceDeskRole string
	Service         *community.Service
	Verifier        Verifier
	Decisions       decision.Config
	DecisionClients []string
	// ChangeClients are the clients (azp) whose tokens may change anything.
	ChangeClients  []string
	RequiredClaims []RequiredClaim
	Accounts       *sysaccount.Service
	Ready          Readiness
	Metrics        *metrics.Metrics
	Logger         *slog.Logger
	// CORSOrigins may call the API from browsers (scheme://host[:port]);
	// none by default: the admin console reaches the service through the
	// front door, on its own origin.
	CORSOrigins []string
	// MaxHeaderBytes limits a request's headers; over it the answer is a
	// 431 naming the largest header (most often a token carrying too
	// many roles or scopes), logged and counted.
	MaxHeaderBytes int
}

type handler struct {
	opts   Options
	realms map[string]bool
	log    *slog.Logger

	nearMissMu   sync.Mutex
	nearMissSeen map[string]struct{}
	quiet        map[string]bool // routes whose successes log at debug
}

// New returns the service's HTTP handler.
func New(o Options) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	h := &handler{opts: o, realms: map[string]bool{}, log: o.Logger, nearMissSeen: map[string]struct{}{}, quiet: quietRoutes()}
	for _, r := range o.Realms {
		h.realms[r] = true
	}
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.UseRawPath = true
	e.UnescapePathValues = true
	// The recoverer runs inside observe, so that a panic's 500 is logged
	// on the request's one line like any other failure.
	e.Use(h.requestID, h.observe, h.recoverer, h.headerLimit)
	if len(o.CORSOrigins) > 0 {
		// Before routing and authentication, so that preflights (which
		// carry no token) are answered, for the listed origins only.
		allow := cors.New(cors.Config{
			AllowOrigins:  o.CORSOrigins,
			AllowMethods:  []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete},
			AllowHeaders:  []string{"Authorization", "Content-Type", "X-Request-ID"},
			ExposeHeaders: []string{"Location", "X-Request-ID", "Retry-After"},
			MaxAge:        10 * time.Minute,
		})
		// The library answers another origin with a bare 403; this one
		// says why, as problem details, like every other refusal.
		e.Use(func(c *gin.Context) {
			origin := c.GetHeader("Origin")
			if origin == "" || slices.Contains(o.CORSOrigins, origin) || sameOrigin(origin, c.Request.Host) {
				allow(c)
				return
			}
			h.refuse(c, fault.Forbidden, "requests from origin "+strconv.Quote(origin)+" are not allowed: it is not in --cors-origins")
		})
	}
	e.NoRoute(func(c *gin.Context) { h.refuse(c, fault.NotFound, "no such resource: "+c.Request.URL.Path) })
	e.NoMethod(func(c *gin.Context) {
		// The caller's method is named only when it is one of HTTP's.
		h.refuse(c, fault.MethodNotAllowed, "method "+methodLabel(c.Request.Method)+" is not allowed on "+c.Request.URL.Path)
	})

	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "UP"}) })
	e.GET("/readyz", h.ready)
	e.GET("/metrics", gin.WrapH(o.Metrics.Handler()))
	e.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", OpenAPI) })

	for _, p := range Prefixes {
		g := e.Group(p+"/realms/:realm", h.realm, h.authenticate, h.requireClaims)
		g.GET("/communities", h.list)
		g.POST("/communities", h.changing, h.create)
		g.DELETE("/communities", h.changing, h.deleteByBody)
		g.GET("/communities/:label", h.get)
		g.DELETE("/communities/:label", h.changing, h.deleteByLabel)
		g.GET("/communities/:label/members", h.members)
		g.PUT("/communities/:label/:role/:user", h.changing, h.addMember)
		g.DELETE("/communities/:label/:role/:user", h.changing, h.removeMember)
		g.GET(AuthzPrefix+"/access", h.access)
		g.POST(AuthzPrefix+"/decision", h.decide)
		g.GET(AuthzPrefix+"/labels", h.labels)
		g.POST(AuthzPrefix+"/labels", h.labels)
		g.POST("/system-accounts", h.changing, h.createAccount)
		g.GET("/system-accounts", h.listAccounts)
		g.GET("/system-accounts/:client", h.getAccount)
		g.DELETE("/system-accounts/:client", h.changing, h.deleteAccount)
		g.POST("/system-accounts/:client/secret", h.changing, h.rotateSecret)
	}
	return e
}

type ctxKey int

const (
	principalKey ctxKey = iota
	requestIDKey
)

// Representation is a community as seed 000 shows it; the list answers
// exactly this shape.
type Representation = community.Representation

func represent(c *community.Community) Representation {
	return Representation{SecurityLabel: c.Label, CommunityName: c.Name}
}

func (h *handler) list(c *gin.Context) {
	first, err := queryInt(c, "first", 0, 0, 1<<31-1)
	if err != nil {
		h.refuse(c, fault.Invalid, err.Error())
		return
	}
	max, err := queryInt(c, "max", 0, 1, 1000)
	if err != nil {
		h.refuse(c, fault.Invalid, err.Error())
		return
	}
	search, _, err := queryValue(c, "search")
	if err != nil {
		h.refuse(c, fault.Invalid, err.Error())
		return
	}
	if utf8.RuneCountInString(search) > label.MaxNameLen {
		h.refuse(c, fault.Invalid, "query parameter search must be at most "+strconv.Itoa(label.MaxNameLen)+" characters")
		return
	}
	mine, err := queryBool(c, "mine")
	if err != nil {
		h.refuse(c, fault.Invalid, err.Error())
		return
	}
	cs, err := h.opts.Service.Find(c.Request.Context(), c.Param("realm"), h.actor(c),
		community.ListFilter{Search: search, Mine: mine}, first, max)
	if err != nil {
		h.fail(c, err)
		return
	}
	out := make([]Representation, 0, len(cs))
	for i := range cs {
		out = append(out, represent(&cs[i]))
	}
	c.JSON(http.StatusOK, out)
}

func (h *handler) get(c *gin.Context) {
	cm, err := h.opts.Service.Get(c.Request.Context(), c.Param("realm"), c.Param("label"))
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, represent(cm))
}

type createBody struct {
	CommunityName *string  `json:"communityName"`
	SecurityLabel *string  `json:"securityLabel"`
	Owners        []string `json:"owners"`
}

func (h *handler) create(c *gin.Context) {
	var body createBody
	if err := decodeJSON(c.Request, &body); err != nil {
		h.fail(c, err)
		return
	}
	if body.CommunityName == nil || body.SecurityLabel == nil {
		h.refuse(c, fault.Invalid, `both "communityName" and "securityLabel" are required`)
		return
	}
	realm := c.Param("realm")
	cm, err := h.opts.Service.Create(c.Request.Context(), realm, h.actor(c), community.CreateRequest{
		Label: *body.SecurityLabel, Name: *body.CommunityName, Owners: body.Owners,
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header("Location", prefixOf(c)+"/realms/"+realm+"/communities/"+cm.Label)
	c.JSON(http.StatusCreated, represent(cm))
}

func (h *handler) deleteByBody(c *gin.Context) {
	var body struct {
		SecurityLabel *string `json:"securityLabel"`
		CommunityName *string `json:"communityName"`
	}
	if err := decodeJSON(c.Request, &body); err != nil {
		h.fail(c, err)
		return
	}
	if body.SecurityLabel == nil || body.CommunityName == nil {
		h.refuse(c, fault.Invalid, `send the community exactly as GET lists it: {"securityLabel": "...", "communityName": "..."}`)
		return
	}
	h.delete(c, community.DeleteRequest{
		Label: *body.SecurityLabel,
		Match: &community.Representation{SecurityLabel: *body.SecurityLabel, CommunityName: *body.CommunityName},
	})
}

func (h *handler) deleteByLabel(c *gin.Context) {
	h.delete(c, community.DeleteRequest{Label: c.Param("label")})
}

func (h *handler) delete(c *gin.Context, req community.DeleteRequest) {
	// ?acceptLabelledResources=true: service desk deletes although the
	// community's labels remain on FHIR resources.
	accept, err := queryBool(c, "acceptLabelledResources")
	if err != nil {
		h.refuse(c, fault.Invalid, err.Error())
		return
	}
	req.AcceptLabelled = accept
	if _, err := h.opts.Service.Delete(c.Request.Context(), c.Param("realm"), h.actor(c), req); err != nil {
		h.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handler) members(c *gin.Context) {
	// The page's bounds are the domain's (MemberPage.Check); here only
	// what the query says, and an empty role, which the domain would take
	// for every role.
	p := community.FirstMembers
	role, given, err := queryValue(c, "role")
	if err == nil && given && role == "" {
		err = errors.New("query parameter role is empty: leave it out for every role")
	}
	p.Role = role
	if err == nil {
		p.First, err = queryInt(c, "first", p.First, 0, community.MaxFirstMember)
	}
	if err == nil {
		p.Max, err = queryInt(c, "max", p.Max, 1, community.MaxMembersPerRole)
	}
	if err != nil {
		h.refuse(c, fault.Invalid, err.Error())
		return
	}
	ms, err := h.opts.Service.Members(c.Request.Context(), c.Param("realm"), h.actor(c), c.Param("label"), p)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, ms)
}

func (h *handler) addMember(c *gin.Context) { h.changeMember(c, true) }

func (h *handler) removeMember(c *gin.Context) { h.changeMember(c, false) }

func (h *handler) changeMember(c *gin.Context, add bool) {
	err := h.opts.Service.ChangeMember(c.Request.Context(), c.Param("realm"), h.actor(c),
		c.Param("label"), c.Param("role"), c.Param("user"), add)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handler) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	if err := h.opts.Ready(ctx); err != nil {
		// The cause names hosts and drivers' errors: logs only, since
		// this endpoint answers anyone.
		h.log.WarnContext(ctx, "not ready", "error", err, "request_id", requestIDOf(c))
		why := "PostgreSQL or Keycloak cannot be reached"
		if pub := (*fault.Error)(nil); errors.As(err, &pub) {
			why = pub.Public
		}
		h.refuse(c, fault.Unavailable, "not ready: "+why+"; the service's log has the details")
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "UP"})
}

func (h *handler) actor(c *gin.Context) community.Actor {
	p := c.Request.Context().Value(principalKey).(*auth.Principal)
	return community.Actor{
		Subject: p.Subject, ClientID: p.ClientID, Username: p.Username,
		RequestID:   requestIDOf(c),
		ServiceDesk: p.HasRole(h.opts.ServiceDeskRole),
		Creator:     p.HasRole(h.opts.CreatorRole),
		// Seed 000: creators are users "with system/API level Author
		// access who have been granted a Community Owner role"; API-level
		// write on every resource type is that author access.
		APIAuthor: h.opts.Decisions.Decide(p.Privileges,
			decision.Request{ResourceType: "*", Interaction: decision.Create}).Allowed,
		Claims: provenance(p),
	}
}

// prefixOf returns "/auth" for requests that came in under the legacy
// prefix, so Location answers in the caller's own URL space.
func prefixOf(c *gin.Context) string {
	if strings.HasPrefix(c.FullPath(), "/auth/") {
		return "/auth"
	}
	return ""
}

// queryValue is a query parameter's one value. A parameter given twice is
// refused, not read as its first value: a proxy or client that reads the
// last one would otherwise see another request than the service does.
func queryValue(c *gin.Context, name string) (v string, given bool, err error) {
	switch vs := c.QueryArray(name); len(vs) {
	case 0:
		return "", false, nil
	case 1:
		return vs[0], true, nil
	}
	return "", true, errors.New("query parameter " + name + " is given more than once")
}

// queryBool is a query parameter that is true, false, or absent (false).
func queryBool(c *gin.Context, name string) (bool, error) {
	switch v, given, err := queryValue(c, name); {
	case err != nil:
		return false, err
	case !given || v == "false":
		return false, nil
	case v == "true":
		return true, nil
	}
	return false, errors.New("query parameter " + name + " must be true or false")
}

func queryInt(c *gin.Context, name string, def, min, max int) (int, error) {
	s, given, err := queryValue(c, name)
	if err != nil || !given {
		return def, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, errors.New("query parameter " + name + " must be a whole number from " + strconv.Itoa(min) + " to " + strconv.Itoa(max))
	}
	return n, nil
}

// sameOrigin reports whether origin is the request's own host, which the
// CORS library lets through whatever the list says.
func sameOrigin(origin, host string) bool {
	rest, ok := strings.CutPrefix(origin, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(origin, "http://")
	}
	return ok && rest == host
}
