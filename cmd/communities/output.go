package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// format is an --output value that takes only the formats a command
// writes: a mistyped one is refused when the flags are parsed, before
// anything is read or changed (reconcile --repair -o xml would otherwise
// repair and then fail to say what it did).
type format struct {
	value   string
	allowed []string
}

func (f *format) String() string { return f.value }
func (f *format) Type() string   { return "format" }

func (f *format) Set(v string) error {
	if !slices.Contains(f.allowed, v) {
		return fmt.Errorf("use %s", strings.Join(f.allowed, " or "))
	}
	f.value = v
	return nil
}

// outputFlag registers -o/--output on fs; the first of allowed is the
// default.
func outputFlag(fs *pflag.FlagSet, allowed ...string) *format {
	f := &format{value: allowed[0], allowed: allowed}
	fs.VarP(f, "output", "o", strings.Join(allowed, " or "))
	return f
}
