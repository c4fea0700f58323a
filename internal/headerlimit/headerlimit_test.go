package headerlimit

import (
	"net/http"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer " + strings.Repeat("t", 100)}, "X-Padding": {"ab", "cd"}}
	// Authorization: 13 + 107 + 4; X-Padding: two lines of 9 + 2 + 4.
	const total = 124 + 30
	if e, over := Check(h, total); over || e.Total != total {
		t.Errorf("at the limit: %+v over=%v, want total %d and not over", e, over, total)
	}
	e, over := Check(h, total-1)
	if !over || e.Total != total || e.Limit != total-1 || e.Largest != "Authorization" || e.LargestBytes != 124 {
		t.Fatalf("one byte over: %+v over=%v", e, over)
	}
	if e.Kind() != "authorization" || !strings.Contains(e.Detail(), "the largest is Authorization (124 bytes): the token carries too many roles or scopes") {
		t.Errorf("kind %q, detail %q", e.Kind(), e.Detail())
	}
	if _, over := Check(h, 0); over {
		t.Error("a limit of 0 checks nothing")
	}
}

func TestKindNeverNamesTheCallersHeader(t *testing.T) {
	for name, want := range map[string]string{"Authorization": "authorization", "Cookie": "cookie", "X-Anything": "other", "": "other"} {
		if got := (Excess{Largest: name}).Kind(); got != want {
			t.Errorf("%q: %q, want %q", name, got, want)
		}
	}
	// Only a token's excess is blamed on roles and scopes.
	if d := (Excess{Largest: "Cookie"}).Detail(); strings.Contains(d, "token") {
		t.Errorf("cookie detail blames a token: %s", d)
	}
}
