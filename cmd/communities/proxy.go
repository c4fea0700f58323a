package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/server"
)

func newProxy(stderr io.Writer) *cobra.Command {
	var cfg config.Proxy
	cmd := &cobra.Command{
		Use:   "proxy --upstream URL",
		Short: "Run the enforcing FHIR proxy in front of a FHIR server",
		Long: `Serve the FHIR API of --upstream under --base-path, enforcing the communities'
labels (NDD.read / NDD.write in meta.security) with the caller's verified
token, as Ontoserver does natively:

  read, vread          denied resources answer 404, as missing ones do
  search, its pages    denied entries (also _include/_revinclude) left out;
                       totals only for callers who read every community
  create, update,      judged on the stored labels and the new ones: no one
  patch (JSON Patch),  plants a label they cannot write or strips one they
  delete               could not have set; updates are pinned with If-Match
  instance _history    every version judged

Anything else (batch/transaction, $operations, GraphQL, POST _search, type or
system history, conditional writes, _elements, _summary, chained or _has
parameters) is refused with a problem detail. The FHIR server's own address
never reaches callers. It needs no database (DATABASE_URL is not read): only
the realm's keys from Keycloak. SIGINT or SIGTERM stops it after draining.`,
		Example: `  communities proxy --upstream http://hapi:8080/fhir --keycloak-url http://localhost:8080 --realm terminology
  curl -H "Authorization: Bearer $TOKEN" http://localhost:8082/fhir/ValueSet?_count=10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.ApplyProxyEnv(cmd.Flags(), nil); err != nil {
				return err
			}
			log, err := newLogger(stderr, cfg.LogLevel)
			if err != nil {
				return err
			}
			p, err := server.NewProxy(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			return p.Run(cmd.Context(), nil)
		},
	}
	config.BindProxy(cmd.Flags(), &cfg)
	return cmd
}
