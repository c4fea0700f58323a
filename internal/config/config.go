// Package config holds the service's settings and binds each one to a
// command-line flag and an environment variable, so that service desk can
// use flags, and containers and CI can use the environment.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/pflag"

	"github.com/nhs-terminology/communities/internal/fhirguard"
	"github.com/nhs-terminology/communities/internal/keycloak"
)

// Config is everything the service can be told at start-up.
type Config struct {
	Listen      string
	DatabaseURL string
	AutoMigrate bool
	LogLevel    string

	KeycloakURL       string
	IssuerBaseURL     string
	Realms            []string
	AdminClientID     string
	AdminClientSecret string
	AdminRealm        string
	KeycloakTimeout   time.Duration

	Audience          string
	Algorithms        []string
	TokenCacheSize    int
	DecisionClients   []string
	ChangeClients     []string
	PermissionsSystem string
	SystemlessLabels  bool
	RequiredClaims    []string
	CORSOrigins       []string
	MaxHeaderKiB      int
	CreatorRole       string
	ServiceDeskRole   string

	RootGroup          string
	FHIRClients        []string
	DefaultCommunities []string

	GuardFHIRURLs []string
	GuardTypes    []string
	GuardTimeout  time.Duration

	OperationLease    time.Duration
	RecoveryInterval  time.Duration
	ReconcileInterval time.Duration
	ShutdownTimeout   time.Duration
	ShutdownDelay     time.Duration
}

// Default returns the documented defaults (README, --help).
func Default() Config {
	return Config{
		Listen:            ":8081",
		AutoMigrate:       true,
		LogLevel:          "info",
		KeycloakURL:       "http://localhost:8080",
		Realms:            []string{"terminology"},
		AdminClientID:     "communities-service",
		KeycloakTimeout:   10 * time.Second,
		Audience:          "communities",
		Algorithms:        []string{"RS256", "PS256", "ES256"},
		TokenCacheSize:    10000,
		DecisionClients:   []string{"fhir-server"},
		ChangeClients:     []string{"service-desk", "security-admin-console", "communities-cli"},
		PermissionsSystem: "http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions",
		CreatorRole:       "community-creator",
		ServiceDeskRole:   "service-desk",
		MaxHeaderKiB:      32,
		RootGroup:         "Communities",
		FHIRClients:       []string{"terminology-client"},
		GuardTypes:        fhirguard.DefaultTypes,
		GuardTimeout:      10 * time.Second,
		OperationLease:    2 * time.Minute,
		RecoveryInterval:  time.Minute,
		ReconcileInterval: 15 * time.Minute,
		ShutdownTimeout:   20 * time.Second,
		ShutdownDelay:     5 * time.Second,
	}
}

