#!/usr/bin/env bash
# Brings up the servers the service needs: PostgreSQL (unless DATABASE_URL
# is given) and Keycloak with realm-export/ imported (unless KEYCLOAK_URL is
# given), and the test FHIR server (unless FHIR_URL is given or WITH_FHIR=0),
# in a throw-away run directory. Keycloak and the FHIR server start side by
# side: both are JVMs that spend their start-up waiting on themselves.
#
#   stack.sh up ENV_FILE        start them, write KEY=VALUE lines to ENV_FILE
#                               (RUN_DIR names the run directory to stop)
#   stack.sh down ENV_FILE      stop what ENV_FILE says was started, remove
#                               the run directory
#   stack.sh exec -- CMD...     up, run CMD with the variables exported, down;
#                               exits with CMD's status
#
# Set KEEP_RUN_DIR=1 to keep logs and data after down.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

up() {
	local env_file="$1" run_dir fhir_env="" fhir_pid=""
	run_dir="$(mktemp -d "${TMPDIR:-/tmp}/communities-run.XXXXXX")"
	# PostgreSQL runs as another user when we are root: let it reach its dir.
	chmod 755 "$run_dir"
	: >"$env_file"
	echo "RUN_DIR=$run_dir" >>"$env_file"
	if [[ -n "${DATABASE_URL:-}" ]]; then
		log "using PostgreSQL at DATABASE_URL"
		echo "DATABASE_URL=$DATABASE_URL" >>"$env_file"
		if [[ -z "${KEYCLOAK_URL:-}" && -z "${KEYCLOAK_DB_URL:-}" ]]; then
			die "DATABASE_URL is set but Keycloak must be started: give KEYCLOAK_URL, or KEYCLOAK_DB_URL for the Keycloak database"
		fi
	else
		"$LOCAL_DIR/postgres.sh" start "$run_dir" >>"$env_file"
	fi
	if [[ -n "${FHIR_URL:-}" ]]; then
		log "using the FHIR server at FHIR_URL=$FHIR_URL"
		echo "FHIR_URL=$FHIR_URL" >>"$env_file"
	elif [[ "${WITH_FHIR:-1}" != 0 ]]; then
		fhir_env="$run_dir/fhir.env"
		"$LOCAL_DIR/fhir.sh" start "$run_dir" >"$fhir_env" &
		fhir_pid=$!
		echo "$fhir_pid" >"$run_dir/fhir-starter.pid"
	fi
	if [[ -n "${KEYCLOAK_URL:-}" ]]; then
		log "using Keycloak at KEYCLOAK_URL=$KEYCLOAK_URL"
		{
			echo "KEYCLOAK_URL=$KEYCLOAK_URL"
			echo "KEYCLOAK_ADMIN_USER=${KEYCLOAK_ADMIN_USER:-admin}"
			echo "KEYCLOAK_ADMIN_PASSWORD=${KEYCLOAK_ADMIN_PASSWORD:-admin}"
		} >>"$env_file"
	else
		# shellcheck disable=SC1090
		KEYCLOAK_DB_URL="$(. "$env_file" && echo "${KEYCLOAK_DB_URL:-}")" \
			"$LOCAL_DIR/keycloak.sh" start "$run_dir" >>"$env_file"
	fi
	if [[ -n "$fhir_pid" ]]; then
		wait "$fhir_pid" || die "the test FHIR server did not start"
		cat "$fhir_env" >>"$env_file"
	fi
}

down() {
	local env_file="$1" run_dir
	[[ -f "$env_file" ]] || return 0
	run_dir="$(. "$env_file" && echo "${RUN_DIR:-}")"
	[[ -n "$run_dir" && -d "$run_dir" ]] || return 0
	log "stopping the servers started in $run_dir"
	# A FHIR server start still under way (Keycloak failed first) ends too.
	[[ -f "$run_dir/fhir-starter.pid" ]] && stop_pid "$(cat "$run_dir/fhir-starter.pid")" "FHIR server start"
	"$LOCAL_DIR/fhir.sh" stop "$run_dir" || true
	"$LOCAL_DIR/keycloak.sh" stop "$run_dir" || true
	"$LOCAL_DIR/postgres.sh" stop "$run_dir" || true
	if [[ "${KEEP_RUN_DIR:-}" == 1 ]]; then
		log "kept $run_dir"
	else
		rm -rf "$run_dir"
	fi
	rm -f "$env_file"
}

run_with() {
	local status=0
	# Global: the EXIT trap runs after this function's locals are gone.
	STACK_ENV_FILE="$(mktemp "${TMPDIR:-/tmp}/communities-env.XXXXXX")"
	trap 'down "$STACK_ENV_FILE"' EXIT
	trap 'exit 130' INT TERM
	up "$STACK_ENV_FILE"
	set -a
	# shellcheck disable=SC1090
	. "$STACK_ENV_FILE"
	set +a
	"$@" || status=$?
	return "$status"
}

case "${1:-}" in
up) up "${2:?env file}" ;;
down) down "${2:?env file}" ;;
exec)
	shift
	[[ "${1:-}" == -- ]] && shift
	[[ $# -gt 0 ]] || die "usage: $0 exec -- CMD..."
	run_with "$@"
	;;
*) die "usage: $0 up ENV_FILE | down ENV_FILE | exec -- CMD..." ;;
esac
