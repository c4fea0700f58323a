#!/usr/bin/env bash
# Load on the decision endpoint from a second process (wrk, Debian's
# package), with RS256 verification of a real token on the first request
# and the verified-token cache after that.
#
#   test/load/decision.sh SERVICE_URL REALM TOKEN [DURATION] [CONNECTIONS]
#
# e.g. with `make run` going (the token from the front door, whose URL is the
# issuer the service checks):
#   TOKEN=$(curl -s localhost:8000/realms/terminology/protocol/openid-connect/token \
#     -d grant_type=password -d client_id=terminology-client -d username=consumer -d password=consumer-pass | jq -r .access_token)
#   test/load/decision.sh http://localhost:8081 terminology "$TOKEN"
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/wrk.sh"
url="${1:?service URL}"
realm="${2:?realm}"
token="${3:?bearer token}"
wrk_run decisions POST "$url/realms/$realm/communities-authz/decision" "$DECISION_BODY" "${4:-20s}" "${5:-32}" \
	"Content-Type: application/json" "Authorization: Bearer $token"
