package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Proxy is everything 'communities proxy' can be told at start-up.
type Proxy struct {
	Listen          string
	Upstream        string
	BasePath        string
	PublicBaseURL   string
	Realm           string
	UpstreamTimeout time.Duration
	MaxBodyMiB      int
	MaxHeaderKiB    int
	LogLevel        string

	KeycloakURL       string
	IssuerBaseURL     string
	KeycloakTimeout   time.Duration
	Audience          string
	Algorithms        []string
	TokenCacheSize    int
	PermissionsSystem string
	SystemlessLabels  bool
	RequiredClaims    []string
}

// proxyEnvName maps each proxy flag to its environment variable. Token
// and label settings share the service's variables, so one environment
// configures both alike.
var proxyEnvName = map[string]string{
	"listen":             "COMMUNITIES_PROXY_LISTEN",
	"upstream":           "COMMUNITIES_PROXY_UPSTREAM",
	"base-path":          "COMMUNITIES_PROXY_BASE_PATH",
	"public-base-url":    "COMMUNITIES_PROXY_PUBLIC_BASE_URL",
	"realm":              "COMMUNITIES_PROXY_REALM",
	"upstream-timeout":   "COMMUNITIES_PROXY_UPSTREAM_TIMEOUT",
	"max-body-mib":       "COMMUNITIES_PROXY_MAX_BODY_MIB",
	"max-header-kib":     "COMMUNITIES_MAX_HEADER_KIB",
	"log-level":          "COMMUNITIES_LOG_LEVEL",
	"keycloak-url":       "KEYCLOAK_URL",
	"issuer-base-url":    "COMMUNITIES_ISSUER_BASE_URL",
	"keycloak-timeout":   "COMMUNITIES_KEYCLOAK_TIMEOUT",
	"audience":           "COMMUNITIES_AUDIENCE",
	"algorithms":         "COMMUNITIES_ALGORITHMS",
	"token-cache-size":   "COMMUNITIES_TOKEN_CACHE_SIZE",
	"permissions-system": "COMMUNITIES_PERMISSIONS_SYSTEM",
	"systemless-labels":  "COMMUNITIES_SYSTEMLESS_LABELS",
	"required-claims":    "COMMUNITIES_REQUIRED_CLAIMS",
}

// DefaultProxy returns the proxy's documented defaults.
func DefaultProxy() Proxy {
	d := Default()
	return Proxy{
		Listen: ":8082", BasePath: "/fhir", Realm: "terminology", UpstreamTimeout: 30 * time.Second, MaxBodyMiB: 32,
		MaxHeaderKiB: d.MaxHeaderKiB, LogLevel: d.LogLevel, KeycloakURL: d.KeycloakURL, KeycloakTimeout: d.KeycloakTimeout, Audience: d.Audience,
		Algorithms: d.Algorithms, TokenCacheSize: d.TokenCacheSize, PermissionsSystem: d.PermissionsSystem,
	}
}

