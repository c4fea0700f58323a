#!/usr/bin/env bash
# Development fixture for join-group.mjs: a throw-away realm set up the way
# docs/keycloak-fgap-findings.md describes (FGAP v2, communities A and B), with
# an owner of A (`ownera`) and a user in no group (`bob`).
#
#   test/browser/dev-setup.sh setup    [REALM]   # import + configure (REALM defaults to browser-dev)
#   test/browser/dev-setup.sh teardown [REALM]   # delete the realm
#   test/browser/dev-setup.sh groups   [REALM] [USER]   # print USER's (default bob) group paths
#
# Needs curl and jq, and KEYCLOAK_URL, KEYCLOAK_ADMIN_USER, KEYCLOAK_ADMIN_PASSWORD
# in the environment (or in /tmp/dev.env, or in the file named by DEV_ENV).
# Everything is done with the master admin token; only realms named browser-* are touched.
# join-group.mjs does not use this script: the Go test sets up its own realm.
set -euo pipefail

ENV_FILE=${DEV_ENV:-/tmp/dev.env}
if [[ -z "${KEYCLOAK_URL:-}" && -f "$ENV_FILE" ]]; then
  set -a; . "$ENV_FILE"; set +a
fi
: "${KEYCLOAK_URL:?KEYCLOAK_URL is not set}"
: "${KEYCLOAK_ADMIN_USER:?KEYCLOAK_ADMIN_USER is not set}"
: "${KEYCLOAK_ADMIN_PASSWORD:?KEYCLOAK_ADMIN_PASSWORD is not set}"

CMD=${1:-setup}
REALM=${2:-browser-dev}
case "$REALM" in
  browser-*) ;;
  *) echo "refusing to touch realm '$REALM': only browser-* realms" >&2; exit 2 ;;
esac

KC=${KEYCLOAK_URL%/}
HERE=$(cd "$(dirname "$0")" && pwd)
EXPORT="$HERE/../../realm-export/terminology-realm.json"

# Master admin tokens live 60 s: take a fresh one for every call.
token() {
  curl -sS --fail-with-body --max-time 20 -X POST "$KC/realms/master/protocol/openid-connect/token" \
    --data-urlencode grant_type=password --data-urlencode client_id=admin-cli \
    --data-urlencode "username=$KEYCLOAK_ADMIN_USER" --data-urlencode "password=$KEYCLOAK_ADMIN_PASSWORD" |
    jq -r .access_token
}

# api METHOD PATH [JSON-BODY]: prints the body, fails on a non-2xx status.
api() {
  local method=$1 path=$2 body=${3:-}
  local args=(-sS --max-time 30 -X "$method" -H "Authorization: Bearer $(token)" -w '\n%{http_code}')
  [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  local out code
  out=$(curl "${args[@]}" "$KC/admin/realms$path")
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if [[ "$code" != 2* ]]; then
    echo "$method $path -> $code $out" >&2
    return 1
  fi
  printf '%s' "$out"
}

group_id() { api GET "/$REALM/group-by-path/$1" | jq -r .id; }

create_group() { # create_group PARENT_ID|"" NAME -> id
  local parent=$1 name=$2
  if [[ -z "$parent" ]]; then
    api POST "/$REALM/groups" "$(jq -nc --arg n "$name" '{name:$n}')" >/dev/null
  else
    api POST "/$REALM/groups/$parent/children" "$(jq -nc --arg n "$name" '{name:$n}')" >/dev/null
  fi
}

create_user() { # create_user USERNAME PASSWORD [GROUP-PATH]
  local u=$1 p=$2 g=${3:-}
  api POST "/$REALM/users" "$(jq -nc --arg u "$u" --arg p "$p" --arg g "$g" '{
      username: $u, enabled: true, emailVerified: true,
      email: ($u + "@example.org"), firstName: $u, lastName: "Test",
      requiredActions: [],
      credentials: [{type: "password", value: $p, temporary: false}],
      groups: (if $g == "" then [] else [$g] end)}')" >/dev/null
}

