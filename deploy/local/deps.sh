#!/usr/bin/env bash
# Installs the programs the integration suite drives besides Keycloak and
# PostgreSQL (which stack.sh installs): Debian's nginx for the front-door
# test, Debian's Chromium and playwright-core (npm) for the admin console
# test. Does nothing for what is already there.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
	apt_install "${missing[@]}"
	# Debian starts the packaged nginx on port 80; the tests run their own.
	if command -v service >/dev/null; then service nginx stop >/dev/null 2>&1 || true; fi
fi

if [[ ! -d "$REPO_DIR/test/browser/node_modules/playwright-core" ]]; then
	log "installing playwright-core for the browser test (npm ci in test/browser)"
	(cd "$REPO_DIR/test/browser" && npm ci --no-audit --no-fund --loglevel=error) ||
		die "npm ci in test/browser failed"
fi
