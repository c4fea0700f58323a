package headerlimit

import (
	"net/http"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	r := &http.Request{Method: "GET", RequestURI: "/x", Proto: "HTTP/1.1", Host: "h",
		Header: http.Header{"Authorization": {"Bearer " + strings.Repeat("t", 100)}, "X-Padding": {"ab", "cd"}}}
	// Request line: 3 + 2 + 8 + 4; Host: 4 + 1 + 4; Authorization: 13 + 107
	// + 4; X-Padding: two lines of 9 + 2 + 4.
	const total = 17 + 9 + 124 + 30
	if e, over := Check(r, total); over || e.Total != total {
		t.Errorf("at the limit: %+v over=%v, want total %d and not over", e, over, total)
	}
	e, over := Check(r, total-1)
	if !over || e.Total != total || e.Limit != total-1 || e.Largest != "Authorization" || e.LargestBytes != 124 {
		t.Fatalf("one byte over: %+v over=%v", e, over)
	}
	if e.Kind() != "authorization" || !strings.Contains(e.Detail(), "the largest is Authorization (124 bytes): the token carries too many roles or scopes") {
		t.Errorf("kind %q, detail %q", e.Kind(), e.Detail())
	}
	if _, over := Check(r, 0); over {
		t.Error("a limit of 0 checks nothing")
	}
}

// TestCheckCountsURLAndHost: Go keeps neither the request line nor Host in
// the header map; a long one of either is over the limit all the same.
func TestCheckCountsURLAndHost(t *testing.T) {
	long := strings.Repeat("a", 2000)
	for name, r := range map[string]*http.Request{
		RequestLine: {Method: "GET", RequestURI: "/communities?search=" + long, Proto: "HTTP/1.1", Header: http.Header{}},
		"Host":      {Method: "GET", RequestURI: "/", Proto: "HTTP/1.1", Host: long, Header: http.Header{}},
	} {
		e, over := Check(r, 1024)
		if !over || e.Largest != name || e.Kind() != "other" {
			t.Errorf("%s of 2000 bytes: %+v over=%v", name, e, over)
		}
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
