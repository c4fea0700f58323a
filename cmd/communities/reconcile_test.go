package main

import (
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/internal/community"
)

// TestReportIsInLabelOrder: the text report lists drift by label, so that
// two runs over the same realm read alike and a diff of them shows what
// changed (the report holds drift in a map).
func TestReportIsInLabelOrder(t *testing.T) {
	missing := []community.Drift{{What: "group", Problem: "missing"}}
	rep := community.Report{Realm: "r", Communities: 4, Drift: map[string][]community.Drift{}}
	for _, l := range []string{"ZZZ", "AAA", "MMM", "BBB"} {
		rep.Drift[l] = missing
	}
	var out strings.Builder
	if err := writeReports(&out, "text", []community.Report{rep}); err != nil {
		t.Fatal(err)
	}
	want := "r/AAA: group: missing\nr/BBB: group: missing\nr/MMM: group: missing\nr/ZZZ: group: missing\n" +
		"r: 4 communities checked, 4 difference(s), 4 left\n"
	if out.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", out.String(), want)
	}
}
