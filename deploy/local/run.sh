#!/usr/bin/env bash
# make run: PostgreSQL, Keycloak with the demo realm (and its admin console
# theme), the service, and the front door that puts Keycloak and the
# service on one host, in the foreground. Ctrl-C stops everything this
# script started.
#
# Environment: FRONTDOOR_PORT (default 8000), KEYCLOAK_PORT (default 8080),
# COMMUNITIES_PORT (default 8081), COMMUNITIES_REALMS (default terminology),
# DATABASE_URL / KEYCLOAK_URL to use servers that already run; WITH_FHIR=1
# also starts the test FHIR server, guards deletes with it and runs the
# enforcing proxy in front of it on PROXY_PORT (default 8082).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export KEYCLOAK_PORT="${KEYCLOAK_PORT:-8080}"
COMMUNITIES_PORT="${COMMUNITIES_PORT:-8081}"
FRONTDOOR_PORT="${FRONTDOOR_PORT:-8000}"
REALMS="${COMMUNITIES_REALMS:-terminology}"
REALM="${REALMS%%,*}"
port_free "$COMMUNITIES_PORT" || die "port $COMMUNITIES_PORT is in use; set COMMUNITIES_PORT to another port"
port_free "$FRONTDOOR_PORT" || die "port $FRONTDOOR_PORT is in use; set FRONTDOOR_PORT to another port"
export WITH_FHIR="${WITH_FHIR:-0}"
PROXY_PORT="${PROXY_PORT:-8082}"
if [[ "$WITH_FHIR" != 0 ]]; then
	port_free "$PROXY_PORT" || die "port $PROXY_PORT is in use; set PROXY_PORT to another port"
fi
FRONT="http://localhost:$FRONTDOOR_PORT"

ENV_FILE="$(mktemp "${TMPDIR:-/tmp}/communities-run-env.XXXXXX")"
FRONTDOOR_DIR="$(mktemp -d "${TMPDIR:-/tmp}/communities-frontdoor.XXXXXX")"
SERVICE_PID=
PROXY_PID=
cleanup() {
	trap - EXIT INT TERM
	for pid in $SERVICE_PID $PROXY_PID; do
		kill -INT "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	"$LOCAL_DIR/frontdoor.sh" stop "$FRONTDOOR_DIR" || true
	rm -rf "$FRONTDOOR_DIR"
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

if [[ -n "${FHIR_URL:-}" ]]; then
	export COMMUNITIES_GUARD_FHIR_URLS="$FHIR_URL"
	log "starting the enforcing FHIR proxy on http://localhost:$PROXY_PORT/fhir (docs/fhir.md)"
	COMMUNITIES_PROXY_UPSTREAM="$FHIR_URL" "$REPO_DIR/bin/communities" proxy --listen ":$PROXY_PORT" \
		--realm "$REALM" --issuer-base-url "$FRONT" &
	PROXY_PID=$!
fi

# Tokens fetched through the front door name it as their issuer, so the
# service expects that; seed 000 makes every new user a consumer of Open
# and Restricted.
log "starting the communities service on http://localhost:$COMMUNITIES_PORT"
COMMUNITIES_ADMIN_CLIENT_SECRET="${COMMUNITIES_ADMIN_CLIENT_SECRET:-communities-service-secret}" \
	"$REPO_DIR/bin/communities" serve --listen "127.0.0.1:$COMMUNITIES_PORT" --realms "$REALMS" \
	--issuer-base-url "$FRONT" --default-communities "Open=Open,Restricted=Restricted" &
SERVICE_PID=$!
wait_http "http://127.0.0.1:$COMMUNITIES_PORT/healthz" 60 "the communities service" /dev/null "$SERVICE_PID"

COMMUNITIES_UPSTREAM="127.0.0.1:$COMMUNITIES_PORT" KEYCLOAK_UPSTREAM="${KEYCLOAK_URL#*://}" KEYCLOAK_REALMS="$REALMS" FRONTDOOR_PORT="$FRONTDOOR_PORT" \
	"$LOCAL_DIR/frontdoor.sh" start "$FRONTDOOR_DIR" >/dev/null

cat >&2 <<BANNER

  Everything is on one host, the front door: $FRONT

  Communities in the admin console:
    open   $FRONT/admin/$REALM/console/
    log in as creator / creator-pass (a community creator, not an administrator),
    click Communities in the bar on the left, enter a name and a label, Save.
    (Owners: author / author-pass; service desk: servicedesk / servicedesk-pass;
    all demo users: realm-export/README.md. New users can register on the login page.)

  Seed 000's REST calls, on the same host:
    TOKEN=\$(curl -s $FRONT/auth/realms/$REALM/protocol/openid-connect/token \\
      --data-urlencode grant_type=client_credentials --data-urlencode client_id=service-desk \\
      --data-urlencode client_secret=service-desk-secret | jq -r .access_token)
    curl -s $FRONT/auth/realms/$REALM/communities -H "Authorization: Bearer \$TOKEN"

$([[ -n "$PROXY_PID" ]] && echo "  The enforcing FHIR proxy: http://localhost:$PROXY_PORT/fhir (docs/fhir.md)")
  Keycloak itself: $KEYCLOAK_URL (bootstrap admin $KEYCLOAK_ADMIN_USER / $KEYCLOAK_ADMIN_PASSWORD: $KEYCLOAK_URL/admin/)
  The service itself: http://localhost:$COMMUNITIES_PORT (OpenAPI: /openapi.yaml); it accepts tokens
  fetched through the front door.

  Ctrl-C stops everything.

BANNER

wait "$SERVICE_PID"
