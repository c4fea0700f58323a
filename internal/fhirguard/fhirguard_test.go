package fhirguard

import (
	"net/url"
	"testing"
)

func TestUsageNamesCountsPerType(t *testing.T) {
	u := Usage{ByType: map[string]int{"ValueSet": 2, "CodeSystem": 1}, Total: 3}
	if got := u.String(); got != "3 resources (CodeSystem: 1, ValueSet: 2)" {
		t.Errorf("got %q", got)
	}
	if got := (Usage{ByType: map[string]int{"ConceptMap": 1}, Total: 1}).String(); got != "1 resource (ConceptMap: 1)" {
		t.Errorf("got %q", got)
	}
}

func TestQueryAsksForBothLabels(t *testing.T) {
	g := New(Options{System: "http://s"})
	q, _ := url.ParseQuery(g.Query("NDD"))
	if got := q.Get("_security"); got != "http://s|NDD.read,http://s|NDD.write" {
		t.Errorf("got %q", got)
	}
	g = New(Options{System: "http://s", SystemlessLabels: true})
	q, _ = url.ParseQuery(g.Query("NDD"))
	if got := q.Get("_security"); got != "http://s|NDD.read,|NDD.read,http://s|NDD.write,|NDD.write" {
		t.Errorf("systemless: got %q", got)
	}
}