// BindProxy registers the proxy's flags on fs. Call ApplyProxyEnv after
// parsing.
func BindProxy(fs *pflag.FlagSet, c *Proxy) {
	d := DefaultProxy()
	*c = d
	fs.StringVar(&c.Listen, "listen", d.Listen, "address the FHIR proxy listens on")
	fs.StringVar(&c.Upstream, "upstream", "", "base URL of the FHIR server behind the proxy, e.g. http://hapi:8080/fhir; never shown to callers (required)")
	fs.StringVar(&c.BasePath, "base-path", d.BasePath, "path under which the proxy serves the FHIR API")
	fs.StringVar(&c.PublicBaseURL, "public-base-url", "", "the proxy's base URL as callers reach it, for links in answers (default: from each request's Host and --base-path)")
	fs.StringVar(&c.Realm, "realm", d.Realm, "Keycloak realm whose tokens the proxy accepts")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", d.UpstreamTimeout, "timeout of each call to the FHIR server")
	fs.IntVar(&c.MaxBodyMiB, "max-body-mib", d.MaxBodyMiB, "largest request or FHIR server answer passed on, in MiB (answers are judged whole)")
	bindMaxHeaderKiB(fs, &c.MaxHeaderKiB, d.MaxHeaderKiB)
	fs.StringVar(&c.LogLevel, "log-level", d.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.KeycloakURL, "keycloak-url", d.KeycloakURL, "base URL the proxy uses to reach Keycloak (JWKS)")
	fs.StringVar(&c.IssuerBaseURL, "issuer-base-url", "", "base URL in the tokens' iss claim, when clients reach Keycloak by another name than --keycloak-url (default: --keycloak-url)")
	fs.DurationVar(&c.KeycloakTimeout, "keycloak-timeout", d.KeycloakTimeout, "timeout of each call to Keycloak")
	fs.StringVar(&c.Audience, "audience", d.Audience, "audience every bearer token must carry")
	fs.StringSliceVar(&c.Algorithms, "algorithms", d.Algorithms, "JWS algorithms accepted on bearer tokens")
	fs.IntVar(&c.TokenCacheSize, "token-cache-size", d.TokenCacheSize, "verified tokens kept (until they expire, at most 5 minutes) so repeated requests skip signature checks")
	fs.StringVar(&c.PermissionsSystem, "permissions-system", d.PermissionsSystem, "code system of the security labels that carry community permissions")
	fs.BoolVar(&c.SystemlessLabels, "systemless-labels", false, "also treat security labels without a system as permission labels")
	fs.StringSliceVar(&c.RequiredClaims, "required-claims", nil, "claims tokens must carry, as [realm:]claim[=value] (seed 004)")
	for name, env := range proxyEnvName {
		if f := fs.Lookup(name); f != nil {
			f.Usage += " [$" + env + "]"
		}
	}
}

// ApplyProxyEnv is ApplyEnv for the proxy's flags.
func ApplyProxyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	return applyEnv(fs, proxyEnvName, lookup)
}

// ProxyEnvNames lists proxy flag name → environment variable.
func ProxyEnvNames() map[string]string { return maps.Clone(proxyEnvName) }

// Validate reports every setting that cannot work, all at once.
func (c *Proxy) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Upstream); c.Upstream == "" || err != nil || u.Scheme == "" || u.Host == "" {
		errs = append(errs, fmt.Errorf("--upstream (COMMUNITIES_PROXY_UPSTREAM) must be the FHIR server's absolute base URL, not %q", c.Upstream))
	}
	for name, v := range map[string]string{"--keycloak-url": c.KeycloakURL, "--issuer-base-url": c.IssuerBaseURL, "--public-base-url": c.PublicBaseURL} {
		if v == "" && name != "--keycloak-url" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q is not an absolute URL", name, v))
		}
	}
	if !strings.HasPrefix(c.BasePath, "/") {
		errs = append(errs, fmt.Errorf("--base-path %q must start with /", c.BasePath))
	}
	if c.Realm == "" {
		errs = append(errs, errors.New("--realm must name the realm whose tokens are accepted"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("--audience must not be empty: tokens meant for other services must be refused"))
	}
	errs = append(errs, validAlgorithms(c.Algorithms)...)
	errs = append(errs, validMaxHeaderKiB(c.MaxHeaderKiB)...)
	errs = append(errs, validSystem(c.PermissionsSystem)...)
	if c.TokenCacheSize <= 0 || c.MaxBodyMiB <= 0 || c.UpstreamTimeout <= 0 || c.KeycloakTimeout <= 0 {
		errs = append(errs, errors.New("--token-cache-size, --max-body-mib, --upstream-timeout and --keycloak-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Issuer is the iss claim expected on the realm's tokens.
func (c *Proxy) Issuer(realm string) string {
	base := c.IssuerBaseURL
	if base == "" {
		base = c.KeycloakURL
	}
	return strings.TrimRight(base, "/") + "/realms/" + realm
}
