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

	"github.com/go-json-experiment/json/jsontext"

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
// most maxJSONDepth, no object with a key twice. jsontext (the syntax layer
// of encoding/json/v2) rejects duplicate names itself and reads tokens
// without allocating; encoding/json's Decoder.Token made this walk a
// quarter of a decision's time (docs/benchmarks.md).
func checkShape(body []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	for values := 0; ; {
		_, err := dec.ReadToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return describeShapeError(err)
		}
		switch depth := dec.StackDepth(); {
		case depth > maxJSONDepth:
			return fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
		case depth == 0: // a top-level value just ended
			if values++; values > 1 {
				return errors.New("more than one JSON value")
			}
		}
	}
}

// describeShapeError says what jsontext found wrong, in this API's words.
func describeShapeError(err error) error {
	var syn *jsontext.SyntacticError
	if !errors.As(err, &syn) {
		return err
	}
	switch {
	case errors.Is(syn.Err, jsontext.ErrDuplicateName):
		return fmt.Errorf("duplicate key at %s", syn.JSONPointer)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: unexpected end")
	}
	return fmt.Errorf("malformed JSON at byte %d: %v", syn.ByteOffset, syn.Err)
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
