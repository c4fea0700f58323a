// Package deploy checks the deployment files that cannot run on the
// project's machines (no Docker engine, no cluster): the Kubernetes
// manifests are built with kustomize and decoded strictly into the real
// Kubernetes API types, and docker-compose.yml is checked against the local
// stack, the realm export and the service's configuration.
package deploy

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/test/harness"
)

var deployDir = filepath.Join(harness.RepoDir(), "deploy")

// build runs kustomize on dir and decodes every object strictly (unknown
// or misspelt fields fail) into its API type, by kind in the order built.
func build(t *testing.T, dir string) map[string][]any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	objs := map[string][]any{}
	for _, r := range res.Resources() {
		raw, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var obj any
		switch r.GetKind() {
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "Service":
			obj = &corev1.Service{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "Secret":
			obj = &corev1.Secret{}
		case "Job":
			obj = &batchv1.Job{}
		case "PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "HorizontalPodAutoscaler":
			obj = &autoscalingv2.HorizontalPodAutoscaler{}
		case "NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		case "Ingress":
			obj = &networkingv1.Ingress{}
		default:
			t.Fatalf("%s: unexpected kind %s", dir, r.GetKind())
		}
		if err := yaml.UnmarshalStrict(raw, obj); err != nil {
			t.Errorf("%s %s: %v", r.GetKind(), r.GetName(), err)
		}
		objs[r.GetKind()] = append(objs[r.GetKind()], obj)
	}
	return objs
}

