#!/usr/bin/env bash
# Fetches, builds and starts the real Keycloak server distribution.
#
#   keycloak.sh fetch           download org.keycloak:keycloak-quarkus-dist
#                               with Maven into the cache, unpack and build it
#                               with the project's extension
#                               (deploy/keycloak-extension) in providers/
#   keycloak.sh extension       print the path of the extension's jar,
#                               building it if its sources changed
#   keycloak.sh start RUN_DIR   start it with its data in RUN_DIR/keycloak,
#                               importing realm-export/*.json; prints
#                               KEY=VALUE lines (KEYCLOAK_URL, ...) to stdout
#   keycloak.sh stop RUN_DIR    stop it
#
# Environment: KEYCLOAK_PORT (default: a free port), KEYCLOAK_MANAGEMENT_PORT
# (default: a free port), KEYCLOAK_DB_URL (a jdbc:postgresql URL; required for
# start), KEYCLOAK_ADMIN_USER / KEYCLOAK_ADMIN_PASSWORD (bootstrap admin,
# default admin/admin), KEYCLOAK_START_TIMEOUT (seconds, default 300),
# KEYCLOAK_IMPORT_DIR (realm files to import, default realm-export/).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KC_HOME="$CACHE_DIR/keycloak-$KEYCLOAK_VERSION"
# Build-time options. Changing them triggers a rebuild of the cached install.
# One node: local caches, no cluster discovery.
KC_BUILD_OPTS=(--db=postgres --health-enabled=true --metrics-enabled=true --cache=local)

fetch() {
	local zip="$CACHE_DIR/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" started stamp
	mkdir -p "$CACHE_DIR"
	# One fetch and build at a time: make run and make test may start together.
	exec 9>"$CACHE_DIR/.keycloak.lock"
	flock -w 900 9 || die "timed out waiting for another Keycloak fetch or build ($CACHE_DIR/.keycloak.lock)"
	if [[ ! -f "$zip" ]]; then
		command -v mvn >/dev/null || apt_install maven
		log "downloading Keycloak $KEYCLOAK_VERSION (org.keycloak:keycloak-quarkus-dist, ~170 MB) with Maven"
		started=$(now_ms)
		if ! mvn -B -q dependency:copy \
			"-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
			"-DoutputDirectory=$CACHE_DIR.tmp" >"$CACHE_DIR/mvn.log" 2>&1; then
			tail -n 20 "$CACHE_DIR/mvn.log" >&2
			die "Maven could not fetch org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION; read $CACHE_DIR/mvn.log"
		fi
		mv "$CACHE_DIR.tmp/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" "$zip"
		rmdir "$CACHE_DIR.tmp" 2>/dev/null || true
		log "downloaded in $(elapsed "$started")"
	fi
	if [[ ! -x "$KC_HOME/bin/kc.sh" ]]; then
		log "unpacking Keycloak into $KC_HOME"
		command -v unzip >/dev/null || apt_install unzip
		rm -rf "$KC_HOME.tmp" "$KC_HOME"
		mkdir -p "$KC_HOME.tmp"
		unzip -q "$zip" -d "$KC_HOME.tmp" || die "could not unpack $zip (delete it to download again)"
		mv "$KC_HOME.tmp/keycloak-$KEYCLOAK_VERSION" "$KC_HOME"
		rmdir "$KC_HOME.tmp"
	fi
	extension
	# The extension is a build-time provider: a changed jar needs a rebuild.
	stamp="${KC_BUILD_OPTS[*]} extension $(extension_hash)"
	if [[ "$(cat "$KC_HOME/.communities-build" 2>/dev/null)" != "$stamp" ]]; then
		log "building Keycloak once for this cache (kc.sh build ${KC_BUILD_OPTS[*]}); takes about 30 s"
		started=$(now_ms)
		JAVA_HOME="$(find_java 21 "Keycloak $KEYCLOAK_VERSION")" "$KC_HOME/bin/kc.sh" build "${KC_BUILD_OPTS[@]}" >"$CACHE_DIR/kc-build.log" 2>&1 ||
			{ tail -n 20 "$CACHE_DIR/kc-build.log" >&2; die "kc.sh build failed; read $CACHE_DIR/kc-build.log"; }
		echo "$stamp" >"$KC_HOME/.communities-build"
		log "built in $(elapsed "$started")"
	fi
	flock -u 9
}

EXT_DIR="$REPO_DIR/deploy/keycloak-extension"
EXT_JAR="$KC_HOME/providers/communities-keycloak-extension.jar"

extension_hash() {
	(cd "$EXT_DIR" && find src META-INF build.sh -type f | sort | xargs sha256sum | sha256sum | cut -c1-16)
}

