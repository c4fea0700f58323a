package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/core"
	"github.com/nhs-terminology/communities/internal/provision"
)

// readOnly is how plan and export build the service: they cannot change
// PostgreSQL or Keycloak, whatever a bug in a check might try.
var readOnly = core.Options{ReadOnly: true}

// cliActor is who the audit trail names for changes made from the command
// line: the pipeline's or operator's account name when there is one.
func cliActor() community.Actor {
	name := os.Getenv("USER")
	if name == "" {
		name = "communities-cli"
	}
	return community.Actor{ClientID: "communities-cli", Username: name}
}

// withProvisioner builds the service for realm from cfg and runs fn;
// opts make it read-only for plan and export; acceptLabelled lets apply
// delete communities whose labels remain on FHIR resources.
func withProvisioner(cmd *cobra.Command, cfg *config.Config, realm string, stderr io.Writer, o core.Options, acceptLabelled bool,
	fn func(*provision.Provisioner) error) error {
	// Realms named (--realms, COMMUNITIES_REALMS) are the only ones a
	// deployment's pipeline may touch: a file that names another (a typo,
	// master) is refused before anything is read.
	if err := config.ApplyEnv(cmd.Flags(), nil); err != nil {
		return err
	}
	if cmd.Flags().Changed("realms") && !slices.Contains(cfg.Realms, realm) {
		return fmt.Errorf("realm %q is not one of --realms (%s); name it there to manage it", realm, strings.Join(cfg.Realms, ","))
	}
	c, err := openCore(cmd, cfg, stderr, o, func(c *config.Config) {
		c.Realms = []string{realm}
		c.DefaultCommunities = nil
	})
	if err != nil {
		return err
	}
	defer c.Close()
	pr := provision.New(c.Service(), cliActor())
	pr.AcceptLabelled = acceptLabelled
	return fn(pr)
}

// load applies the environment and reads the communities file.
func (p *provisionFlags) load(cmd *cobra.Command) (*provision.File, error) {
	if err := config.ApplyEnv(cmd.Flags(), nil); err != nil {
		return nil, err
	}
	return readFile(p.file)
}

