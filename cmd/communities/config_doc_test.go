package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nhs-terminology/communities/pkg/config"
)

// TestConfigurationReferenceMatchesCode keeps docs/configuration.md true.
func TestConfigurationReferenceMatchesCode(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	env := config.EnvNames()
	serve := newServe(&bytes.Buffer{})
	documented := 0
	serve.Flags().VisitAll(func(f *pflag.Flag) {
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
	if rows := strings.Count(string(doc), "\n| `--"); rows != documented {
		t.Errorf("docs/configuration.md has %d flag rows, the code %d flags", rows, documented)
	}
}

// TestHelpExplains: each command's --help names its environment variables
// and has an example.
func TestHelpExplains(t *testing.T) {
	for _, args := range [][]string{{"serve", "--help"}, {"migrate", "--help"}} {
		var out bytes.Buffer
		root := newRoot(&out, &out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "Examples:") || !strings.Contains(out.String(), "DATABASE_URL") {
			t.Errorf("%v:\n%s", args, out.String())
		}
	}
}
