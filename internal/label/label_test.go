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
		// What would make a look-alike or a name that displays as another.
		{"National\u200b data dictionary", "", false},
		{"Nat\u00adional data dictionary", "", false},
		{"abc\u202egfe", "", false},
		{"\u2066NDD\u2069", "", false},
		// Joiners where a script needs them are kept.
		{"\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", true},
		{"Terminology 🙂", "Terminology 🙂", true},
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

// TestNameKey: names that read alike are one name; names that differ stay
// apart.
func TestNameKey(t *testing.T) {
	same := [][2]string{
		{"National data dictionary", "NATIONAL DATA DICTIONARY"},
		{"National  data dictionary", "national data dictionary"},
		{"National\u00a0data dictionary", "national data dictionary"},
		{"\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2"}, // ΟΔΟΣ, οδος: final sigma
		{"Caf\u00e9", "Cafe\u0301"},                              // composed, decomposed
		{"\uff2e\uff24\uff24", "NDD"},                            // full width
		{"Stra\u00dfe", "STRASSE"},
		{"\u01c4", "\u01c6"},
	}
	for _, p := range same {
		if a, b := NameKey(p[0]), NameKey(p[1]); a != b {
			t.Errorf("NameKey(%q) = %q, NameKey(%q) = %q; want one key", p[0], a, p[1], b)
		}
	}
	apart := [][2]string{
		{"National data dictionary", "National data dictionaries"},
		{"Cafe", "Caf\u00e9"},
		{"NDD", "ND D"},
	}
	for _, p := range apart {
		if NameKey(p[0]) == NameKey(p[1]) {
			t.Errorf("NameKey(%q) = NameKey(%q) = %q; want two keys", p[0], p[1], NameKey(p[0]))
		}
	}
	// A label's key is its name key: one search matches both.
	for _, l := range []string{"NDD", "a_B1"} {
		if NameKey(l) != Key(l) {
			t.Errorf("NameKey(%q) = %q, Key = %q", l, NameKey(l), Key(l))
		}
	}
	// What the profile refuses keeps Key's form (names stored before the
	// profile was checked, searches).
	if k := NameKey("A\u200bB"); k != "a\u200bb" {
		t.Errorf("NameKey of a refused string = %q", k)
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
		if k := NameKey(n); k != NameKey(k) {
			t.Fatalf("NameKey not idempotent on %q: %q then %q", n, k, NameKey(k))
		}
		again, err := NormalizeName(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeName not idempotent on %q", n)
		}
	})
}
