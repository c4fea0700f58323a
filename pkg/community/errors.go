package community

// Error is a failure whose Public message is fit for callers; Cause, which
// may name Keycloak's or PostgreSQL's internals (hosts, group ids, their
// error text), goes to the logs only. Kind is one of the Err values.
type Error struct {
	Kind   error
	Public string
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return e.Public
	}
	return e.Public + ": " + e.Cause.Error()
}

// Unwrap lets errors.Is find both the kind and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Cause} }

// unavailable wraps a failure of Keycloak or the registry for the caller.
func unavailable(public string, cause error) error {
	return &Error{Kind: ErrUnavailable, Public: public, Cause: cause}
}
