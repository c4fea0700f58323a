package auth

import (
	"strings"
	"testing"
)

func TestParseRequiredClaims(t *testing.T) {
	realms := []string{"terminology", "other"}
	got, err := ParseRequiredClaims([]string{"requesting_system", "terminology:reason_for_request=directcare", "other:urn:oid:1.2=x"}, realms)
	if err != nil {
		t.Fatal(err)
	}
	want := []RequiredClaim{
		{Name: "requesting_system"},
		{Realm: "terminology", Name: "reason_for_request", Value: "directcare"},
		{Realm: "other", Name: "urn:oid:1.2", Value: "x"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// A claim name with ":" and no realm in front was once read as a realm
	// prefix and never enforced; an unknown realm likewise.
	for _, bad := range []string{"urn:oid:1.2", "https://example.org/claim", "elsewhere:reason_for_request", "", "terminology:", "=x"} {
		_, err := ParseRequiredClaims([]string{bad}, realms)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "required claim") {
			t.Errorf("%q: unclear error %v", bad, err)
		}
	}
}

// TestRequiredClaimsAreText: a required claim is met only by a string that
// is not empty (and equal to the fixed value, if one is set); any other
// shape is missing.
func TestRequiredClaimsAreText(t *testing.T) {
	required := []RequiredClaim{{Name: "requesting_system"}, {Realm: "terminology", Name: "reason_for_request", Value: "directcare"}}
	for _, c := range []struct {
		claims map[string]any
		lacks  string
	}{
		{map[string]any{"requesting_system": "console", "reason_for_request": "directcare"}, ""},
		{map[string]any{"requesting_system": "", "reason_for_request": "directcare"}, "requesting_system"},
		{map[string]any{"requesting_system": []any{}, "reason_for_request": "directcare"}, "requesting_system"},
		{map[string]any{"requesting_system": map[string]any{}, "reason_for_request": "directcare"}, "requesting_system"},
		{map[string]any{"requesting_system": false, "reason_for_request": "directcare"}, "requesting_system"},
		{map[string]any{"requesting_system": 0.0, "reason_for_request": "directcare"}, "requesting_system"},
		{map[string]any{"requesting_system": "console", "reason_for_request": []any{"directcare"}}, "reason_for_request"},
		{map[string]any{"requesting_system": "console", "reason_for_request": "research"}, "reason_for_request must be directcare"},
	} {
		got := (&Principal{Claims: c.claims}).Lacks(required, "terminology")
		if (c.lacks == "") != (got == "") || !strings.Contains(got, c.lacks) {
			t.Errorf("%v: lacks %q, want %q", c.claims, got, c.lacks)
		}
	}
}
