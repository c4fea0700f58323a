# wrk_run LABEL METHOD URL BODY DURATION CONNECTIONS [HEADER ...]: one wrk
# run (Debian's package) that prints "LABEL requests/s p50 p99 errors".
# With WATCH_PID set, the line also gives that process's CPU time (user
# and system, from /proc) per request answered: what the server spent on
# each, apart from the load generator and the kernel's share of the
# other side, which throughput alone mixes in on a shared machine.
# Sourced by the load scripts beside it.
wrk_run() {
	local label="$1" method="$2" url="$3" body="$4" duration="$5" connections="$6" script h line before after
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
  io.write(string.format("%-28s %8.0f/s  p50 %6.2f ms  p99 %6.2f ms  errors %d %d\n", "$label",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests))
end
LUA
	} >"$script"
	[[ -n "${WATCH_PID:-}" ]] && before="$(cpu_ticks "$WATCH_PID")"
	line="$(wrk -t2 -c"$connections" -d"$duration" -s "$script" "$url" | tail -n 1)" || { rm -f "$script"; return 1; }
	rm -f "$script"
	# The last field is the number of requests, for the CPU per request.
	if [[ -n "${WATCH_PID:-}" ]]; then
		after="$(cpu_ticks "$WATCH_PID")"
		awk -v d="$((after - before))" -v hz="$(getconf CLK_TCK)" \
			'{ n = $NF; sub(/ [0-9]+$/, ""); if (n > 0) printf "%s  server CPU %.1f µs/request\n", $0, d / hz * 1e6 / n; else print $0 "  server CPU: no request answered" }' <<<"$line"
	else
		echo "${line% *}"
	fi
}

# cpu_ticks PID: the process's user and system CPU time so far, in clock
# ticks (fields 14 and 15 of /proc/PID/stat; its name, field 2, has no
# spaces for the servers measured here).
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# The decision the load scripts ask: a consumer reading a CodeSystem
# labelled XXX.read and NDD.read (one label held is enough).
DECISION_BODY='{"resourceType":"CodeSystem","interaction":"read","security":[{"system":"http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions","code":"XXX.read"},{"system":"http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions","code":"NDD.read"}]}'