// envName maps each flag to the environment variable that sets it. The
// well-known KEYCLOAK_URL and DATABASE_URL are shared with the scripts.
var envName = map[string]string{
	"listen":              "COMMUNITIES_LISTEN",
	"database-url":        "DATABASE_URL",
	"auto-migrate":        "COMMUNITIES_AUTO_MIGRATE",
	"log-level":           "COMMUNITIES_LOG_LEVEL",
	"keycloak-url":        "KEYCLOAK_URL",
	"issuer-base-url":     "COMMUNITIES_ISSUER_BASE_URL",
	"realms":              "COMMUNITIES_REALMS",
	"admin-client-id":     "COMMUNITIES_ADMIN_CLIENT_ID",
	"admin-client-secret": "COMMUNITIES_ADMIN_CLIENT_SECRET",
	"admin-realm":         "COMMUNITIES_ADMIN_REALM",
	"keycloak-timeout":    "COMMUNITIES_KEYCLOAK_TIMEOUT",
	"audience":            "COMMUNITIES_AUDIENCE",
	"algorithms":          "COMMUNITIES_ALGORITHMS",
	"token-cache-size":    "COMMUNITIES_TOKEN_CACHE_SIZE",
	"decision-clients":    "COMMUNITIES_DECISION_CLIENTS",
	"change-clients":      "COMMUNITIES_CHANGE_CLIENTS",
	"permissions-system":  "COMMUNITIES_PERMISSIONS_SYSTEM",
	"systemless-labels":   "COMMUNITIES_SYSTEMLESS_LABELS",
	"required-claims":     "COMMUNITIES_REQUIRED_CLAIMS",
	"cors-origins":        "COMMUNITIES_CORS_ORIGINS",
	"max-header-kib":      "COMMUNITIES_MAX_HEADER_KIB",
	"creator-role":        "COMMUNITIES_CREATOR_ROLE",
	"service-desk-role":   "COMMUNITIES_SERVICE_DESK_ROLE",
	"root-group":          "COMMUNITIES_ROOT_GROUP",
	"fhir-clients":        "COMMUNITIES_FHIR_CLIENTS",
	"default-communities": "COMMUNITIES_DEFAULT_COMMUNITIES",
	"guard-fhir-urls":     "COMMUNITIES_GUARD_FHIR_URLS",
	"guard-types":         "COMMUNITIES_GUARD_TYPES",
	"guard-timeout":       "COMMUNITIES_GUARD_TIMEOUT",
	"operation-lease":     "COMMUNITIES_OPERATION_LEASE",
	"recovery-interval":   "COMMUNITIES_RECOVERY_INTERVAL",
	"reconcile-interval":  "COMMUNITIES_RECONCILE_INTERVAL",
	"shutdown-timeout":    "COMMUNITIES_SHUTDOWN_TIMEOUT",
	"shutdown-delay":      "COMMUNITIES_SHUTDOWN_DELAY",
}