func TestKubernetesManifests(t *testing.T) {
	build(t, filepath.Join(deployDir, "k8s", "base"))
	objs := build(t, filepath.Join(deployDir, "k8s", "overlays", "example"))
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "Secret", "Job", "PodDisruptionBudget",
		"HorizontalPodAutoscaler", "NetworkPolicy", "Ingress"} {
		if len(objs[kind]) == 0 {
			t.Errorf("the example overlay has no %s", kind)
		}
	}
	d := objs["Deployment"][0].(*appsv1.Deployment)
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Error("Deployment must run at least 2 replicas")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes must use /readyz and /healthz")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("resource requests and limits must be set")
	}
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pods must run as non-root")
	}
	if d.Spec.Template.Spec.TerminationGracePeriodSeconds == nil || *d.Spec.Template.Spec.TerminationGracePeriodSeconds <= 20 {
		t.Error("the grace period must exceed the service's shutdown timeout (20s)")
	}
	// Generated names (hash suffixes) must be what the pods refer to.
	secret := objs["Secret"][0].(*corev1.Secret)
	cm := objs["ConfigMap"][0].(*corev1.ConfigMap)
	var refs []string
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			refs = append(refs, e.SecretRef.Name)
		}
		if e.ConfigMapRef != nil {
			refs = append(refs, e.ConfigMapRef.Name)
		}
	}
	if !slices.Contains(refs, secret.Name) || !slices.Contains(refs, cm.Name) {
		t.Errorf("Deployment refers to %v, overlay makes %s and %s", refs, secret.Name, cm.Name)
	}
	// Every variable the manifests set is one the service reads.
	known := map[string]bool{}
	for _, v := range config.EnvNames() {
		known[v] = true
	}
	for k := range cm.Data {
		if !known[k] {
			t.Errorf("ConfigMap sets %s, which the service does not read", k)
		}
	}
	for k := range secret.StringData {
		if !known[k] {
			t.Errorf("Secret sets %s, which the service does not read", k)
		}
	}
	job := objs["Job"][0].(*batchv1.Job)
	if args := job.Spec.Template.Spec.Containers[0].Args; strings.Join(args, " ") != "migrate up" {
		t.Errorf("migration job runs %v", args)
	}
	// Selectors, as built: the replicas are the Service's, the PDB's and
	// the NetworkPolicy's; the Job's pod is the NetworkPolicy's only; the
	// policy's peers are PostgreSQL's and Keycloak's pods, not ours (a
	// selector left out matches every pod of the namespace for a policy,
	// none for a PDB).
	pods, jobPod := labels.Set(d.Spec.Template.Labels), labels.Set(job.Spec.Template.Labels)
	matches := func(what string, sel *metav1.LabelSelector, set labels.Set) bool {
		t.Helper()
		if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
			t.Errorf("%s selects every pod or none", what)
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s.Matches(set)
	}
	if !matches("the Deployment", d.Spec.Selector, pods) {
		t.Error("the Deployment's selector does not match its pods")
	}
	svc := objs["Service"][0].(*corev1.Service)
	if sel := labels.SelectorFromSet(svc.Spec.Selector); len(svc.Spec.Selector) == 0 || !sel.Matches(pods) || sel.Matches(jobPod) {
		t.Errorf("the Service selects %v: want the replicas, not the migration", svc.Spec.Selector)
	}
	pdb := objs["PodDisruptionBudget"][0].(*policyv1.PodDisruptionBudget)
	if !matches("the PodDisruptionBudget", pdb.Spec.Selector, pods) || matches("the PodDisruptionBudget", pdb.Spec.Selector, jobPod) {
		t.Errorf("the PodDisruptionBudget selects %v: want the replicas only", pdb.Spec.Selector)
	}
	np := objs["NetworkPolicy"][0].(*networkingv1.NetworkPolicy)
	if !matches("the NetworkPolicy", &np.Spec.PodSelector, pods) || !matches("the NetworkPolicy", &np.Spec.PodSelector, jobPod) {
		t.Errorf("the NetworkPolicy selects %v: want the replicas and the migration", np.Spec.PodSelector)
	}
	peers := map[string]bool{}
	for _, e := range np.Spec.Egress {
		for _, to := range e.To {
			if to.PodSelector == nil {
				continue
			}
			for _, name := range []string{"postgresql", "keycloak"} {
				if matches("an egress peer", to.PodSelector, labels.Set{"app.kubernetes.io/name": name}) {
					peers[name] = true
				}
			}
		}
	}
	if !peers["postgresql"] || !peers["keycloak"] {
		t.Errorf("the NetworkPolicy lets the pods reach %v, want PostgreSQL and Keycloak", peers)
	}
	// Every host the Ingresses serve is served over TLS, and it is the
	// host of the issuer the service expects in tokens.
	issuer, err := url.Parse(cm.Data["COMMUNITIES_ISSUER_BASE_URL"])
	if err != nil || issuer.Scheme != "https" {
		t.Errorf("the example's issuer %q is not https", cm.Data["COMMUNITIES_ISSUER_BASE_URL"])
	}
	for _, o := range objs["Ingress"] {
		ing := o.(*networkingv1.Ingress)
		var tlsHosts []string
		for _, tls := range ing.Spec.TLS {
			tlsHosts = append(tlsHosts, tls.Hosts...)
		}
		for _, r := range ing.Spec.Rules {
			if !slices.Contains(tlsHosts, r.Host) {
				t.Errorf("Ingress %s serves %s without TLS (tls hosts %v)", ing.Name, r.Host, tlsHosts)
			}
			if issuer != nil && r.Host != issuer.Host {
				t.Errorf("Ingress %s serves %s, the issuer is %s", ing.Name, r.Host, issuer.Host)
			}
		}
	}
	for path, want := range map[string]string{
		"/realms/terminology/communities":                                 "communities /realms/terminology/communities",
		"/auth/realms/terminology/communities/NDD":                        "communities /auth/realms/terminology/communities/NDD",
		"/realms/terminology/communities-authz/decision":                  "communities /realms/terminology/communities-authz/decision",
		"/realms/terminology/system-accounts":                             "communities /realms/terminology/system-accounts",
		"/realms/terminology/authz/protection/resource_set":               "keycloak /realms/terminology/authz/protection/resource_set",
		"/realms/terminology/protocol/openid-connect/token":               "keycloak /realms/terminology/protocol/openid-connect/token",
		"/auth/realms/terminology/protocol/openid-connect/token":          "keycloak /realms/terminology/protocol/openid-connect/token",
		"/admin/terminology/console/":                                     "keycloak /admin/terminology/console/",
		"/auth/admin/terminology/console/":                                "keycloak /admin/terminology/console/",
		"/admin/realms/terminology/groups":                                "keycloak /admin/realms/terminology/groups",
		"/auth/admin/realms/terminology/groups":                           "keycloak /admin/realms/terminology/groups",
		"/admin/serverinfo":                                               "keycloak /admin/serverinfo",
		"/.well-known/oauth-authorization-server/realms/terminology":      "keycloak /.well-known/oauth-authorization-server/realms/terminology",
		"/auth/.well-known/oauth-authorization-server/realms/terminology": "keycloak /.well-known/oauth-authorization-server/realms/terminology",
		"/.well-known/oauth-authorization-server/realms/master":           "nowhere",
		"/resources/abc/admin/communities/index.js":                       "keycloak /resources/abc/admin/communities/index.js",
		// Nothing else of Keycloak's: not the master realm, another
		// realm, /admin/ as a whole, health or metrics.
		"/auth/admin/master/console/":                  "nowhere",
		"/admin/master/console/":                       "nowhere",
		"/realms/master/protocol/openid-connect/token": "nowhere",
		"/auth/realms/master/account/":                 "nowhere",
		"/admin/realms/master/users":                   "nowhere",
		"/admin/realms/terminology2/users":             "nowhere",
		"/realms/terminology2/protocol/openid-connect": "nowhere",
		"/admin/":       "nowhere",
		"/health/ready": "nowhere",
		"/metrics":      "nowhere",
		"/authority":    "nowhere",
	} {
		if got := ingressRoute(t, objs["Ingress"], path); got != want {
			t.Errorf("the Ingresses send %s to %s, want %s", path, got, want)
		}
	}
}

