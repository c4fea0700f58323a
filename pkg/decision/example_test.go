package decision_test

import (
	"fmt"

	"github.com/nhs-terminology/communities/pkg/decision"
)

func ExampleDecide() {
	// Parse once per token, then decide per resource.
	p := decision.Parse("openid system/*.read grouping/XXX.read", []string{"PERM_NDD_WRITE"})

	const perms = decision.DefaultSystem
	labels := []decision.Coding{{System: perms, Code: "NDD.read"}, {System: perms, Code: "XXX.read"}}

	for _, in := range []decision.Interaction{decision.Read, decision.Update} {
		d := decision.Decide(p, decision.Request{ResourceType: "ValueSet", Interaction: in, Security: labels})
		fmt.Println(d.Allowed, d.Rule)
		fmt.Println(d.Reason())
	}

	r := p.Communities()
	fmt.Println("read:", r.Read, "write:", r.Write, "all read:", r.AllRead)
	// Output:
	// true community-privilege
	// read of ValueSet allowed: scope "system/*.read" grants read at API level and label "XXX.read" is matched by scope "grouping/XXX.read"
	// false no-api-access
	// update of ValueSet denied: no scope or authority grants update at API level (community privileges never raise API-level access)
	// read: [XXX] write: [NDD] all read: false
}