// Bind registers the flags of c on fs. Call ApplyEnv after parsing.
func Bind(fs *pflag.FlagSet, c *Config) {
	d := Default()
	*c = d
	fs.StringVar(&c.Listen, "listen", d.Listen, "address the HTTP API listens on")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL of the community registry, e.g. postgres://user:pw@host:5432/communities (required)")
	fs.BoolVar(&c.AutoMigrate, "auto-migrate", d.AutoMigrate, "apply pending registry migrations at start-up (turn off when a migration job does it)")
	fs.StringVar(&c.LogLevel, "log-level", d.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.KeycloakURL, "keycloak-url", d.KeycloakURL, "base URL the service uses to reach Keycloak (admin API, JWKS)")
	fs.StringVar(&c.IssuerBaseURL, "issuer-base-url", "", "base URL in the tokens' iss claim, when clients reach Keycloak by another name than --keycloak-url (default: --keycloak-url)")
	fs.StringSliceVar(&c.Realms, "realms", d.Realms, "realms whose communities this service manages (comma-separated)")
	fs.StringVar(&c.AdminClientID, "admin-client-id", d.AdminClientID, "confidential client the service uses for Keycloak's admin API")
	fs.StringVar(&c.AdminClientSecret, "admin-client-secret", "", "secret of --admin-client-id (prefer the environment variable)")
	fs.StringVar(&c.AdminRealm, "admin-realm", "", "realm of --admin-client-id (default: each managed realm authenticates with its own client)")
	fs.DurationVar(&c.KeycloakTimeout, "keycloak-timeout", d.KeycloakTimeout, "timeout of each call to Keycloak")
	fs.StringVar(&c.Audience, "audience", d.Audience, "audience every bearer token must carry")
	fs.StringSliceVar(&c.Algorithms, "algorithms", d.Algorithms, "JWS algorithms accepted on bearer tokens")
	fs.IntVar(&c.TokenCacheSize, "token-cache-size", d.TokenCacheSize, "verified tokens kept (until they expire, at most 5 minutes) so repeated decisions skip signature checks")
	fs.StringSliceVar(&c.DecisionClients, "decision-clients", d.DecisionClients, "clients (azp) trusted to send another caller's token to the decision endpoints")
	fs.StringSliceVar(&c.ChangeClients, "change-clients", d.ChangeClients, "clients (azp) whose tokens may create, delete and change communities, members and system accounts; tokens of other clients may only read")
	fs.StringVar(&c.PermissionsSystem, "permissions-system", d.PermissionsSystem, "code system of the security labels that carry community permissions")
	fs.BoolVar(&c.SystemlessLabels, "systemless-labels", false, "also treat security labels without a system as permission labels")
	fs.StringSliceVar(&c.RequiredClaims, "required-claims", nil, "claims tokens must carry, as [realm:]claim[=value], e.g. requesting_system,terminology:reason_for_request=directcare (seed 004)")
	fs.StringSliceVar(&c.CORSOrigins, "cors-origins", nil, "browser origins (scheme://host[:port]) allowed to call the API across origins, e.g. an admin console on another host; none by default")
	bindMaxHeaderKiB(fs, &c.MaxHeaderKiB, d.MaxHeaderKiB)
	fs.StringVar(&c.CreatorRole, "creator-role", d.CreatorRole, "realm role that may create communities")
	fs.StringVar(&c.ServiceDeskRole, "service-desk-role", d.ServiceDeskRole, "realm role that may create and delete any community and name its owners")
	fs.StringVar(&c.RootGroup, "root-group", d.RootGroup, "top-level Keycloak group under which community groups are created")
	fs.StringSliceVar(&c.FHIRClients, "fhir-clients", d.FHIRClients, "clients (clientId) whose default client scopes drift checks and deletes keep free of community scopes without their role mapping (communities make no client scopes; an earlier version attached grouping/<label>.read|write here)")
	fs.StringSliceVar(&c.DefaultCommunities, "default-communities", d.DefaultCommunities, "communities (LABEL=Name) every managed realm has, with their consumer groups as realm default groups, so every new user consumes them")
	fs.StringSliceVar(&c.GuardFHIRURLs, "guard-fhir-urls", nil, "FHIR base URLs (reached directly, not through the proxy) where deleting a community first counts the resources still carrying its labels, and is refused while any do (none: deletes are not checked)")
	fs.StringSliceVar(&c.GuardTypes, "guard-types", d.GuardTypes, "resource types the delete guard counts on each of --guard-fhir-urls")
	fs.DurationVar(&c.GuardTimeout, "guard-timeout", d.GuardTimeout, "how long the delete guard may take to count; past it the delete is refused (503)")
	fs.DurationVar(&c.OperationLease, "operation-lease", d.OperationLease, "how long a create or delete may run before another replica treats it as abandoned and finishes or undoes it")
	fs.DurationVar(&c.RecoveryInterval, "recovery-interval", d.RecoveryInterval, "how often to look for abandoned creates and deletes")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", d.ReconcileInterval, "how often one replica checks every community's Keycloak artefacts for drift and reports it (0: never; repair with 'communities reconcile --repair')")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", d.ShutdownTimeout, "how long shutdown waits for in-flight requests")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", d.ShutdownDelay, "how long, once told to stop, the service answers /readyz 503 and goes on serving before it stops accepting requests (time for load balancers to stop sending them)")
	for name, env := range envName {
		if f := fs.Lookup(name); f != nil {
			f.Usage += " [$" + env + "]"
		}
	}
}

// ApplyEnv sets every flag that was not given on the command line from its
// environment variable, so flags win over the environment.
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	return applyEnv(fs, envName, lookup)
}

func applyEnv(fs *pflag.FlagSet, env map[string]string, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	names := make([]string, 0, len(env))
	for n := range env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		f := fs.Lookup(name)
		if f == nil || f.Changed {
			continue
		}
		if v, ok := lookup(env[name]); ok {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%s: %w", env[name], err)
			}
		}
	}
	return nil
}

// EnvNames lists flag name → environment variable, for documentation tests.
func EnvNames() map[string]string { return maps.Clone(envName) }

