package api

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

type sample struct {
	A string   `json:"a"`
	B []string `json:"b"`
}

func decodeString(ct, body string) error {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", ct)
	var v sample
	return decodeJSON(r, &v)
}

func TestDecodeJSON(t *testing.T) {
	ok := []string{`{"a":"x"}`, `{"a":"x","b":["1","2"]}`, ` {"b":[]} `, `{}`}
	for _, b := range ok {
		if err := decodeString("application/json; charset=utf-8", b); err != nil {
			t.Errorf("decode %s: %v", b, err)
		}
	}
	bad := map[string]string{
		"duplicate":      `{"a":"x","a":"y"}`,
		"nested dup":     `{"b":["x"],"a":"1","b":[]}`,
		"unknown field":  `{"a":"x","c":1}`,
		"wrong type":     `{"a":1}`,
		"two values":     `{"a":"x"}{"a":"y"}`,
		"trailing":       `{"a":"x"} 1`,
		"malformed":      `{"a":`,
		"empty":          ``,
		"deep":           `{"b":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`,
		"too big":        `{"a":"` + strings.Repeat("x", maxBodyBytes) + `"}`,
		"not an object":  `"x"`,
		"array of junk":  `[1,2]`,
		"null byte junk": "{\"a\":\"x\"}\x00",
		"invalid UTF-8":  "{\"a\":\"\xff\xfe\"}",
		"other case":     `{"A":"x"}`,
	}
	for name, b := range bad {
		if err := decodeString("application/json", b); !errors.Is(err, errBody) {
			t.Errorf("%s: decode %.40q = %v, want errBody", name, b, err)
		}
	}
	// The caller learns what to mend.
	for body, want := range map[string]string{
		`{"a":"x","a":"y"}`: "duplicate key at /a",
		`{"a":"x","c":1}`:   `unknown field "c"`,
		`{"A":"x"}`:         `unknown field "A"`,
		`{"b":[1]}`:         `"/b/0" must be a string, not number`,
		`[1,2]`:             "the body must be an object, not array",
		`{"a":`:             "unexpected end",
	} {
		if err := decodeString("application/json", body); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("decode %s = %v, want it to say %q", body, err, want)
		}
	}
	var ume *unsupportedMediaError
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/jsonx"} {
		if err := decodeString(ct, `{"a":"x"}`); !errors.As(err, &ume) {
			t.Errorf("content type %q: %v, want unsupported media", ct, err)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":"x"}`, `{"a":"x","a":"y"}`, `[[[]]]`, `{"b":["1"]}`, `{`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		_ = decodeString("application/json", body)
	})
}

// failingBody sends part of a body, then fails as a connection does when
// the server's read deadline passes.
type failingBody struct{ sent bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, `{"a":`), nil
	}
	return 0, &net.OpError{Op: "read", Net: "tcp", Source: &net.TCPAddr{IP: net.IPv4(10, 42, 7, 13), Port: 8081},
		Addr: &net.TCPAddr{IP: net.IPv4(10, 42, 0, 1), Port: 51234}, Err: os.ErrDeadlineExceeded}
}

func (*failingBody) Close() error { return nil }

// TestBodyCutOffHidesAddresses: a body that cannot be read to its end is a
// 400 whose detail says so and names none of the connection's addresses.
func TestBodyCutOffHidesAddresses(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/realms/r/communities", nil)
	r.Body = &failingBody{}
	r.Header.Set("Content-Type", "application/json")
	err := decodeJSON(r, &sample{})
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = r
	(&handler{}).fail(c, err)
	if w.Code != 400 || strings.Contains(w.Body.String(), "10.42") || !strings.Contains(w.Body.String(), "could not be read to its end") {
		t.Errorf("%d %s", w.Code, w.Body)
	}
}
