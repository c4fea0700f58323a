#!/usr/bin/env bash
# make run: PostgreSQL, Keycloak with the demo realm, and the service, in the
# foreground. Ctrl-C stops everything this script started.
#
# Environment: KEYCLOAK_PORT (default 8080), COMMUNITIES_PORT (default 8081),
# DATABASE_URL / KEYCLOAK_URL to use servers that already run; WITH_FHIR=1
# also starts the test FHIR server, guards deletes with it and runs the
# enforcing proxy in front of it on PROXY_PORT (default 8082).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export KEYCLOAK_PORT="${KEYCLOAK_PORT:-8080}"
COMMUNITIES_PORT="${COMMUNITIES_PORT:-8081}"
port_free "$COMMUNITIES_PORT" || die "port $COMMUNITIES_PORT is in use; set COMMUNITIES_PORT to another port"
export WITH_FHIR="${WITH_FHIR:-0}"
PROXY_PORT="${PROXY_PORT:-8082}"
if [[ "$WITH_FHIR" != 0 ]]; then
	port_free "$PROXY_PORT" || die "port $PROXY_PORT is in use; set PROXY_PORT to another port"
fi

ENV_FILE="$(mktemp "${TMPDIR:-/tmp}/communities-run-env.XXXXXX")"
cleanup() {
	trap - EXIT INT TERM
	"$LOCAL_DIR/stack.sh" down "$ENV_FILE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v go >/dev/null || die "Go is required to build the service (https://go.dev/dl/)"
log "building the service"
(cd "$REPO_DIR" && go build -o bin/communities ./cmd/communities) || die "go build failed"

"$LOCAL_DIR/stack.sh" up "$ENV_FILE"
set -a
# shellcheck disable=SC1090
. "$ENV_FILE"
set +a

cat >&2 <<BANNER

  Keycloak admin console  $KEYCLOAK_URL/admin/  (bootstrap admin: $KEYCLOAK_ADMIN_USER / $KEYCLOAK_ADMIN_PASSWORD)
  Demo realm              terminology  (users and passwords: realm-export/README.md)
  Communities service     http://localhost:$COMMUNITIES_PORT  (OpenAPI: /openapi.yaml)

  Try:
    TOKEN=\$(curl -s $KEYCLOAK_URL/realms/terminology/protocol/openid-connect/token \\
      -d grant_type=client_credentials -d client_id=service-desk -d client_secret=service-desk-secret | jq -r .access_token)
    curl -s -X POST http://localhost:$COMMUNITIES_PORT/realms/terminology/communities -H "Authorization: Bearer \$TOKEN" \\
      -H 'Content-Type: application/json' -d '{"securityLabel": "NDD", "communityName": "National data dictionary"}'
    curl -s http://localhost:$COMMUNITIES_PORT/realms/terminology/communities -H "Authorization: Bearer \$TOKEN"

  Ctrl-C stops everything.

BANNER

PROXY_PID=""
if [[ -n "${FHIR_URL:-}" ]]; then
	export COMMUNITIES_GUARD_FHIR_URLS="$FHIR_URL"
	log "starting the enforcing FHIR proxy on http://localhost:$PROXY_PORT/fhir (docs/fhir.md)"
	COMMUNITIES_PROXY_UPSTREAM="$FHIR_URL" "$REPO_DIR/bin/communities" proxy --listen ":$PROXY_PORT" \
		--realm "${COMMUNITIES_REALMS:-terminology}" &
	PROXY_PID=$!
fi
log "starting the communities service on http://localhost:$COMMUNITIES_PORT"
COMMUNITIES_ADMIN_CLIENT_SECRET="${COMMUNITIES_ADMIN_CLIENT_SECRET:-communities-service-secret}" \
	"$REPO_DIR/bin/communities" serve --listen ":$COMMUNITIES_PORT" --realms "${COMMUNITIES_REALMS:-terminology}" &
SERVICE_PID=$!
trap 'kill -INT $SERVICE_PID $PROXY_PID 2>/dev/null; wait; exit 130' INT TERM
wait "$SERVICE_PID"
