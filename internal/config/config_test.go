package config

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlagsWinOverEnvironment(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Bind(fs, &c)
	if err := fs.Parse([]string{"--listen", ":9999"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"COMMUNITIES_LISTEN":          ":1111",
		"DATABASE_URL":                "postgres://x",
		"COMMUNITIES_REALMS":          "a,b",
		"COMMUNITIES_OPERATION_LEASE": "45s",
	}
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":9999" || c.DatabaseURL != "postgres://x" || strings.Join(c.Realms, ",") != "a,b" || c.OperationLease != 45*time.Second {
		t.Errorf("config %+v", c)
	}
	if c.KeycloakURL != "http://localhost:8080" {
		t.Errorf("default keycloak url %q", c.KeycloakURL)
	}
}

func TestBadEnvironmentIsReported(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Bind(fs, &c)
	err := ApplyEnv(fs, func(k string) (string, bool) { return "soon", k == "COMMUNITIES_OPERATION_LEASE" })
	if err == nil || !strings.Contains(err.Error(), "COMMUNITIES_OPERATION_LEASE") {
		t.Errorf("err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	c := Default()
	c.DatabaseURL, c.AdminClientSecret = "postgres://x", "s"
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	if got := c.Issuer("terminology"); got != "http://localhost:8080/realms/terminology" {
		t.Errorf("issuer %q", got)
	}
	c.IssuerBaseURL = "https://auth.example/"
	if got := c.Issuer("r"); got != "https://auth.example/realms/r" {
		t.Errorf("issuer %q", got)
	}
	bad := Default()
	bad.KeycloakURL = "localhost"
	bad.Realms = nil
	bad.Audience = ""
	bad.Algorithms = []string{"RS256", "none", "HS256"}
	bad.OperationLease = 0
	bad.ChangeClients = []string{"service-desk", ""}
	bad.DecisionClients = []string{" terminology-server"}
	bad.RecoveryInterval = 0
	bad.ReconcileInterval = -time.Minute
	err := bad.Validate()
	for _, want := range []string{"database-url", "keycloak-url", "realms", "admin-client-secret", "audience", "none", "HS256", "operation-lease",
		"--change-clients has an empty entry", "--decision-clients has an entry with spaces around it", "--recovery-interval",
		"--reconcile-interval must be 0 (never) or positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate did not report %s: %v", want, err)
		}
	}
	// Names that would need escaping in a URL or change a group path.
	for _, realm := range []string{"a/b", "..", "terminology?x=1", "t%2Fx", "-t", "termin ology", "é"} {
		c := Default()
		c.DatabaseURL, c.AdminClientSecret, c.Realms = "postgres://x", "s", []string{"terminology", realm}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--realms: ") {
			t.Errorf("realm %q accepted: %v", realm, err)
		}
	}
	for _, root := range []string{"", "Communities/x", " Communities", "Comm\nunities", "A?B", "A#B", "50%", "50%2F", `A\B`} {
		c := Default()
		c.DatabaseURL, c.AdminClientSecret, c.RootGroup = "postgres://x", "s", root
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--root-group") {
			t.Errorf("root group %q accepted: %v", root, err)
		}
	}
	// The delete guard's search: an empty system would count labels
	// without one only (every delete let through), and these characters
	// split or escape a token search; an empty type searches the server.
	for _, system := range []string{"", "http://x|y", "http://x,y", "http://x$y", `http://x\y`, "http://x y", "http://x\ny"} {
		c := Default()
		c.DatabaseURL, c.AdminClientSecret, c.PermissionsSystem = "postgres://x", "s", system
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--permissions-system") {
			t.Errorf("permissions system %q accepted: %v", system, err)
		}
		p := DefaultProxy()
		p.Upstream, p.PermissionsSystem = "http://fhir", system
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "--permissions-system") {
			t.Errorf("the proxy's permissions system %q accepted: %v", system, err)
		}
	}
	// The realm-wide admin permissions name it beside every owner's role.
	for _, role := range []string{"", "community-owner"} {
		c := Default()
		c.DatabaseURL, c.AdminClientSecret, c.ServiceDeskRole = "postgres://x", "s", role
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--service-desk-role") {
			t.Errorf("service-desk role %q accepted: %v", role, err)
		}
	}
	for _, types := range [][]string{{"CodeSystem", ""}, {"Code/System"}, {"valueSet"}, {"ValueSet?x=1"}} {
		c := Default()
		c.DatabaseURL, c.AdminClientSecret, c.GuardFHIRURLs, c.GuardTypes = "postgres://x", "s", []string{"http://fhir"}, types
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--guard-types") {
			t.Errorf("guard types %q accepted: %v", types, err)
		}
	}
	good := Default()
	good.DatabaseURL, good.AdminClientSecret = "postgres://x", "s"
	good.PermissionsSystem, good.GuardFHIRURLs, good.GuardTypes = "urn:oid:1.2.36.1", []string{"http://fhir"}, []string{"ValueSet", "Library"}
	good.Realms, good.RootGroup = []string{"terminology", "t-reconcile-1a2b", "NHS.England_2"}, "Communities of practice"
	if err := good.Validate(); err != nil {
		t.Errorf("good realm and root group names refused: %v", err)
	}
	other := Default()
	other.DatabaseURL, other.AdminClientSecret = "postgres://x", "s"
	other.KeycloakURL, other.Algorithms, other.ShutdownTimeout, other.ShutdownDelay = "ftp://kc", nil, -time.Second, -time.Second
	err = other.Validate()
	for _, want := range []string{"--keycloak-url \"ftp://kc\" is not an absolute http or https URL", "--algorithms must name at least one", "--shutdown-timeout",
		"--shutdown-delay must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate did not report %s: %v", want, err)
		}
	}
}

func TestCORSOriginsMustBeExactOrigins(t *testing.T) {
	c := Default()
	c.DatabaseURL, c.AdminClientSecret = "postgres://x", "s"
	c.CORSOrigins = []string{"https://console.example.org", "http://localhost:3000", "http://console.example.org:443", "https://[::1]:8443"}
	if err := c.Validate(); err != nil {
		t.Fatalf("origins refused: %v", err)
	}
	for _, bad := range []string{"*", "https://console.example.org/", "https://console.example.org/admin", "console.example.org",
		"ftp://console.example.org", "https://user@console.example.org", "https://console.example.org?x=1",
		"https://*.example.org", "https://Console.example.org", "HTTPS://console.example.org", "https://console.example.org:443",
		"http://localhost:80", "https://console.example.org#x", "https://:8443"} {
		c.CORSOrigins = []string{bad}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--cors-origins") {
			t.Errorf("origin %q accepted: %v", bad, err)
		}
	}
}