setup() {
  if api GET "/$REALM" >/dev/null 2>&1; then
    echo "realm $REALM exists: run '$0 teardown $REALM' first" >&2
    exit 1
  fi
  # 1. Import the demo realm under the new name, FGAP v2 on, community-owner role present.
  local rep
  rep=$(sed "s/default-roles-terminology/default-roles-$REALM/g" "$EXPORT" | jq -c --arg r "$REALM" '
    .realm = $r
    | .adminPermissionsEnabled = true
    | .roles.realm |= (if any(.[]; .name == "community-owner") then . else . + [{
        name: "community-owner", composite: true, clientRole: false,
        composites: {client: {"realm-management": ["query-users", "query-groups"]}}}] end)')
  api POST "" "$rep" >/dev/null
  echo "imported realm $REALM"

  local ap P
  ap=$(api GET "/$REALM" | jq -r .adminPermissionsClient.id)
  [[ -n "$ap" && "$ap" != null ]] || { echo "no adminPermissionsClient in realm $REALM" >&2; exit 1; }
  P="/$REALM/clients/$ap/authz/resource-server"

  # 2. Groups /Communities/{A,B}/{owner,author,consumer}.
  create_group "" Communities
  local root; root=$(group_id Communities)
  local L sub
  for L in A B; do
    create_group "$root" "$L"
    local gl; gl=$(group_id "Communities/$L")
    for sub in owner author consumer; do create_group "$gl" "$sub"; done
  done

  # 3. Once per realm: role policies, Users permission, browse permission on /Communities.
  local owner_role sd_role
  owner_role=$(api GET "/$REALM/roles/community-owner")
  sd_role=$(api GET "/$REALM/roles/service-desk")
  api POST "$P/policy/role" "$(jq -nc --arg o "$(jq -r .id <<<"$owner_role")" --arg s "$(jq -r .id <<<"$sd_role")" '{
      name: "role:community-admins", logic: "POSITIVE",
      description: "Holders of realm role community-owner or service-desk",
      roles: [{id: $o, required: false}, {id: $s, required: false}]}')" >/dev/null
  api POST "$P/policy/role" "$(jq -nc --arg s "$(jq -r .id <<<"$sd_role")" '{
      name: "role:service-desk", logic: "POSITIVE", roles: [{id: $s, required: false}]}')" >/dev/null
  api POST "$P/permission/scope" '{"name":"users:community-admins","resourceType":"Users",
      "scopes":["view","manage-group-membership"],"policies":["role:community-admins"]}' >/dev/null
  api POST "$P/permission/scope" "$(jq -nc --arg r "$root" '{name: "groups:communities-root",
      resourceType: "Groups", resources: [$r], scopes: ["view"], policies: ["role:community-admins"]}')" >/dev/null

  # 4. Per community.
  for L in A B; do
    local gl go ga gc
    gl=$(group_id "Communities/$L"); go=$(group_id "Communities/$L/owner")
    ga=$(group_id "Communities/$L/author"); gc=$(group_id "Communities/$L/consumer")
    api POST "/$REALM/groups/$go/role-mappings/realm" "[$owner_role]" >/dev/null
    api POST "$P/policy/group" "$(jq -nc --arg L "$L" --arg g "$go" '{
        name: ("community:" + $L + ":owners"), logic: "POSITIVE",
        description: ("Members of /Communities/" + $L + "/owner"),
        groups: [{id: $g, extendChildren: false}]}')" >/dev/null
    api POST "$P/policy/aggregate" "$(jq -nc --arg L "$L" '{
        name: ("community:" + $L + ":membership-admins"), logic: "POSITIVE", decisionStrategy: "AFFIRMATIVE",
        policies: [("community:" + $L + ":owners"), "role:service-desk"]}')" >/dev/null
    api POST "$P/permission/scope" "$(jq -nc --arg L "$L" --arg l "$gl" --arg o "$go" --arg a "$ga" --arg c "$gc" '{
        name: ("community:" + $L + ":view"), resourceType: "Groups",
        resources: [$l, $o, $a, $c], scopes: ["view"], policies: ["role:community-admins"]}')" >/dev/null
    api POST "$P/permission/scope" "$(jq -nc --arg L "$L" --arg o "$go" --arg a "$ga" --arg c "$gc" '{
        name: ("community:" + $L + ":membership"), resourceType: "Groups",
        resources: [$o, $a, $c], scopes: ["manage-membership"],
        policies: [("community:" + $L + ":membership-admins")]}')" >/dev/null
  done

  # 5. Users.
  create_user ownera ownera-pass /Communities/A/owner
  create_user bob bob-pass
  echo "realm $REALM ready: console $KC/admin/$REALM/console/ (ownera / ownera-pass), user bob"
}

groups() {
  local u=${3:-bob} id
  id=$(api GET "/$REALM/users?username=$u&exact=true" | jq -r '.[0].id')
  api GET "/$REALM/users/$id/groups" | jq -r '.[].path'
}

case "$CMD" in
  setup) setup ;;
  teardown) api DELETE "/$REALM" >/dev/null && echo "deleted realm $REALM" ;;
  groups) groups "$@" ;;
  *) echo "usage: $0 setup|teardown|groups [REALM] [USER]" >&2; exit 2 ;;
esac
