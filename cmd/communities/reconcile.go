package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/core"
)

// exitError ends the program with code, having already said why.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newReconcile(stdout, stderr io.Writer) *cobra.Command {
	var (
		cfg    config.Config
		repair bool
		output *format
	)
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Find (and with --repair fix) differences between the registry and Keycloak",
		Long: `Check every community of the managed realms against Keycloak:

  - operations a crashed replica abandoned are undone (creates) or finished (deletes),
    and what Keycloak made for a create after its undo (a call it committed
    late) is removed, even without --repair;
  - missing roles, groups, role mappings, client scopes, scope mappings and
    default client scopes are reported, and recreated with --repair;
  - artefacts that exist but were not made for the community are reported only;
  - community groups without a registry row are reported, and with --repair
    removed when this service made them.

A community client scope found on a FHIR client without its role mapping is in
every user's token: it is detached at once, even without --repair, and
reported as CRITICAL. Without --repair the schema is never migrated (a pending
migration is an error). Only one reconciler runs at a time for a realm across
replicas (a PostgreSQL advisory lock per realm).
Exit status: 0 nothing left to fix, 2 drift remains (without --repair, or not
repairable), 1 error. It takes the same settings as serve.`,
		Example: `  communities reconcile --realms terminology
  communities reconcile --repair --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Checking never migrates the schema; repairing may.
			srv, err := openCore(cmd, &cfg, stderr, core.Options{NoMigrate: !repair})
			if err != nil {
				return err
			}
			defer srv.Close()
			reports, ran, err := srv.Service().Reconcile(cmd.Context(), cfg.Realms, repair)
			// The realms done are reported even when another failed or
			// was locked: their repairs happened, and a pipeline must see them.
			if len(reports) > 0 || (err == nil && ran) {
				if werr := writeReports(stdout, output.value, reports); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
			if !ran {
				return fmt.Errorf("another reconciler is running for %s; try again later", strings.Join(skipped(cfg.Realms, reports), ", "))
			}
			for _, r := range reports {
				if remaining(r) > 0 {
					return exitError{code: 2}
				}
			}
			return nil
		},
	}
	config.Bind(cmd.Flags(), &cfg)
	cmd.Flags().BoolVar(&repair, "repair", false, "recreate missing artefacts and remove orphans this service made")
	output = outputFlag(cmd.Flags(), "text", "json")
	return cmd
}

// skipped lists the realms of realms that have no report.
func skipped(realms []string, reports []community.Report) []string {
	var out []string
	for _, r := range realms {
		if !slices.ContainsFunc(reports, func(rep community.Report) bool { return rep.Realm == r }) {
			out = append(out, r)
		}
	}
	return out
}

// remaining counts differences still there after the run.
func remaining(r community.Report) int {
	n := len(r.Orphans) - r.OrphansRemoved
	for _, d := range r.RealmDrift {
		if !d.Repaired {
			n++
		}
	}
	for _, ds := range r.Drift {
		for _, d := range ds {
			if !d.Repaired {
				n++
			}
		}
	}
	return n
}

func writeReports(w io.Writer, format string, reports []community.Report) error {
	if format == "json" {
		if reports == nil {
			reports = []community.Report{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	for _, r := range reports {
		for _, d := range r.RealmDrift {
			fmt.Fprintf(w, "%s: %s\n", r.Realm, d)
		}
		for _, label := range slices.Sorted(maps.Keys(r.Drift)) {
			for _, d := range r.Drift[label] {
				fmt.Fprintf(w, "%s/%s: %s\n", r.Realm, label, d)
			}
		}
		for _, o := range r.Orphans {
			what := "community group without a registry row"
			if o.Artefact != "" {
				what = o.Artefact + " without a registry row or group"
			}
			if o.ID == "" {
				what += ", not made by this service (left alone)"
			} else if r.Repair {
				what += " (removed)"
			}
			fmt.Fprintf(w, "%s/%s: %s\n", r.Realm, o.Label, what)
		}
		for _, l := range r.UndoneFinished {
			fmt.Fprintf(w, "%s/%s: artefacts Keycloak made for a create after it was undone (removed; not drift)\n", r.Realm, l)
		}
		for _, l := range r.Unchecked {
			fmt.Fprintf(w, "%s/%s: not checked (the error below says why)\n", r.Realm, l)
		}
		verdict := "no drift"
		if n := r.DriftCount(); n > 0 {
			verdict = fmt.Sprintf("%d difference(s), %d left", n, remaining(r))
		}
		if r.Incomplete {
			verdict += "; the check did not finish"
		}
		fmt.Fprintf(w, "%s: %d communities checked, %s\n", r.Realm, r.Communities, strings.TrimSpace(verdict))
	}
	return nil
}
