#!/usr/bin/env bash
# The front door: Debian's nginx with deploy/nginx/templates/communities.conf.template,
# so that Keycloak and the communities service answer on one host, the way
# the seeds address them (…/auth/realms/<realm>/protocol/openid-connect/token
# and …/auth/realms/<realm>/communities), and the admin console's
# Communities page calls the service on its own origin.
#
#   frontdoor.sh start DIR   render the configuration into DIR, start nginx
#                            in the background; prints FRONTDOOR_URL and
#                            FRONTDOOR_PID lines
#   frontdoor.sh stop DIR    stop it
#
# Environment: COMMUNITIES_UPSTREAM and KEYCLOAK_UPSTREAM (host:port, required),
# KEYCLOAK_REALMS (required: the realms whose Keycloak endpoints and admin
# console the door forwards, comma-separated, as COMMUNITIES_REALMS; no
# other realm's, the master realm's included), FRONTDOOR_PORT (default
# 8000; listens on 127.0.0.1 only).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

nginx_bin() {
	if command -v nginx >/dev/null; then
		command -v nginx
	elif [[ -x /usr/sbin/nginx ]]; then
		echo /usr/sbin/nginx
	else
		return 1
	fi
}

start() {
	local dir="$1" port bin user="" pid
	: "${COMMUNITIES_UPSTREAM:?COMMUNITIES_UPSTREAM (host:port of the service) is required}"
	: "${KEYCLOAK_UPSTREAM:?KEYCLOAK_UPSTREAM (host:port of Keycloak) is required}"
	: "${KEYCLOAK_REALMS:?KEYCLOAK_REALMS (the realms to forward, comma-separated) is required}"
	# The names go into a regex: plain names only, so none can widen it.
	[[ "$KEYCLOAK_REALMS" =~ ^[A-Za-z0-9_-]+(,[A-Za-z0-9_-]+)*$ ]] ||
		die "KEYCLOAK_REALMS=$KEYCLOAK_REALMS: want realm names of letters, digits, _ and -, comma-separated"
	port="${FRONTDOOR_PORT:-8000}"
	port_free "$port" || die "port $port is in use; set FRONTDOOR_PORT to another port"
	bin="$(nginx_bin)" || {
		apt_install nginx
		# Debian starts the packaged nginx on port 80; we run our own.
		if command -v service >/dev/null; then service nginx stop >/dev/null 2>&1 || true; fi
		bin="$(nginx_bin)" || die "nginx not found after installing it"
	}
	mkdir -p "$dir"
	# envsubst's job, limited to the template's four names (nginx's own
	# $variables stay as they are).
	sed -e "s|\${COMMUNITIES_UPSTREAM}|$COMMUNITIES_UPSTREAM|g" \
		-e "s/\${KEYCLOAK_REALMS}/${KEYCLOAK_REALMS//,/|}/g" \
		-e "s|\${KEYCLOAK_UPSTREAM}|$KEYCLOAK_UPSTREAM|g" \
		-e "s|\${NGINX_PORT}|127.0.0.1:$port|g" \
		"$DEPLOY_DIR/nginx/templates/communities.conf.template" >"$dir/communities.conf"
	# Workers would otherwise switch to an account that cannot write the
	# temp directories below.
	[[ $(id -u) -eq 0 ]] && user="user root;"
	cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
$user
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 256; }
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/communities.conf;
}
CONF
	setsid "$bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stderr.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/frontdoor.pid"
	for _ in $(seq 1 150); do
		if ! port_free "$port"; then
			log "front door (nginx) on http://localhost:$port"
			echo "FRONTDOOR_URL=http://localhost:$port"
			echo "FRONTDOOR_PID=$pid"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$dir/stderr.log" "$dir/error.log" >&2 2>/dev/null || true
			die "nginx exited before it listened; read $dir/error.log"
		fi
		sleep 0.1
	done
	die "nginx did not listen on port $port within 15 s; read $dir/error.log"
}

stop() {
	local pidfile="$1/frontdoor.pid"
	[[ -f "$pidfile" ]] || return 0
	stop_pid "$(cat "$pidfile")" "front door (nginx)"
	rm -f "$pidfile"
}

case "${1:-}" in
start) start "${2:?dir}" ;;
stop) stop "${2:?dir}" ;;
*) die "usage: $0 start DIR | stop DIR" ;;
esac
