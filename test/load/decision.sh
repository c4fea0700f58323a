#!/usr/bin/env bash
# Load on the decision endpoint from a second process (wrk, Debian's
# package), with RS256 verification of a real token on the first request
# and the verified-token cache after that.
#
#   test/load/decision.sh SERVICE_URL REALM TOKEN [DURATION] [CONNECTIONS]
#
# e.g. with `make run` going:
#   TOKEN=$(curl -s localhost:8080/realms/terminology/protocol/openid-connect/token \
#     -d grant_type=password -d client_id=terminology-client -d username=consumer -d password=consumer-pass | jq -r .access_token)
#   test/load/decision.sh http://localhost:8081 terminology "$TOKEN"
set -euo pipefail
url="${1:?service URL}"
realm="${2:?realm}"
token="${3:?bearer token}"
duration="${4:-20s}"
connections="${5:-32}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
script="$(mktemp)"
trap 'rm -f "$script"' EXIT
cat >"$script" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"resourceType":"CodeSystem","interaction":"read","security":[{"system":"http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions","code":"XXX.read"},{"system":"http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions","code":"NDD.read"}]}'
done = function(summary, latency, requests)
  io.write(string.format("decisions/s %.0f  p50 %.2f ms  p99 %.2f ms  errors %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
wrk --latency -t2 -c"$connections" -d"$duration" -s "$script" "$url/realms/$realm/communities-authz/decision"