// ingressRoute is where ingress-nginx sends path, as "service path": with
// use-regex it writes every path of the host as a case-insensitive regex
// anchored at the start, longest path first, and the first match wins;
// rewrite-target replaces the path with the match's groups
// (kubernetes.github.io/ingress-nginx/user-guide/ingress-path-matching).
func ingressRoute(t *testing.T, ingresses []any, path string) string {
	t.Helper()
	type rule struct {
		re      *regexp.Regexp
		length  int
		rewrite string
		backend string
	}
	var rules []rule
	for _, o := range ingresses {
		ing := o.(*networkingv1.Ingress)
		if ing.Annotations["nginx.ingress.kubernetes.io/use-regex"] != "true" {
			t.Fatalf("Ingress %s: without use-regex its paths are prefixes, which this test does not model", ing.Name)
		}
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				rules = append(rules, rule{regexp.MustCompile("(?i)^" + p.Path), len(p.Path),
					ing.Annotations["nginx.ingress.kubernetes.io/rewrite-target"], p.Backend.Service.Name})
			}
		}
	}
	slices.SortStableFunc(rules, func(a, b rule) int { return b.length - a.length })
	for _, r := range rules {
		m := r.re.FindStringSubmatchIndex(path)
		if m == nil {
			continue
		}
		if r.rewrite == "" {
			return r.backend + " " + path
		}
		return r.backend + " " + string(r.re.ExpandString(nil, r.rewrite, path, m))
	}
	return "nowhere"
}

// compose is the part of docker-compose.yml the test reads.
type compose struct {
	Services map[string]struct {
		Build struct {
			Context    string            `json:"context"`
			Dockerfile string            `json:"dockerfile"`
			Args       map[string]string `json:"args"`
		} `json:"build"`
		Image       string            `json:"image"`
		Command     []string          `json:"command"`
		Environment map[string]string `json:"environment"`
		Ports       []string          `json:"ports"`
		Volumes     []string          `json:"volumes"`
	} `json:"services"`
}

