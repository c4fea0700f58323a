package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/nhs-terminology/communities/internal/fault"
)

// Request bodies are small JSON objects; anything bigger is hostile or a
// mistake. Their nesting is bounded by the shape of the struct each is
// decoded into: none has a field of interface type, so a value nested
// deeper than the struct is a type error, and a member the struct lacks is
// refused before its value is read.
const maxBodyBytes = 64 << 10

var (
	errBody     = fault.Sentinel(fault.Invalid, "invalid request body")
	errTooLarge = tooLargeError{}
)

// tooLargeError is a body error (errBody) whose kind is fault.TooLarge, so
// that it answers 413, not 400.
type tooLargeError struct{}

func (tooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than %d bytes", errBody, maxBodyBytes)
}

func (tooLargeError) Is(target error) bool { return target == errBody || target == fault.TooLarge }

// decodeJSON reads r's body into v strictly: JSON content type, at most
// maxBodyBytes, one value, no unknown or duplicate members, names matched
// exactly. encoding/json would let the last of two duplicate keys win, and
// would match "Code" to a field named "code" as well, so that a proxy and
// this service could read different requests; encoding/json/v2
// (go-json-experiment/json) refuses both in the same single pass that
// decodes, which is also most of a decision's cost (docs/benchmarks.md).
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" { // the common case, parsed no further
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return &unsupportedMediaError{got: ct}
		}
	}
	var body bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= maxBodyBytes {
		body.Grow(int(n) + bytes.MinRead)
	}
	_, err := body.ReadFrom(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errTooLarge
	}
	if err != nil {
		// The cause (a network error: the server's read deadline on a body
		// sent too slowly, a connection cut) names this host's addresses.
		return fault.New(fault.Invalid, errBody.Error()+": it could not be read to its end", err)
	}
	if len(bytes.TrimSpace(body.Bytes())) == 0 {
		return fmt.Errorf("%w: empty; send a JSON object", errBody)
	}
	// Said apart from other syntax errors, so the caller learns that a
	// name was sent in another encoding.
	if !utf8.Valid(body.Bytes()) {
		return fmt.Errorf("%w: not valid UTF-8", errBody)
	}
	if err := json.Unmarshal(body.Bytes(), v, json.RejectUnknownMembers(true)); err != nil {
		return fmt.Errorf("%w: %w", errBody, describeJSONError(err))
	}
	return nil
}

type unsupportedMediaError struct{ got string }

func (e *unsupportedMediaError) Error() string {
	return fmt.Sprintf("Content-Type must be application/json, got %q", e.got)
}

func (e *unsupportedMediaError) Is(target error) bool { return target == fault.UnsupportedMedia }

// describeJSONError says what the decoder found wrong, in this API's words.
func describeJSONError(err error) error {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	isSyntax, isSemantic := errors.As(err, &syn), errors.As(err, &sem)
	switch {
	case isSyntax && errors.Is(syn.Err, jsontext.ErrDuplicateName):
		return fmt.Errorf("duplicate key at %s", syn.JSONPointer)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: unexpected end")
	case isSyntax:
		return fmt.Errorf("malformed JSON at byte %d: %w", syn.ByteOffset, syn.Err)
	case isSemantic && errors.Is(sem.Err, json.ErrUnknownName):
		return fmt.Errorf("unknown field %q", sem.JSONPointer.LastToken())
	case isSemantic && sem.GoType != nil && sem.JSONKind != 0:
		where := "the body"
		if sem.JSONPointer != "" {
			where = strconv.Quote(string(sem.JSONPointer))
		}
		got := sem.JSONKind.String()
		switch sem.JSONKind {
		case '[':
			got = "array"
		case '{':
			got = "object"
		}
		return fmt.Errorf("%s must be %s, not %s", where, jsonKindOf(sem.GoType), got)
	}
	return err
}

// jsonKindOf names the JSON a Go type is decoded from.
func jsonKindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return jsonKindOf(t.Elem())
	}
	return "a number"
}
