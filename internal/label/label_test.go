package label

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateLabel(t *testing.T) {
	ok := []string{"NDD", "bird", "SNOMED", "a", "A_1", strings.Repeat("x", MaxLabelLen)}
	for _, s := range ok {
		if err := ValidateLabel(s); err != nil {
			t.Errorf("ValidateLabel(%q) = %v, want nil", s, err)
		}
	}
	bad := []string{"", "NDD.read", "a/b", "..", "a b", "NDD\u0430", "x'; DROP TABLE", "{{x}}", "${x}", "-x",
		strings.Repeat("x", MaxLabelLen+1), "ä", "a\x00", "a%2F"}
	for _, s := range bad {
		err := ValidateLabel(s)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateLabel(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"National data dictionary", "National data dictionary", true},
		{"  Bird watching \t", "Bird watching", true},
		{"Ünïcødé names ✓", "Ünïcødé names ✓", true},
		{strings.Repeat("é", MaxNameLen), strings.Repeat("é", MaxNameLen), true},
		{strings.Repeat("é", MaxNameLen+1), "", false},
		{"", "", false},
		{"   ", "", false},
		{"bell\x07", "", false},
		{"line\nbreak", "", false},
		{"del\x7f", "", false},
		{"sep\u2028arator", "", false},
		{"\xff\xfe", "", false},
	}
	for _, c := range cases {
		got, err := NormalizeName(c.in)
		if c.ok && (err != nil || got != c.want) {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if !c.ok && !errors.Is(err, ErrInvalid) {
			t.Errorf("NormalizeName(%q) = %q, %v; want ErrInvalid", c.in, got, err)
		}
	}
}

func FuzzValidateLabel(f *testing.F) {
	for _, s := range []string{"NDD", "a.b", "", "x/y", "\u0430"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateLabel(s) != nil {
			return
		}
		// An accepted label must be safe in role names, scope names and paths.
		if strings.ContainsAny(s, "./ %\\") || len(s) == 0 || len(s) > MaxLabelLen {
			t.Fatalf("accepted unsafe label %q", s)
		}
	})
}

func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"Bird watching", " x ", "\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeName(s)
		if err != nil {
			return
		}
		if n != strings.TrimSpace(n) || n == "" {
			t.Fatalf("NormalizeName(%q) = %q: not trimmed", s, n)
		}
		again, err := NormalizeName(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeName not idempotent on %q", n)
		}
	})
}