func readFile(path string) (*provision.File, error) {
	in := os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	// One byte more than Parse takes, so that it can say the file is too large.
	data, err := io.ReadAll(io.LimitReader(in, provision.MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	return provision.Parse(data)
}

type provisionFlags struct {
	cfg            config.Config
	file           string
	prune          bool
	acceptLabelled bool
	output         *format
}

func (p *provisionFlags) bind(cmd *cobra.Command, withPrune bool) {
	config.Bind(cmd.Flags(), &p.cfg)
	cmd.Flags().StringVarP(&p.file, "file", "f", "", "communities file, YAML or JSON (- for standard input)")
	_ = cmd.MarkFlagRequired("file")
	if withPrune {
		cmd.Flags().BoolVar(&p.prune, "prune", false, "also delete communities the file does not list, and remove members its lists do not name")
		cmd.Flags().BoolVar(&p.acceptLabelled, "accept-labelled-resources", false, "with --prune and --guard-fhir-urls: delete communities even while their labels remain on FHIR resources (seed 000: users lose access to them)")
	}
	p.output = outputFlag(cmd.Flags(), "text", "json")
}

const fileFormat = `The file:

  realm: terminology
  communities:
    - label: NDD
      name: National data dictionary
      owners: [alice]          # usernames; a list given is converged to,
      authors: [bob]           # a list left out is left alone
      consumers: [carol, dave]

It takes the same settings as serve (database, Keycloak, admin client).`

func newPlan(stdout, stderr io.Writer) *cobra.Command {
	var p provisionFlags
	cmd := &cobra.Command{
		Use:   "plan -f communities.yaml",
		Short: "Show what apply would change; change nothing",
		Long: `Compare the realm with the file and print what apply would do: communities
to create, artefacts to repair (the realm's own, such as its admin
permissions switched off, once, as repair-realm, with no label), members to
add (and with --prune, communities to delete and members to remove).
Nothing is changed, by construction: the database sessions are read-only, the Keycloak client refuses every change
before sending it, the schema is never migrated (a pending migration is an
error), and what a drift check would fix, such as a community scope in every
token, is reported, not fixed.

Exit status: 0 nothing would change, 2 something would, 1 error or a
conflict apply would refuse (a renamed community, a name another community
has, a label held by a create or delete under way). A pipeline can gate on it.

` + fileFormat,
		Example: `  communities plan -f communities.yaml; rc=$?
  [ $rc -eq 2 ] && echo "changes pending"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := p.load(cmd)
			if err != nil {
				return err
			}
			var (
				plan      []provision.Action
				conflicts int
			)
			err = withProvisioner(cmd, &p.cfg, f.Realm, stderr, readOnly, p.acceptLabelled, func(pr *provision.Provisioner) error {
				plan, err = pr.Plan(cmd.Context(), f, p.prune)
				conflicts = provision.Conflicts(plan)
				return err
			})
			if err != nil {
				return err
			}
			if p.output.value == "json" {
				if plan == nil {
					plan = []provision.Action{}
				}
				if err := json.NewEncoder(stdout).Encode(map[string]any{"realm": f.Realm, "changes": plan}); err != nil {
					return err
				}
			} else {
				for _, a := range plan {
					fmt.Fprintln(stdout, a)
				}
				switch {
				case len(plan) == 0:
					fmt.Fprintf(stdout, "%s: no changes; the realm matches the file\n", f.Realm)
				case conflicts > 0:
					fmt.Fprintf(stdout, "%s: %d change(s) pending, of which %d conflict(s) apply will refuse\n", f.Realm, len(plan), conflicts)
				default:
					fmt.Fprintf(stdout, "%s: %d change(s) pending\n", f.Realm, len(plan))
				}
			}
			switch {
			case conflicts > 0:
				return exitError{code: 1}
			case len(plan) > 0:
				return exitError{code: 2}
			}
			return nil
		},
	}
	p.bind(cmd, true)
	return cmd
}

func newApply(stdout, stderr io.Writer) *cobra.Command {
	var p provisionFlags
	cmd := &cobra.Command{
		Use:   "apply -f communities.yaml",
		Short: "Converge the realm's communities to a file",
		Long: `Make the realm match the file, through the same code paths as the REST API:
create missing communities (owners from the file; without owners the
community is dormant and service desk appoints them), recreate drifted
artefacts (a missing role, scope or mapping), add listed members. The
repairs come first, made together as 'communities reconcile --repair'
makes them; the realm's own (repair-realm) also repairs the listed
communities no other repair names, and fails naming those it could not. Communities the file does not list are left alone unless
--prune, which deletes them (after the repairs those whose names the file
gives new communities, so that those are made in the same run; the rest
last). It first undoes what an earlier run left half-way (as serve and
reconcile do). Running it again changes nothing and says so. One line per
change, a summary at the end; exit status 1 naming every failed item.
Interrupted (SIGINT, SIGTERM: a cancelled pipeline), it starts no further
change: the one under way finishes, the summary counts the rest as not
attempted, and the exit status is 1.

` + fileFormat,
		Example: `  communities apply -f communities.yaml
  communities apply -f communities.json --prune --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := p.load(cmd)
			if err != nil {
				return err
			}
			return withProvisioner(cmd, &p.cfg, f.Realm, stderr, core.Options{}, p.acceptLabelled, func(pr *provision.Provisioner) error {
				// What a failed or killed earlier run left half-way holds
				// its labels until undone; nothing else may be running to
				// undo it. One that cannot be undone now is planned as the
				// conflict it is.
				if n, err := pr.Recover(cmd.Context(), f.Realm); err != nil {
					fmt.Fprintf(stderr, "warning: %s: abandoned operations not undone yet: %v\n", f.Realm, err)
				} else if n > 0 {
					fmt.Fprintf(stderr, "%s: undid %d abandoned operation(s) of an earlier run\n", f.Realm, n)
				}
				plan, err := pr.Plan(cmd.Context(), f, p.prune)
				if err != nil {
					return err
				}
				var results []provision.Result
				failed, skipped := 0, 0
				err = pr.Apply(cmd.Context(), f, plan, func(r provision.Result) {
					results = append(results, r)
					switch {
					case r.NotAttempted:
						skipped++
						return
					case r.Error != "":
						failed++
					}
					if p.output.value != "json" {
						switch {
						case r.Kind == "conflict": // its detail is the error
							fmt.Fprintf(stdout, "FAILED %s\n", r.Action)
						case r.Error != "":
							fmt.Fprintf(stdout, "FAILED %s: %s\n", r.Action, r.Error)
						default:
							fmt.Fprintf(stdout, "done   %s\n", r.Action)
						}
					}
				})
				if p.output.value == "json" {
					if results == nil {
						results = []provision.Result{}
					}
					_ = json.NewEncoder(stdout).Encode(map[string]any{"realm": f.Realm, "results": results})
				} else if len(plan) == 0 {
					fmt.Fprintf(stdout, "%s: no changes; the realm already matches the file\n", f.Realm)
				} else if skipped > 0 {
					fmt.Fprintf(stdout, "%s: interrupted: %d change(s) applied, %d failed, %d not attempted\n", f.Realm, len(plan)-failed-skipped, failed, skipped)
				} else {
					fmt.Fprintf(stdout, "%s: %d change(s) applied, %d failed\n", f.Realm, len(plan)-failed, failed)
				}
				return err
			})
		},
	}
	p.bind(cmd, true)
	return cmd
}

func newExport(stdout, stderr io.Writer) *cobra.Command {
	var (
		cfg    config.Config
		realm  string
		output *format
	)
	cmd := &cobra.Command{
		Use:   "export --realm terminology",
		Short: "Write a realm's communities and members in apply's format",
		Long: `Write the realm's communities, with their owners, authors and consumers by
username, in the format apply and plan read. plan on the written file reports no
changes. Like plan, it cannot change anything.

` + fileFormat,
		Example: `  communities export --realm terminology > communities.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withProvisioner(cmd, &cfg, realm, stderr, readOnly, false, func(pr *provision.Provisioner) error {
				f, warnings, err := pr.Export(cmd.Context(), realm)
				if err != nil {
					return err
				}
				for _, w := range warnings {
					fmt.Fprintln(stderr, "warning:", w)
				}
				if output.value == "json" {
					enc := json.NewEncoder(stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(f)
				}
				data, err := provision.Marshal(f)
				if err != nil {
					return err
				}
				_, err = stdout.Write(data)
				return err
			})
		},
	}
	config.Bind(cmd.Flags(), &cfg)
	cmd.Flags().StringVar(&realm, "realm", "terminology", "realm to export")
	output = outputFlag(cmd.Flags(), "yaml", "json")
	return cmd
}
