# shellcheck shell=bash
# Helpers shared by the local stack scripts. Sourced, never run.

set -euo pipefail

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPLOY_DIR="$(dirname "$LOCAL_DIR")"
REPO_DIR="$(dirname "$DEPLOY_DIR")"
# shellcheck source=../versions.env
. "$DEPLOY_DIR/versions.env"

CACHE_DIR="${COMMUNITIES_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/communities}"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() {
	printf '\033[31merror:\033[0m %s\n' "$*" >&2
	exit 1
}

# now_ms prints a monotonic-enough wall clock in milliseconds for progress
# messages ("started in 12.3 s").
now_ms() { date +%s%3N; }
elapsed() { awk -v s="$1" -v e="$(now_ms)" 'BEGIN { printf "%.1f s", (e - s) / 1000 }'; }

# port_free reports whether nothing listens on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port prints a port nothing listens on, picked at random so that
# concurrent runs (make run beside make test) rarely race for the same one.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 20000))
		if port_free "$p"; then
			echo "$p"
			return 0
		fi
	done
	die "no free TCP port found on 127.0.0.1"
}

# wait_http URL TIMEOUT_S WHAT LOGFILE [PID]: waits until URL answers 2xx.
# Gives up with the log's tail when the time is out or the process died,
# so no wait ever hangs.
wait_http() {
	local url="$1" timeout="$2" what="$3" logfile="$4" pid="${5:-}"
	local deadline=$(($(date +%s) + timeout))
	while ! curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null; do
		if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
			tail -n 30 "$logfile" >&2 || true
			die "$what exited before it was ready; read $logfile"
		fi
		if (($(date +%s) >= deadline)); then
			tail -n 30 "$logfile" >&2 || true
			die "$what was not ready at $url after ${timeout}s; read $logfile"
		fi
		sleep 0.5
	done
}

# find_java MIN WHAT prints a JAVA_HOME with Java MIN or later (Keycloak 26
# needs 21, HAPI FHIR 8 needs 17), looking in JAVA_HOME and /usr/lib/jvm.
find_java() {
	local min="$1" what="$2" candidates=() d v
	[[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME")
	candidates+=($(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -rV))
	for d in "${candidates[@]}"; do
		d="${d%/}"
		[[ -x "$d/bin/java" ]] || continue
		v="$("$d/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ { print $2 }')"
		if [[ -n "$v" && "${v%%.*}" -ge "$min" ]]; then
			echo "$d"
			return 0
		fi
	done
	die "$what needs Java $min or later; none found in JAVA_HOME or /usr/lib/jvm"
}

# apt_install PKG...: installs Debian packages when running as root, else
# explains what to install.
apt_install() {
	if [[ $(id -u) -ne 0 ]]; then
		die "missing $*; install with: sudo apt-get install -y $*"
	fi
	log "installing $* from Debian's packages"
	if ! apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1; then
		apt-get update >/dev/null 2>&1 || die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null ||
			die "apt-get install $* failed"
	fi
}

# stop_pid PID NAME: TERM, then KILL after a grace period.
stop_pid() {
	local pid="$1" name="$2" i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	warn "$name (pid $pid) ignored SIGTERM for 30 s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}
