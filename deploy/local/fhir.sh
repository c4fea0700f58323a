#!/usr/bin/env bash
# Builds and starts the test FHIR server (test/fhirserver: HAPI FHIR's JPA
# server in a small Spring Boot application) that the proxy and the delete
# guard are tested against.
#
#   fhir.sh build            build it with Maven into the cache, once per
#                            version of its sources
#   fhir.sh start RUN_DIR    start it with its log in RUN_DIR/fhir; prints
#                            FHIR_URL=... to stdout
#   fhir.sh stop RUN_DIR     stop it
#
# Environment: FHIR_PORT (default: a free port), FHIR_DB_URL (a
# jdbc:postgresql URL; default: an in-memory H2 database that lives and dies
# with the server), FHIR_START_TIMEOUT (seconds, default 300).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC_DIR="$REPO_DIR/test/fhirserver"

# The build is cached under a hash of the sources, so editing them rebuilds
# and switching branches back and forth does not.
sources_hash() {
	(cd "$SRC_DIR" && find pom.xml src -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

build() {
	local out started tmp
	out="$CACHE_DIR/fhirserver-$(sources_hash)"
	mkdir -p "$CACHE_DIR"
	# One build at a time: make run and make test may start together.
	exec 8>"$CACHE_DIR/.fhirserver.lock"
	flock -w 900 8 || die "timed out waiting for another FHIR server build ($CACHE_DIR/.fhirserver.lock)"
	if [[ ! -f "$out/fhirserver.jar" ]]; then
		command -v mvn >/dev/null || apt_install maven
		log "building the test FHIR server (HAPI FHIR, Maven; first time downloads ~300 MB)"
		started=$(now_ms)
		# Build a copy, so no build output lands in the work tree.
		tmp="$(mktemp -d "$CACHE_DIR/fhirserver-build.XXXXXX")"
		cp -r "$SRC_DIR/pom.xml" "$SRC_DIR/src" "$tmp/"
		if ! (cd "$tmp" && mvn -B -q package -DskipTests) >"$CACHE_DIR/fhirserver-build.log" 2>&1; then
			tail -n 30 "$CACHE_DIR/fhirserver-build.log" >&2
			rm -rf "$tmp"
			die "Maven could not build test/fhirserver; read $CACHE_DIR/fhirserver-build.log"
		fi
		mkdir -p "$out.tmp"
		mv "$tmp/target/fhirserver.jar" "$out.tmp/"
		rm -rf "$tmp" "$out"
		mv "$out.tmp" "$out"
		log "built in $(elapsed "$started")"
	fi
	flock -u 8
	echo "$out/fhirserver.jar"
}

start() {
	local run_dir="$1" jar home port logfile started pid db=()
	jar="$(build)"
	home="$run_dir/fhir"
	mkdir -p "$home"
	port="${FHIR_PORT:-$(free_port)}"
	port_free "$port" || die "FHIR_PORT $port is in use"
	if [[ -n "${FHIR_DB_URL:-}" ]]; then
		db=(--spring.datasource.url="$FHIR_DB_URL" --spring.datasource.username=postgres --spring.datasource.password=unused
			--spring.datasource.driver-class-name=org.postgresql.Driver
			--spring.jpa.properties.hibernate.dialect=ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect)
	fi
	logfile="$home/fhir.log"
	log "starting the test FHIR server on http://127.0.0.1:$port/fhir (log: $logfile)"
	started=$(now_ms)
	# A small heap and the quick compiler: it is a test server on 2 cores
	# shared with Keycloak, and start-up time counts more than peak speed.
	setsid "$(find_java 17 "HAPI FHIR")/bin/java" -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
		-jar "$jar" --server.port="$port" "${db[@]}" >"$logfile" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$home/pid"
	wait_http "http://127.0.0.1:$port/fhir/metadata" "${FHIR_START_TIMEOUT:-300}" "the FHIR server" "$logfile" "$pid"
	log "FHIR server ready in $(elapsed "$started")"
	echo "FHIR_URL=http://127.0.0.1:$port/fhir"
	echo "FHIR_PID=$pid"
}

stop() {
	local pidfile="$1/fhir/pid"
	[[ -f "$pidfile" ]] || return 0
	stop_pid "$(cat "$pidfile")" "FHIR server"
	rm -f "$pidfile"
}

case "${1:-}" in
build) build >/dev/null ;;
start) start "${2:?run dir}" ;;
stop) stop "${2:?run dir}" ;;
*) die "usage: $0 build | start RUN_DIR | stop RUN_DIR" ;;
esac
