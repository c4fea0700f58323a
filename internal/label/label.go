// Package label validates community security labels and names.
//
// Seed 000 calls the label "a short alphanumeric tag which will be a unique
// identifier for your community"; Ontoserver also accepts "_". The label
// becomes part of Keycloak role names (PERM_<label>_READ), client scope
// names (grouping/<label>.read) and group paths, so anything outside
// [A-Za-z0-9_] would have to be escaped in three different grammars.
package label

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"

	"github.com/nhs-terminology/communities/internal/fault"
)

// MaxLabelLen and MaxNameLen bound what Keycloak names and the registry hold.
const (
	MaxLabelLen = 64
	MaxNameLen  = 200
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = fault.Sentinel(fault.Invalid, "invalid")

// ValidateLabel reports whether s is an acceptable security label.
func ValidateLabel(s string) error {
	if s == "" {
		return fmt.Errorf("%w securityLabel: must not be empty", ErrInvalid)
	}
	if len(s) > MaxLabelLen {
		return fmt.Errorf("%w securityLabel: longer than %d characters", ErrInvalid, MaxLabelLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w securityLabel: only letters A-Z and a-z, digits and '_' are allowed (found %q at position %d)",
				ErrInvalid, firstRune(s[i:]), i+1)
		}
	}
	return nil
}

// NormalizeName trims a community name and validates it: 1 to MaxNameLen
// characters, valid UTF-8, no control characters, and nothing the PRECIS
// Nickname profile (RFC 8266) disallows: invisible and formatting
// characters (zero-width spaces, soft hyphens, direction overrides) would
// let two names that look alike, or one that displays as another, be
// distinct.
func NormalizeName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w communityName: not valid UTF-8", ErrInvalid)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w communityName: must not be empty", ErrInvalid)
	}
	if n := utf8.RuneCountInString(s); n > MaxNameLen {
		return "", fmt.Errorf("%w communityName: %d characters, at most %d allowed", ErrInvalid, n, MaxNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", fmt.Errorf("%w communityName: control characters are not allowed (found %U)", ErrInvalid, r)
		}
	}
	if _, err := precis.Nickname.CompareKey(s); err != nil {
		return "", fmt.Errorf("%w communityName: invisible or formatting characters (zero-width spaces, soft hyphens, direction overrides and the like) and unassigned code points are not allowed", ErrInvalid)
	}
	return s, nil
}

// Key is the case-folded form under which labels are unique (labels are
// ASCII).
func Key(s string) string { return strings.ToLower(s) }

// fold is stateless once made, and safe for concurrent use.
var fold = cases.Fold()

// NameKey is the form under which names are unique and searched: the
// PRECIS Nickname comparison key (width and spaces mapped, runs of spaces
// made one, NFKC, lower case), case-folded, so that "ΟΔΟΣ" and "οδος",
// "Café" composed and decomposed, "ＮＤＤ" and "NDD", "Straße" and
// "STRASSE", one space or two, are one name. For ASCII it is Key with
// spaces collapsed. A string the profile refuses (a search, or a name
// stored before NormalizeName checked the profile) keeps Key's form.
func NameKey(s string) string {
	k, err := precis.Nickname.CompareKey(s)
	if err != nil {
		return Key(s)
	}
	return norm.NFKC.String(fold.String(k))
}

func firstRune(s string) rune {
	r, _ := utf8.DecodeRuneInString(s)
	return r
}
