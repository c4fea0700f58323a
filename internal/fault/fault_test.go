package fault

import (
	"errors"
	"fmt"
	"testing"
)

func TestKinds(t *testing.T) {
	dup := Sentinel(Conflict, "duplicate")
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"plain", errors.New("boom"), nil},
		{"sentinel", dup, Conflict},
		{"wrapped sentinel", fmt.Errorf("%w: NDD", dup), Conflict},
		{"public error", New(Forbidden, "no", nil), Forbidden},
		{"upstream refused", Upstream("Keycloak refused", fmt.Errorf("PUT x: %w", Sentinel(Refused, "HTTP 400"))), Refused},
		{"upstream down", Upstream("Keycloak is down", errors.New("connection refused")), Unavailable},
		{"upstream lost what it was asked about", Upstream("Keycloak could not add the member", fmt.Errorf("PUT x: %w", Sentinel(NotFound, "HTTP 404"))), Refused},
		{"nil", nil, nil},
		{"outer kind decides", New(Unavailable, "Keycloak could not", Sentinel(NotFound, "404")), Unavailable},
	} {
		if got := KindOf(c.err); got != c.want {
			t.Errorf("%s: kind %v, want %v", c.name, got, c.want)
		}
	}
	if dup.Error() != "duplicate" {
		t.Errorf("a sentinel's text changed: %q", dup.Error())
	}
}

func TestErrorKeepsCause(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.7:5432: refused")
	err := fmt.Errorf("create: %w", New(Unavailable, "the registry is unavailable", cause))
	var pub *Error
	if !errors.As(err, &pub) || pub.Public != "the registry is unavailable" {
		t.Fatalf("public part lost: %v", err)
	}
	if !errors.Is(err, cause) || !errors.Is(err, Unavailable) {
		t.Errorf("kind or cause lost: %v", err)
	}
}