// Validate reports every setting that cannot work, all at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("--database-url (DATABASE_URL) is required"))
	}
	if u, err := url.Parse(c.KeycloakURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--keycloak-url %q is not an absolute http or https URL", c.KeycloakURL))
	}
	if c.IssuerBaseURL != "" {
		if u, err := url.Parse(c.IssuerBaseURL); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--issuer-base-url %q is not an absolute URL", c.IssuerBaseURL))
		}
	}
	for _, u := range c.GuardFHIRURLs {
		if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Host == "" {
			errs = append(errs, fmt.Errorf("--guard-fhir-urls: %q is not an absolute URL", u))
		}
	}
	if len(c.GuardFHIRURLs) > 0 && (len(c.GuardTypes) == 0 || c.GuardTimeout <= 0) {
		errs = append(errs, errors.New("--guard-types must name a type and --guard-timeout be positive when --guard-fhir-urls is set"))
	}
	// A type goes into the guard's search path as it is: "" would search
	// the whole server, "x/y" another path.
	for _, t := range c.GuardTypes {
		if t != "" && !resourceType.MatchString(t) {
			errs = append(errs, fmt.Errorf("--guard-types: %q is not a FHIR resource type", t))
		}
	}
	errs = append(errs, validSystem(c.PermissionsSystem)...)
	if len(c.Realms) == 0 {
		errs = append(errs, errors.New("--realms must name at least one realm"))
	}
	// Realm names go into issuer, key set and admin URLs, and the root
	// group's name into group paths: anything that would need escaping in
	// one of them (or, as "/", change a path's meaning) is refused at start.
	for _, r := range c.Realms {
		if r != "" && !realmName.MatchString(r) {
			errs = append(errs, fmt.Errorf("--realms: %q is not a realm name this service takes (letters, digits, '.', '_' and '-', "+
				"beginning with a letter or digit)", r))
		}
	}
	// The admin client puts the root group's name into a URL's path as it
	// is: "?" or "#" would end the path there, "%" would be read as an
	// escape ("50%2F" as "50/").
	if c.RootGroup == "" || strings.ContainsAny(c.RootGroup, `/?#%\`) || c.RootGroup != strings.TrimSpace(c.RootGroup) ||
		strings.ContainsFunc(c.RootGroup, unicode.IsControl) {
		errs = append(errs, fmt.Errorf("--root-group %q must be a group name: not empty; no '/', '?', '#', '%%' or '\\'; "+
			"no control characters or spaces around it", c.RootGroup))
	}
	if c.AdminClientSecret == "" {
		errs = append(errs, errors.New("--admin-client-secret (COMMUNITIES_ADMIN_CLIENT_SECRET) is required"))
	}
	// The realm-wide admin permissions name the service-desk role beside
	// every owner's: empty, or the owners' own, they could never be as
	// the service makes them, and every create would be refused.
	if c.ServiceDeskRole == "" || c.ServiceDeskRole == keycloak.OwnerRole {
		errs = append(errs, fmt.Errorf("--service-desk-role %q must name a realm role other than %s", c.ServiceDeskRole, keycloak.OwnerRole))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("--audience must not be empty: tokens meant for other services must be refused"))
	}
	errs = append(errs, validMaxHeaderKiB(c.MaxHeaderKiB)...)
	errs = append(errs, validAlgorithms(c.Algorithms)...)
	for _, o := range c.CORSOrigins {
		if !exactOrigin(o) {
			errs = append(errs, fmt.Errorf("--cors-origins: %q is not an origin as browsers send it (scheme://host[:port] in lower case, "+
				"no path, no default port; no wildcard)", o))
		}
	}
	if c.TokenCacheSize <= 0 {
		errs = append(errs, errors.New("--token-cache-size must be positive"))
	}
	if c.OperationLease <= 0 || c.KeycloakTimeout <= 0 {
		errs = append(errs, errors.New("--operation-lease and --keycloak-timeout must be positive"))
	}
	// A ticker of 0 panics once the server is up; recovery cannot be
	// turned off, the drift check can (0).
	if c.RecoveryInterval <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("--recovery-interval and --shutdown-timeout must be positive"))
	}
	if c.ShutdownDelay < 0 {
		errs = append(errs, errors.New("--shutdown-delay must not be negative"))
	}
	if c.ReconcileInterval < 0 {
		errs = append(errs, errors.New("--reconcile-interval must be 0 (never) or positive"))
	}
	if len(c.Algorithms) == 0 {
		errs = append(errs, errors.New("--algorithms must name at least one algorithm"))
	}
	// A trailing comma ("service-desk,") makes an empty entry, which would
	// let a token without azp through the client allow-lists.
	for _, l := range []struct {
		flag string
		list []string
	}{{"realms", c.Realms}, {"decision-clients", c.DecisionClients}, {"change-clients", c.ChangeClients},
		{"fhir-clients", c.FHIRClients}, {"algorithms", c.Algorithms}, {"guard-fhir-urls", c.GuardFHIRURLs}, {"guard-types", c.GuardTypes}} {
		if slices.ContainsFunc(l.list, func(e string) bool { return strings.TrimSpace(e) == "" }) {
			errs = append(errs, fmt.Errorf("--%s has an empty entry (a stray comma?)", l.flag))
		}
		// " security-admin-console" would never match a client, silently.
		if slices.ContainsFunc(l.list, func(e string) bool { return e != strings.TrimSpace(e) }) {
			errs = append(errs, fmt.Errorf("--%s has an entry with spaces around it (write a,b, not a, b)", l.flag))
		}
	}
	// The extension's cleanup takes at most this many clients.
	if len(c.FHIRClients) > maxFHIRClients {
		errs = append(errs, fmt.Errorf("--fhir-clients names %d clients; at most %d", len(c.FHIRClients), maxFHIRClients))
	}
	return errors.Join(errs...)
}

// resourceType is a FHIR resource type's name.
var resourceType = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)

// realmName is a realm name the service takes: one that reads the same in
// a URL's path, escaped or not.
var realmName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// maxFHIRClients is the cap of the extension's cleanup on each of its
// lists (CommunitiesResource.MAX_NAMES).
const maxFHIRClients = 32

// validSystem checks the permissions code system. It goes into token
// searches (the delete guard's), where "," separates values, "|" system
// from code and "$" and "\" are escapes; empty, the guard would count
// labels without a system only, and so let every delete through.
func validSystem(system string) []error {
	if system == "" || strings.ContainsAny(system, ",|$\\ ") || strings.ContainsFunc(system, unicode.IsControl) {
		return []error{fmt.Errorf("--permissions-system %q must be a code system URI: not empty; no ',', '|', '$', '\\', "+
			"spaces or control characters", system)}
	}
	return nil
}

func validAlgorithms(algs []string) []error {
	var errs []error
	for _, a := range algs {
		if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
			errs = append(errs, fmt.Errorf("--algorithms: %s is not allowed (only asymmetric algorithms verify against a JWKS)", a))
		}
	}
	return errs
}

// Issuer is the iss claim expected on tokens of realm.
func (c *Config) Issuer(realm string) string {
	base := c.IssuerBaseURL
	if base == "" {
		base = c.KeycloakURL
	}
	return strings.TrimRight(base, "/") + "/realms/" + realm
}

// bindMaxHeaderKiB and validMaxHeaderKiB describe --max-header-kib once
// for the service and the FHIR proxy, which share its variable.
func bindMaxHeaderKiB(fs *pflag.FlagSet, p *int, def int) {
	fs.IntVar(p, "max-header-kib", def, "largest request line and headers accepted, in KiB; over it the answer is a 431 naming the largest header (a token of a user in 100 communities is under 8 KiB)")
}

func validMaxHeaderKiB(n int) []error {
	if n < 8 || n > 1024 {
		return []error{fmt.Errorf("--max-header-kib %d: must be between 8 and 1024", n)}
	}
	return nil
}

// exactOrigin reports whether o is an origin spelt as a browser sends it in
// Origin: the only spelling that matches, so any other (a wildcard, upper
// case, ":443" after https) would be a setting that never lets anyone in.
func exactOrigin(o string) bool {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		o != u.Scheme+"://"+u.Host || o != strings.ToLower(o) || strings.Contains(u.Host, "*") {
		return false
	}
	switch u.Port() {
	case "80":
		return u.Scheme != "http"
	case "443":
		return u.Scheme != "https"
	}
	return true
}