func TestComposeMatchesLocalStack(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deployDir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	v := harness.Versions()
	// Keycloak is built with the project's extension and admin theme, from
	// the pinned version, as the local stack runs it.
	kcBuild := c.Services["keycloak"].Build
	if kcBuild.Context != ".." || kcBuild.Dockerfile != "deploy/keycloak/Dockerfile" || kcBuild.Args["KEYCLOAK_VERSION"] != v["KEYCLOAK_VERSION"] ||
		c.Services["keycloak"].Image != "communities-keycloak:"+v["KEYCLOAK_VERSION"] {
		t.Errorf("compose's Keycloak is %+v %s, not deploy/keycloak/Dockerfile at Keycloak %s", kcBuild, c.Services["keycloak"].Image, v["KEYCLOAK_VERSION"])
	}
	dockerfile, err := os.ReadFile(filepath.Join(deployDir, "keycloak", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ARG KEYCLOAK_VERSION=" + v["KEYCLOAK_VERSION"] + "\n",
		"FROM keycloak/keycloak:${KEYCLOAK_VERSION} AS keycloak\n",
		// The same scripts as the local stack's, so the image holds what the tests ran.
		"/src/deploy/keycloak-extension/build.sh /opt/keycloak ",
		"/src/deploy/local/admin-theme.sh build",
		"/opt/keycloak/providers/", "/opt/keycloak/themes/communities",
	} {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Errorf("deploy/keycloak/Dockerfile lacks %q", want)
		}
	}
	local, err := os.ReadFile(filepath.Join(deployDir, "local", "keycloak.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(local, []byte(`"$EXT_DIR/build.sh"`)) {
		t.Error("deploy/local/keycloak.sh no longer builds the extension with deploy/keycloak-extension/build.sh")
	}
	if got := c.Services["postgres"].Image; got != "postgres:"+v["POSTGRES_MAJOR"] {
		t.Errorf("compose runs %s, deploy/versions.env pins PostgreSQL %s", got, v["POSTGRES_MAJOR"])
	}

	svc := c.Services["communities"].Environment
	known := map[string]bool{}
	for _, v := range config.EnvNames() {
		known[v] = true
	}
	for k := range svc {
		if !known[k] {
			t.Errorf("compose sets %s for the service, which it does not read", k)
		}
	}
	defaults := config.Default()
	// Published on this machine only, as deploy/local binds 127.0.0.1:
	// Keycloak's bootstrap admin is admin/admin, and the master realm
	// lets a private address in over plain http.
	for name, s := range c.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("compose publishes %s's %s on every interface; bind it to 127.0.0.1", name, p)
			}
		}
	}
	if svc["COMMUNITIES_LISTEN"] != defaults.Listen || !slices.Contains(c.Services["communities"].Ports, "127.0.0.1:8081:8081") {
		t.Errorf("service port: compose %q %v, default %q", svc["COMMUNITIES_LISTEN"], c.Services["communities"].Ports, defaults.Listen)
	}
	if !strings.HasSuffix(svc["KEYCLOAK_URL"], ":8080") || svc["COMMUNITIES_ADMIN_CLIENT_ID"] != defaults.AdminClientID {
		t.Errorf("Keycloak settings %v", svc)
	}

	// The realm the service manages is the one Keycloak imports, and the
	// admin client's secret is the realm's.
	realmFile, err := os.ReadFile(filepath.Join(harness.RepoDir(), "realm-export", svc["COMMUNITIES_REALMS"]+"-realm.json"))
	if err != nil {
		t.Fatalf("COMMUNITIES_REALMS=%s has no realm-export file: %v", svc["COMMUNITIES_REALMS"], err)
	}
	if !bytes.Contains(realmFile, []byte(`"secret": "`+svc["COMMUNITIES_ADMIN_CLIENT_SECRET"]+`"`)) {
		t.Error("compose's admin client secret is not the realm export's")
	}
	kc := c.Services["keycloak"]
	if !slices.Contains(kc.Volumes, "../realm-export:/opt/keycloak/data/import:ro") || !slices.Contains(kc.Command, "--import-realm") {
		t.Error("compose's Keycloak must import realm-export/")
	}
	if kc.Environment["KC_PROXY_HEADERS"] != "xforwarded" {
		t.Error("Keycloak behind nginx must honour X-Forwarded-* (as deploy/local/keycloak.sh does)")
	}
	if !bytes.Contains(local, []byte("--proxy-headers=xforwarded")) {
		t.Error("deploy/local/keycloak.sh no longer passes --proxy-headers=xforwarded")
	}

	// nginx gets every variable its template uses.
	tmpl, err := os.ReadFile(filepath.Join(deployDir, "nginx", "templates", "communities.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	ngx := c.Services["nginx"].Environment
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(string(tmpl), -1) {
		if ngx[m[1]] == "" {
			t.Errorf("nginx template uses ${%s}, compose does not set it", m[1])
		}
	}
	if ngx["COMMUNITIES_UPSTREAM"] != "communities:8081" || ngx["KEYCLOAK_UPSTREAM"] != "keycloak:8080" {
		t.Errorf("nginx upstreams %v", ngx)
	}
	// The door forwards Keycloak for the realms the service manages, no other.
	if ngx["KEYCLOAK_REALMS"] != strings.ReplaceAll(svc["COMMUNITIES_REALMS"], ",", "|") {
		t.Errorf("nginx forwards realms %q, the service manages %q", ngx["KEYCLOAK_REALMS"], svc["COMMUNITIES_REALMS"])
	}
	// The official image substitutes only the names its filter matches.
	filter, err := regexp.Compile(ngx["NGINX_ENVSUBST_FILTER"])
	if err != nil {
		t.Fatalf("NGINX_ENVSUBST_FILTER: %v", err)
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(string(tmpl), -1) {
		if !filter.MatchString(m[1]) {
			t.Errorf("nginx template uses ${%s}, which compose's NGINX_ENVSUBST_FILTER leaves out", m[1])
		}
	}
	if !strings.HasSuffix(svc["COMMUNITIES_ISSUER_BASE_URL"], ":"+strings.Split(c.Services["nginx"].Ports[0], ":")[1]) {
		t.Errorf("issuer base %s is not the front door's published port %v", svc["COMMUNITIES_ISSUER_BASE_URL"], c.Services["nginx"].Ports)
	}
}
