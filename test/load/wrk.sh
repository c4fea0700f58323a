# wrk_run LABEL METHOD URL BODY DURATION CONNECTIONS [HEADER ...]: one wrk
# run (Debian's package) that prints "LABEL requests/s p50 p99 errors".
# Sourced by the load scripts beside it.
wrk_run() {
	local label="$1" method="$2" url="$3" body="$4" duration="$5" connections="$6" script h
	shift 6
	command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; return 1; }
	script="$(mktemp)"
	{
		echo "wrk.method = \"$method\""
		for h in "$@"; do
			echo "wrk.headers[\"${h%%:*}\"] = \"${h#*: }\""
		done
		[[ -n "$body" ]] && echo "wrk.body = '$body'"
		cat <<LUA
done = function(summary, latency, requests)
  io.write(string.format("%-28s %8.0f/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n", "$label",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
	} >"$script"
	wrk -t2 -c"$connections" -d"$duration" -s "$script" "$url" | tail -n 1
	rm -f "$script"
}

# The decision the load scripts ask: a consumer reading a CodeSystem
# labelled XXX.read and NDD.read (one label held is enough).
DECISION_BODY='{"resourceType":"CodeSystem","interaction":"read","security":[{"system":"http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions","code":"XXX.read"},{"system":"http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions","code":"NDD.read"}]}'
