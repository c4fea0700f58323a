package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"

	"github.com/nhs-terminology/communities/internal/fault"
)

// Request bodies are small JSON objects; anything bigger or deeper is
// hostile or a mistake.
const (
	maxBodyBytes = 64 << 10
	maxJSONDepth = 8
)

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
// maxBodyBytes, one value, no unknown fields, no duplicate keys, bounded
// nesting. encoding/json alone would let the last of two duplicate keys win
// silently, which lets a proxy and this service read different requests.
func decodeJSON(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &unsupportedMediaError{got: r.Header.Get("Content-Type")}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errTooLarge
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errBody, err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%w: empty; send a JSON object", errBody)
	}
	// encoding/json would turn invalid UTF-8 into U+FFFD silently, so a
	// name would be stored other than it was sent.
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: not valid UTF-8", errBody)
	}
	if err := checkShape(body); err != nil {
		return fmt.Errorf("%w: %w", errBody, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errBody, describeJSONError(err))
	}
	return nil
}

type unsupportedMediaError struct{ got string }

func (e *unsupportedMediaError) Error() string {
	return fmt.Sprintf("Content-Type must be application/json, got %q", e.got)
}

func (e *unsupportedMediaError) Is(target error) bool { return target == fault.UnsupportedMedia }

// checkShape walks the tokens of body once: exactly one value, nesting at
// most maxJSONDepth, no object with a key twice.
func checkShape(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // in an object: the next token is a key or '}'
	}
	var stack []*frame
	// valueDone marks the enclosing object as waiting for its next key.
	valueDone := func() {
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].expect = true
		}
	}
	values := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return describeJSONError(err)
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expect {
			top := stack[n-1]
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			key, _ := tok.(string)
			if top.keys[key] {
				return fmt.Errorf("duplicate key %q", key)
			}
			top.keys[key] = true
			top.expect = false
			continue
		}
		if len(stack) == 0 {
			if values++; values > 1 {
				return errors.New("more than one JSON value")
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
			}
			obj := tok == json.Delim('{')
			stack = append(stack, &frame{object: obj, keys: map[string]bool{}, expect: obj})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}

func describeJSONError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Errorf("field %q must be %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("malformed JSON at byte %d: %v", syn.Offset, syn)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("malformed JSON: unexpected end")
	}
	return err
}