# extension compiles the project's Keycloak extension (the community
# privileges token mapper, the one-transaction create and the drift check's
# survey) with its build.sh against the distribution's own jars, so it
# needs no download and always matches KEYCLOAK_VERSION.
extension() {
	local h jdk
	h="$(extension_hash)"
	if [[ -f "$EXT_JAR" && "$(cat "$KC_HOME/.communities-extension" 2>/dev/null)" == "$h" ]]; then
		return 0
	fi
	log "compiling the Keycloak extension (deploy/keycloak-extension)"
	jdk="$(find_java 21 "Keycloak $KEYCLOAK_VERSION")"
	[[ -x "$jdk/bin/javac" ]] || die "$jdk has no javac; the Keycloak extension needs a JDK"
	JAVA_HOME="$jdk" "$EXT_DIR/build.sh" "$KC_HOME" "$EXT_JAR" || die "the Keycloak extension did not build"
	echo "$h" >"$KC_HOME/.communities-extension"
}

# start runs the cached, pre-built server from a per-run home: bin/ is
# copied (kc.sh finds its home from its own path), everything else is
# linked, so each run has its own data/ (transaction logs, realm imports)
# and runs never share state.
start() {
	local run_dir="$1" home port mport logfile started pid import_dir theme
	: "${KEYCLOAK_DB_URL:?KEYCLOAK_DB_URL (jdbc:postgresql://...) is required}"
	fetch
	home="$run_dir/keycloak"
	rm -rf "$home"
	mkdir -p "$home/data/import"
	cp -r "$KC_HOME/bin" "$home/bin"
	for d in conf lib providers; do ln -s "$KC_HOME/$d" "$home/$d"; done
	# themes/ is the run's own: the cached distribution's entries, and a
	# copy of the admin console theme "communities" (folder themes need no
	# kc.sh build), so runs of different sources never share one.
	theme="$("$LOCAL_DIR/admin-theme.sh" build)" || die "the admin console theme did not build"
	mkdir -p "$home/themes"
	for t in "$KC_HOME/themes"/*; do if [[ -e "$t" ]]; then ln -s "$t" "$home/themes/"; fi; done
	cp -r "$theme" "$home/themes/communities"
	import_dir="${KEYCLOAK_IMPORT_DIR:-$REPO_DIR/realm-export}"
	cp "$import_dir"/*.json "$home/data/import/" 2>/dev/null || true

	port="${KEYCLOAK_PORT:-$(free_port)}"
	mport="${KEYCLOAK_MANAGEMENT_PORT:-$(free_port)}"
	port_free "$port" || die "KEYCLOAK_PORT $port is in use (is another Keycloak running?)"
	port_free "$mport" || die "KEYCLOAK_MANAGEMENT_PORT $mport is in use"
	logfile="$home/keycloak.log"
	log "starting Keycloak $KEYCLOAK_VERSION on http://localhost:$port (log: $logfile)"
	started=$(now_ms)
	KC_BOOTSTRAP_ADMIN_USERNAME="${KEYCLOAK_ADMIN_USER:-admin}" \
		KC_BOOTSTRAP_ADMIN_PASSWORD="${KEYCLOAK_ADMIN_PASSWORD:-admin}" \
		JAVA_HOME="$(find_java 21 "Keycloak $KEYCLOAK_VERSION")" \
		setsid "$home/bin/kc.sh" start --optimized \
		--http-enabled=true --http-port="$port" --http-host=127.0.0.1 \
		--http-management-port="$mport" \
		--hostname-strict=false --proxy-headers=xforwarded \
		--db-url="$KEYCLOAK_DB_URL" --db-username=postgres --db-password=unused \
		--import-realm >"$logfile" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$home/pid"
	wait_http "http://127.0.0.1:$mport/health/ready" "${KEYCLOAK_START_TIMEOUT:-300}" Keycloak "$logfile" "$pid"
	log "Keycloak ready in $(elapsed "$started")"
	echo "KEYCLOAK_URL=http://localhost:$port"
	echo "KEYCLOAK_MANAGEMENT_URL=http://127.0.0.1:$mport"
	echo "KEYCLOAK_ADMIN_USER=${KEYCLOAK_ADMIN_USER:-admin}"
	echo "KEYCLOAK_ADMIN_PASSWORD=${KEYCLOAK_ADMIN_PASSWORD:-admin}"
	echo "KEYCLOAK_LOG=$logfile"
	echo "KEYCLOAK_PID=$pid"
}

stop() {
	local pidfile="$1/keycloak/pid"
	[[ -f "$pidfile" ]] || return 0
	stop_pid "$(cat "$pidfile")" Keycloak
	rm -f "$pidfile"
}

case "${1:-}" in
fetch) fetch ;;
extension)
	fetch
	echo "$EXT_JAR"
	;;
start) start "${2:?run dir}" ;;
stop) stop "${2:?run dir}" ;;
*) die "usage: $0 fetch | extension | start RUN_DIR | stop RUN_DIR" ;;
esac
