#!/usr/bin/env bash
# Starts or stops a throw-away PostgreSQL from Debian's packages.
#
#   postgres.sh start RUN_DIR   initdb in RUN_DIR/postgres, start on a free
#                               port, create the databases, and print
#                               KEY=VALUE lines (DATABASE_URL, ...) to stdout
#   postgres.sh stop RUN_DIR    stop it
#   postgres.sh pause RUN_DIR   stop it, keeping its data (fault tests)
#   postgres.sh resume RUN_DIR  start a paused one again on the same port
#
# Environment: POSTGRES_PORT (default: a free port).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pg_bindir() {
	local d
	for d in "/usr/lib/postgresql/$POSTGRES_MAJOR/bin" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
		if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

# as_owner runs a command as the user that owns the data directory:
# PostgreSQL refuses to run as root, so root hands it to "postgres".
as_owner() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

start() {
	local run_dir="$1" dir bin port started
	dir="$run_dir/postgres"
	bin="$(pg_bindir)" || {
		apt_install "postgresql-$POSTGRES_MAJOR" || apt_install postgresql
		bin="$(pg_bindir)" || die "PostgreSQL binaries not found after installing them"
	}
	port="${POSTGRES_PORT:-$(free_port)}"
	port_free "$port" || die "POSTGRES_PORT $port is in use"
	mkdir -p "$dir"
	if [[ $(id -u) -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "user 'postgres' missing; reinstall the postgresql package"
		chown postgres "$dir"
		chmod 700 "$dir"
	fi
	log "starting PostgreSQL ($bin) on 127.0.0.1:$port, data in $dir/data"
	started=$(now_ms)
	as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ tail -n 20 "$dir/initdb.log" >&2; die "initdb failed; read $dir/initdb.log"; }
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null ||
		{ tail -n 20 "$dir/postgres.log" >&2; die "PostgreSQL did not start; read $dir/postgres.log"; }
	for db in communities keycloak; do
		psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null ||
			die "could not create database $db; read $dir/postgres.log"
	done
	echo "$port" >"$dir/port"
	log "PostgreSQL ready in $(elapsed "$started")"
	echo "POSTGRES_PORT=$port"
	echo "DATABASE_URL=postgres://postgres@127.0.0.1:$port/communities?sslmode=disable"
	echo "KEYCLOAK_DB_URL=jdbc:postgresql://127.0.0.1:$port/keycloak"
	echo "POSTGRES_LOG=$dir/postgres.log"
}

stop() {
	local dir="$1/postgres" bin
	[[ -f "$dir/data/postmaster.pid" ]] || return 0
	bin="$(pg_bindir)" || return 0
	as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || warn "PostgreSQL in $dir did not stop cleanly"
}

resume() {
	local dir="$1/postgres" bin port
	bin="$(pg_bindir)" || die "PostgreSQL binaries not found"
	port="$(cat "$dir/port")"
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null ||
		die "PostgreSQL did not start again; read $dir/postgres.log"
}

case "${1:-}" in
start) start "${2:?run dir}" ;;
stop | pause) stop "${2:?run dir}" ;;
resume) resume "${2:?run dir}" ;;
*) die "usage: $0 start|stop|pause|resume RUN_DIR" ;;
esac
