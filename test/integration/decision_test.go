package integration

import (
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/pkg/decision"
	"github.com/nhs-terminology/communities/test/harness"
)

// TestDecisionPoint asks the decision endpoints about real tokens from the
// realm, with the seeds' rules: cumulative with API level (003), any one
// label suffices (003's NDD/XXX example).
func TestDecisionPoint(t *testing.T) {
	f := newFixture(t)
	author := f.realm.UserToken(t, "author")
	f.create(t, author, "NDD", "National data dictionary").Expect(t, 201)
	harness.Do(t, "PUT", f.base+"/NDD/consumer/consumer", author, nil).Expect(t, 204)
	harness.Do(t, "PUT", f.base+"/NDD/author/approver", author, nil).Expect(t, 204)
	consumer := f.realm.UserToken(t, "consumer")
	approver := f.realm.UserToken(t, "approver")
	fhir := f.realm.ClientToken(t, "fhir-server", "fhir-server-secret")
	authz := f.svc.URL + "/realms/" + f.realm.Name + "/communities-authz"
	label := func(code string) map[string]string {
		return map[string]string{"system": decision.DefaultSystem, "code": code}
	}
	type answer struct {
		Allowed                                  bool
		Rule, Reason, APIGrant, Label, Privilege string
	}
	ask := func(token string, body map[string]any, want int) answer {
		t.Helper()
		resp := harness.Do(t, "POST", authz+"/decision", token, body).Expect(t, want)
		harness.ConformsToOpenAPI(t, "POST", authz+"/decision", resp)
		var a answer
		if want == 200 {
			resp.JSON(t, &a)
		}
		return a
	}
	cases := []struct {
		name        string
		token       string
		interaction string
		labels      []map[string]string
		allowed     bool
		rule        string
		newLabels   []map[string]string
	}{
		{"seed 003: NDD.read and XXX.read, consumer of NDD", consumer, "read", []map[string]string{label("NDD.read"), label("XXX.read")}, true, "community-privilege", nil},
		{"seed 003: XXX.read only", consumer, "read", []map[string]string{label("XXX.read")}, false, "no-community-privilege", nil},
		{"search with NDD.read", consumer, "search", []map[string]string{label("NDD.read")}, true, "community-privilege", nil},
		{"unlabelled", consumer, "read", nil, true, "unlabelled", nil},
		{"labels of another system do not count", consumer, "read", []map[string]string{{"system": "http://example.org/other", "code": "XXX.read"}}, true, "unlabelled", nil},
		{"seed 003: community write without API write", consumer, "update", []map[string]string{label("NDD.write")}, false, "no-api-access", nil},
		{"author of NDD updates NDD.write", approver, "update", []map[string]string{label("NDD.write")}, true, "community-privilege",
			[]map[string]string{label("NDD.write")}},
		{"author of NDD, XXX.write only", approver, "delete", []map[string]string{label("XXX.write")}, false, "no-community-privilege", nil},
		{"create without labels needs API write only", approver, "create", nil, true, "create", nil},
		{"create in own community", approver, "create", nil, true, "create", []map[string]string{label("NDD.read"), label("NDD.write")}},
		// Security review: writes were judged by the stored labels only.
		{"create planting XXX.write", approver, "create", nil, false, "label-change-denied", []map[string]string{label("NDD.write"), label("XXX.write")}},
		{"update planting XXX.write", approver, "update", []map[string]string{label("NDD.write")}, false, "label-change-denied",
			[]map[string]string{label("NDD.write"), label("XXX.write")}},
		{"author of NDD strips NDD.read to publish", approver, "update", []map[string]string{label("NDD.read"), label("NDD.write")}, false,
			"opens-resource-denied", []map[string]string{label("NDD.write")}},
		{"update keeping its labels", approver, "patch", []map[string]string{label("NDD.read"), label("NDD.write")}, true,
			"community-privilege", []map[string]string{label("NDD.read"), label("NDD.write")}},
		// Security review: a mistyped label made the resource unlabelled.
		{"mistyped NDD.READ", consumer, "read", []map[string]string{label("NDD.READ")}, false, "invalid-label", nil},
		{"bare NDD beside NDD.read", consumer, "read", []map[string]string{label("NDD.read"), label("NDD")}, false, "invalid-label", nil},
		{"near-miss system", consumer, "read", []map[string]string{{"system": decision.DefaultSystem + "/", "code": "NDD.read"}}, false, "invalid-label", nil},
		// A second review: a versioned system and a label without a
		// system (not taken as labels here) opened the resource.
		{"versioned near-miss system", consumer, "read", []map[string]string{{"system": decision.DefaultSystem + "|1.0", "code": "NDD.read"}}, false, "invalid-label", nil},
		{"label without a system", consumer, "read", []map[string]string{{"code": "XXX.read"}}, false, "invalid-label", nil},
		// A third review: a system of spaces or invisible characters only
		// was taken for another system, and the resource for unlabelled.
		{"blank system", consumer, "read", []map[string]string{{"system": " ", "code": "NDD.read"}}, false, "invalid-label", nil},
		{"invisible system", consumer, "read", []map[string]string{{"system": "\u200b", "code": "XXX.read"}}, false, "invalid-label", nil},
		{"a consumer may not create", consumer, "create", nil, false, "no-api-access", nil},
		{"open label", consumer, "read", []map[string]string{label("*.read")}, true, "open-label", nil},
	}
	for _, c := range cases {
		a := ask(c.token, map[string]any{"resourceType": "CodeSystem", "interaction": c.interaction, "security": c.labels, "newSecurity": c.newLabels}, 200)
		if a.Allowed != c.allowed || a.Rule != c.rule || a.Reason == "" {
			t.Errorf("%s: %+v, want allowed=%v rule=%s", c.name, a, c.allowed, c.rule)
		}
	}
	a := ask(consumer, map[string]any{"resourceType": "CodeSystem", "interaction": "read", "security": []map[string]string{label("NDD.read")}}, 200)
	if a.Label != "NDD.read" || (a.Privilege != "grouping/NDD.read" && a.Privilege != "PERM_NDD_READ") || a.APIGrant != "FHIR_READ" {
		t.Errorf("explanation %+v", a)
	}

	// A trusted client judges another token; others may not.
	a = ask(fhir, map[string]any{"resourceType": "ValueSet", "interaction": "read", "security": []map[string]string{label("NDD.read")}, "token": consumer}, 200)
	if !a.Allowed {
		t.Errorf("fhir-server judging the consumer: %+v", a)
	}
	// The FHIR server's own account holds no API access (the demo realm
	// gives its service account no role), so its secret alone reads nothing.
	a = ask(fhir, map[string]any{"resourceType": "ValueSet", "interaction": "read", "security": []map[string]string{label("NDD.read")}}, 200)
	if a.Allowed || a.Rule != "no-api-access" {
		t.Errorf("fhir-server's own token: %+v", a)
	}
	a = ask(fhir, map[string]any{"resourceType": "ValueSet", "interaction": "read"}, 200)
	if a.Allowed || a.Rule != "no-api-access" {
		t.Errorf("fhir-server's own token, an unlabelled resource: %+v", a)
	}
	ask(consumer, map[string]any{"resourceType": "ValueSet", "interaction": "read", "token": approver}, 403)
	ask(fhir, map[string]any{"resourceType": "ValueSet", "interaction": "read", "token": consumer[:len(consumer)-4] + "AAAA"}, 422)
	ask(consumer, map[string]any{"resourceType": "ValueSet", "interaction": "frobnicate"}, 400)
	ask(consumer, map[string]any{"interaction": "read"}, 400)
	// Labels where the rules do not read them are refused, not ignored: a
	// create's in "security" were judged absent, so any writer could plant
	// any label.
	ask(approver, map[string]any{"resourceType": "ValueSet", "interaction": "create", "security": []map[string]string{label("XXX.write")}}, 400)
	ask(consumer, map[string]any{"resourceType": "ValueSet", "interaction": "read", "newSecurity": []map[string]string{label("NDD.read")}}, 400)
	ask("", map[string]any{"resourceType": "ValueSet", "interaction": "read"}, 401)

	// Labels for search narrowing.
	var l struct {
		Read, Write       []string
		AllRead, AllWrite bool
		System            string
	}
	resp := harness.Do(t, "GET", authz+"/labels", consumer, nil).Expect(t, 200)
	harness.ConformsToOpenAPI(t, "GET", authz+"/labels", resp)
	resp.JSON(t, &l)
	if strings.Join(l.Read, ",") != "NDD" || len(l.Write) != 0 || l.AllRead || l.System != decision.DefaultSystem {
		t.Errorf("consumer's labels %+v", l)
	}
	resp = harness.Do(t, "POST", authz+"/labels", fhir, map[string]string{"token": approver}).Expect(t, 200)
	harness.ConformsToOpenAPI(t, "POST", authz+"/labels", resp)
	resp.JSON(t, &l)
	if strings.Join(l.Read, ",") != "NDD" || strings.Join(l.Write, ",") != "NDD" {
		t.Errorf("approver's labels %+v", l)
	}
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	harness.Do(t, "GET", authz+"/labels", sd, nil).Expect(t, 200).JSON(t, &l)
	if !l.AllRead || !l.AllWrite {
		t.Errorf("service desk (PERM_READ, PERM_WRITE) labels %+v", l)
	}
	harness.Do(t, "POST", authz+"/labels", consumer, map[string]string{"token": approver}).Expect(t, 403)

	metrics := string(harness.Do(t, "GET", f.svc.URL+"/metrics", "", nil).Expect(t, 200).Body)
	for _, want := range []string{`communities_decisions_total{outcome="allow",rule="community-privilege"}`, `communities_decisions_total{outcome="deny",rule="no-api-access"}`,
		`communities_decisions_total{outcome="deny",rule="invalid-label"}`, "communities_decision_near_miss_labels_total 2"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
