package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagsAreCheckedFirst: a mistyped --output, and a file whose realm
// --realms (or COMMUNITIES_REALMS) does not name, are refused before any
// connection is made (the database URL here names nothing that listens).
func TestFlagsAreCheckedFirst(t *testing.T) {
	file := filepath.Join(t.TempDir(), "communities.yaml")
	if err := os.WriteFile(file, []byte("realm: master\ncommunities: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		r := newRoot(&out, &out)
		r.SetArgs(args)
		err := r.Execute()
		if err == nil {
			t.Fatalf("%v succeeded:\n%s", args, out.String())
		}
		return err.Error()
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "-f", file, "-o", "yaml"}, `invalid argument "yaml" for "-o, --output" flag: use text or json`},
		{[]string{"apply", "-f", file, "--output", "JSON"}, `invalid argument "JSON" for "-o, --output" flag: use text or json`},
		{[]string{"reconcile", "--repair", "-o", "xml"}, `invalid argument "xml" for "-o, --output" flag: use text or json`},
		{[]string{"export", "-o", "text"}, `invalid argument "text" for "-o, --output" flag: use yaml or json`},
		{[]string{"apply", "-f", file, "--realms", "terminology,other"}, `realm "master" is not one of --realms (terminology,other)`},
		{[]string{"plan", "-f", file, "--realms", "terminology"}, `realm "master" is not one of --realms (terminology)`},
		{[]string{"export", "--realm", "master", "--realms", "terminology"}, `realm "master" is not one of --realms (terminology)`},
	} {
		if got := run(tc.args...); !strings.Contains(got, tc.want) {
			t.Errorf("%v: %s, want %s", tc.args, got, tc.want)
		}
	}
	t.Setenv("COMMUNITIES_REALMS", "terminology")
	if got := run("apply", "-f", file); !strings.Contains(got, `realm "master" is not one of --realms (terminology)`) {
		t.Errorf("apply with COMMUNITIES_REALMS: %s", got)
	}
}
