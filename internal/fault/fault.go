// Package fault is the service's one error vocabulary. Every package says
// what kind of failure it hit with these kinds, keeps the cause with %w,
// and the HTTP layer maps kinds to statuses in exactly one place (like
// OpenFGA's HandleError). A failure of no known kind is an internal error:
// callers get a 500 that hides it, the log keeps it.
package fault

import "errors"

// The kinds. errors.Is(err, kind) finds a kind anywhere in a chain.
var (
	// Invalid: the request itself is wrong; retrying it will not help.
	Invalid = errors.New("invalid")
	// Unauthenticated: no valid credentials.
	Unauthenticated = errors.New("unauthenticated")
	// Forbidden: valid credentials, not allowed.
	Forbidden = errors.New("forbidden")
	// NotFound: what the request names does not exist.
	NotFound = errors.New("not found")
	// MethodNotAllowed: the resource exists, the method does not apply.
	MethodNotAllowed = errors.New("method not allowed")
	// Conflict: the request clashes with the current state.
	Conflict = errors.New("conflict")
	// TooLarge: a request body over its limit.
	TooLarge = errors.New("too large")
	// HeadersTooLarge: request headers over their limit (most often a
	// token carrying too many roles or scopes).
	HeadersTooLarge = errors.New("request headers too large")
	// UnsupportedMedia: a request body of a type the endpoint does not take.
	UnsupportedMedia = errors.New("unsupported media type")
	// Unprocessable: a well-formed request carrying something unusable
	// (a token to judge that is not valid).
	Unprocessable = errors.New("unprocessable")
	// Unavailable: a server the service depends on did not answer (or
	// answered 5xx); retrying later may help.
	Unavailable = errors.New("unavailable")
	// Refused: a server the service depends on answered, and refused what
	// the service asked (a 4xx from Keycloak); retrying will not help.
	Refused = errors.New("refused upstream")
)

// kinds, in the order KindOf tries them.
var kinds = []error{Invalid, Unauthenticated, Forbidden, NotFound, MethodNotAllowed, Conflict, TooLarge, HeadersTooLarge, UnsupportedMedia,
	Unprocessable, Refused, Unavailable}

// KindOf returns the kind of err, or nil when it has none (internal). The
// outermost Error decides: a cause's own kind (a 404 inside "Keycloak
// could not make the community") does not leak through it.
func KindOf(err error) error {
	var e *Error
	if errors.As(err, &e) {
		err = e.Kind
	}
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// Error is a failure with a message fit for callers. Cause, which may name
// another system's internals (hosts, ids, its error text), is for logs.
type Error struct {
	Kind   error
	Public string
	Cause  error
}

// New returns an Error of kind with public text and the cause kept.
func New(kind error, public string, cause error) error {
	return &Error{Kind: kind, Public: public, Cause: cause}
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return e.Public
	}
	return e.Public + ": " + e.Cause.Error()
}

// Unwrap lets errors.Is and errors.As find both the kind and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Cause} }

// Sentinel is a named error of a kind whose text is msg alone, for
// packages' own errors (community.ErrDuplicate is a Conflict).
func Sentinel(kind error, msg string) error { return &sentinel{msg: msg, kind: kind} }

type sentinel struct {
	msg  string
	kind error
}

func (s *sentinel) Error() string        { return s.msg }
func (s *sentinel) Is(target error) bool { return target == s.kind }

// Upstream wraps a failure of a server the service depends on: Refused
// when the cause says that server refused the request, or answered that
// what it was asked about does not exist (a 404 that the caller did not
// expect: retrying will not make it exist), else Unavailable.
func Upstream(public string, cause error) error {
	if errors.Is(cause, Refused) || errors.Is(cause, NotFound) {
		return New(Refused, public, cause)
	}
	return New(Unavailable, public, cause)
}
