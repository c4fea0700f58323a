#!/usr/bin/env bash
# Decisions side by side, in one run, on one machine, each by wrk from its
# own process with the same connections and duration (issue 14, point 5):
#   1. the service's own trivial handler, GET /healthz: its ceiling;
#   1b. the same handler sent exactly what a decision sends (its headers,
#      the 1.8 KB bearer token among them, and its body, which Go's server
#      reads and discards): what the request alone costs, before anything
#      is decided; no decision can answer faster than this floor;
#   2. the service's decision (a consumer reading a resource labelled
#      XXX.read and NDD.read, the token verified once and cached);
#   3. OpenFGA's Check of the equivalent question on an in-memory store:
#      is user:consumer can_read on resource:cs1, where cs1 is labelled
#      community:NDD and consumer is NDD's consumer (openfga-model.json:
#      reader = author or consumer; can_read = reader from labelled).
#
# Then 2 and 3 again at one fixed rate (RATE per second, default 5000,
# below what OpenFGA answers at saturation here) with vegeta, which sends
# on schedule whether or not answers are late: at saturation wrk keeps
# every connection busy, so its p99 measures the queue in front of the
# cores, which is longer for whichever answers more requests; at equal
# rates the p99 is each server's own.
#
#   test/load/compare.sh SERVICE_URL REALM TOKEN [DURATION] [CONNECTIONS]
#
# With SERVICE_PID (the process of `communities serve`), each of the
# service's lines also gives its CPU time per request; OpenFGA's line
# always does. Tokens live 5 minutes in the demo realm: fetch one for
# each run.
#
# OpenFGA and vegeta are built once from the Go module proxy
# (OPENFGA_VERSION, VEGETA_VERSION) into ~/.cache/communities/; OpenFGA
# listens on OPENFGA_PORT (default 18089) and is stopped at the end.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/wrk.sh"
url="${1:?service URL}"
realm="${2:?realm}"
token="${3:?bearer token}"
duration="${4:-15s}"
connections="${5:-32}"
rate="${RATE:-5000}"
version="${OPENFGA_VERSION:-v1.22.1}"
port="${OPENFGA_PORT:-18089}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/communities"
bin="$cache/openfga-$version"
vegeta="$cache/vegeta-${VEGETA_VERSION:-v12.13.0}/vegeta"
fga="http://127.0.0.1:$port"

if [[ ! -x "$bin/openfga" ]]; then
	echo "building OpenFGA $version (once; a few minutes)" >&2
	GOBIN="$bin" GOFLAGS=-buildvcs=false go install "github.com/openfga/openfga/cmd/openfga@$version"
fi
if [[ ! -x "$vegeta" ]]; then
	echo "building vegeta (once)" >&2
	GOBIN="$(dirname "$vegeta")" GOFLAGS=-buildvcs=false go install "github.com/tsenart/vegeta/v12@${VEGETA_VERSION:-v12.13.0}"
fi
"$bin/openfga" run --datastore-engine memory --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$((port + 1))" \
	--playground-enabled=false --metrics-enabled=false --log-level none >/dev/null 2>&1 &
pid=$!
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "$fga/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

post() { curl -fsS -X POST -H "Content-Type: application/json" "$fga$1" -d "$2"; }
store=$(post /stores '{"name":"communities"}' | jq -r .id)
model=$(post "/stores/$store/authorization-models" "@$here/openfga-model.json" | jq -r .authorization_model_id)
post "/stores/$store/write" '{"writes":{"tuple_keys":[
	{"user":"user:consumer","relation":"consumer","object":"community:NDD"},
	{"user":"community:NDD","relation":"labelled","object":"resource:cs1"},
	{"user":"community:XXX","relation":"labelled","object":"resource:cs1"}]},
	"authorization_model_id":"'"$model"'"}' >/dev/null
check='{"tuple_key":{"user":"user:consumer","relation":"can_read","object":"resource:cs1"},"authorization_model_id":"'"$model"'"}'
[[ "$(post "/stores/$store/check" "$check" | jq -r .allowed)" == true ]] || { echo "OpenFGA does not allow the check" >&2; exit 1; }

echo "$connections connections, $duration each, $(date -u +%F)"
WATCH_PID="${SERVICE_PID:-}"
wrk_run "service /healthz" GET "$url/healthz" "" "$duration" "$connections"
wrk_run "/healthz, decision's request" GET "$url/healthz" "$DECISION_BODY" "$duration" "$connections" \
	"Content-Type: application/json" "Authorization: Bearer $token"
wrk_run "service decision" POST "$url/realms/$realm/communities-authz/decision" "$DECISION_BODY" "$duration" "$connections" \
	"Content-Type: application/json" "Authorization: Bearer $token"
WATCH_PID="$pid" wrk_run "OpenFGA Check (memory)" POST "$fga/stores/$store/check" "$check" "$duration" "$connections" \
	"Content-Type: application/json"

# rate_run LABEL URL BODY [HEADER ...]: POSTs at $rate/s for $duration;
# prints the rate achieved, p50, p99 and the share answered 200.
rate_run() {
	local label="$1" url="$2" h
	printf '%s' "$3" >"$work/body"
	shift 3
	{
		echo "POST $url"
		for h in "$@"; do echo "$h"; done
		echo "@$work/body"
	} >"$work/target"
	"$vegeta" attack -targets="$work/target" -rate="$rate/s" -duration="$duration" |
		"$vegeta" report -type=json |
		jq -r --arg l "$label" '"\($l | . + " " * (28 - length)) \(.throughput | floor)/s  p50 \(.latencies["50th"] / 1e6 * 100 | round / 100) ms  p99 \(.latencies["99th"] / 1e6 * 100 | round / 100) ms  200s \(.success * 100)%"'
}
echo "at $rate/s each"
rate_run "service decision" "$url/realms/$realm/communities-authz/decision" "$DECISION_BODY" \
	"Content-Type: application/json" "Authorization: Bearer $token"
rate_run "OpenFGA Check (memory)" "$fga/stores/$store/check" "$check" "Content-Type: application/json"
