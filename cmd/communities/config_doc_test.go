package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nhs-terminology/communities/internal/config"
)

// TestConfigurationReferenceMatchesCode keeps docs/configuration.md true.
func TestConfigurationReferenceMatchesCode(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := 0
	check := func(flags *pflag.FlagSet, env map[string]string) {
		flags.VisitAll(func(f *pflag.Flag) {
			def := strings.Trim(f.DefValue, "[]")
			cell := ""
			if def != "" {
				cell = " `" + def + "`"
			}
			row := "| `--" + f.Name + "` | `" + env[f.Name] + "` |" + cell + " |"
			if !bytes.Contains(doc, []byte(row)) {
				t.Errorf("docs/configuration.md lacks the row %q", row)
			}
			documented++
		})
	}
	check(newServe(&bytes.Buffer{}).Flags(), config.EnvNames())
	check(newProxy(&bytes.Buffer{}).Flags(), config.ProxyEnvNames())
	if rows := strings.Count(string(doc), "\n| `--"); rows != documented {
		t.Errorf("docs/configuration.md has %d flag rows, the code %d flags", rows, documented)
	}
}

// TestHelpExplains: every command's --help explains it with an example,
// and the commands that reach the database name its variable.
func TestHelpExplains(t *testing.T) {
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		var out bytes.Buffer
		r := newRoot(&out, &out)
		r.SetArgs([]string{c.Name(), "--help"})
		if err := r.Execute(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "Examples:") {
			t.Errorf("%s --help has no example:\n%s", c.Name(), out.String())
		}
		if c.Name() != "version" && c.Name() != "probe" && !strings.Contains(out.String(), "DATABASE_URL") {
			t.Errorf("%s --help does not name DATABASE_URL", c.Name())
		}
	}
}
