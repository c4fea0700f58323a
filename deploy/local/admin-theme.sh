#!/usr/bin/env bash
# Builds the Keycloak admin console theme "communities" from
# deploy/admin-theme: Keycloak's own console (npm @keycloak/keycloak-admin-ui
# at KEYCLOAK_ADMIN_UI_VERSION) with the Communities page.
#
#   admin-theme.sh build    build it unless the cache already holds this
#                           version of the sources; prints the theme's
#                           directory (copy it into Keycloak's themes/)
#   admin-theme.sh check    only check that the pinned versions agree
#
# The build happens outside the work tree, in $CACHE_DIR/admin-theme: one
# directory per hash of the sources and pinned versions, so an unchanged
# theme costs a hash and nothing else, and node_modules is reused for as
# long as package-lock.json does not change.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC_DIR="$DEPLOY_DIR/admin-theme"
THEME_CACHE="$CACHE_DIR/admin-theme"
# The npm packages that make up Keycloak's console: all three at the pinned version.
UI_PACKAGES=(@keycloak/keycloak-admin-ui @keycloak/keycloak-ui-shared @keycloak/keycloak-admin-client)

# check fails unless versions.env, package.json and package-lock.json all
# name the Keycloak version: a console from another version talks to an
# admin API it was not written for.
check() {
	local pkg got
	command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
	[[ -n "${KEYCLOAK_ADMIN_UI_VERSION:-}" ]] ||
		die "KEYCLOAK_ADMIN_UI_VERSION is not set in $DEPLOY_DIR/versions.env; set it to KEYCLOAK_VERSION ($KEYCLOAK_VERSION)"
	if [[ "$KEYCLOAK_ADMIN_UI_VERSION" != "$KEYCLOAK_VERSION" ]]; then
		die "the admin theme is pinned to @keycloak/keycloak-admin-ui $KEYCLOAK_ADMIN_UI_VERSION but Keycloak is $KEYCLOAK_VERSION (deploy/versions.env): they must be the same version; set KEYCLOAK_ADMIN_UI_VERSION=$KEYCLOAK_VERSION and the three @keycloak packages in deploy/admin-theme/package.json, then run npm install there"
	fi
	for pkg in "${UI_PACKAGES[@]}"; do
		got="$(node -e 'const p=require(process.argv[1]); console.log(p.dependencies[process.argv[2]] || "")' "$SRC_DIR/package.json" "$pkg")"
		[[ "$got" == "$KEYCLOAK_ADMIN_UI_VERSION" ]] ||
			die "deploy/admin-theme/package.json asks for $pkg \"$got\", but deploy/versions.env pins $KEYCLOAK_ADMIN_UI_VERSION (Keycloak $KEYCLOAK_VERSION): write exactly $KEYCLOAK_ADMIN_UI_VERSION and run npm install there"
		got="$(node -e 'const l=require(process.argv[1]); const e=l.packages["node_modules/"+process.argv[2]]; console.log(e ? e.version : "")' "$SRC_DIR/package-lock.json" "$pkg")"
		[[ "$got" == "$KEYCLOAK_ADMIN_UI_VERSION" ]] ||
			die "deploy/admin-theme/package-lock.json locks $pkg at \"$got\", but deploy/versions.env pins $KEYCLOAK_ADMIN_UI_VERSION: run npm install in deploy/admin-theme"
	done
}

# sources_hash names one build: every source file (path and content), the
# pinned versions and node's major version.
sources_hash() {
	{
		(cd "$SRC_DIR" && find . -path ./node_modules -prune -o -path ./dist -prune -o -type f -print | LC_ALL=C sort | xargs sha256sum)
		echo "keycloak=$KEYCLOAK_VERSION ui=$KEYCLOAK_ADMIN_UI_VERSION node=$(node -p 'process.versions.node.split(".")[0]')"
	} | sha256sum | cut -c1-16
}

build() {
	local hash out work started lockhash
	check
	hash="$(sources_hash)"
	out="$THEME_CACHE/$hash/communities"
	if [[ -f "$out/admin/resources/.vite/manifest.json" ]]; then
		echo "$out"
		return 0
	fi
	mkdir -p "$THEME_CACHE"
	# One build at a time: make run and make test may start together.
	exec 8>"$THEME_CACHE/.lock"
	flock -w 900 8 || die "timed out waiting for another admin theme build ($THEME_CACHE/.lock)"
	if [[ -f "$out/admin/resources/.vite/manifest.json" ]]; then
		echo "$out"
		return 0
	fi
	started=$(now_ms)
	log "building the admin console theme 'communities' (@keycloak/keycloak-admin-ui $KEYCLOAK_ADMIN_UI_VERSION) in $THEME_CACHE"
	work="$THEME_CACHE/work"
	mkdir -p "$work"
	rm -rf "$work/src" "$work/dist"
	cp -r "$SRC_DIR/src" "$SRC_DIR/package.json" "$SRC_DIR/package-lock.json" "$SRC_DIR/tsconfig.json" "$SRC_DIR/vite.config.ts" "$work/"
	lockhash="$(sha256sum "$SRC_DIR/package-lock.json" | cut -c1-16)"
	# npm install from the committed lock, not npm ci: ci refuses a lock
	# without every platform's optional packages (rollup's, esbuild's), and
	# the registry these machines reach lacks some of them.
	if [[ "$(cat "$work/.npm-install" 2>/dev/null)" != "$lockhash" ]]; then
		(cd "$work" && npm install --no-audit --no-fund --loglevel=error >"$THEME_CACHE/npm-install.log" 2>&1) ||
			{ tail -n 20 "$THEME_CACHE/npm-install.log" >&2; die "npm install for the admin theme failed; read $THEME_CACHE/npm-install.log"; }
		echo "$lockhash" >"$work/.npm-install"
	fi
	(cd "$work" && npx --no-install tsc --noEmit && npx --no-install vite build --logLevel warn) >"$THEME_CACHE/build.log" 2>&1 ||
		{ tail -n 30 "$THEME_CACHE/build.log" >&2; die "the admin theme did not build; read $THEME_CACHE/build.log"; }
	rm -rf "$THEME_CACHE/$hash.tmp"
	mkdir -p "$THEME_CACHE/$hash.tmp"
	cp -r "$SRC_DIR/theme/communities" "$THEME_CACHE/$hash.tmp/communities"
	cp -r "$work/dist" "$THEME_CACHE/$hash.tmp/communities/admin/resources"
	# Older builds are never in use: Keycloak homes get copies.
	find "$THEME_CACHE" -mindepth 1 -maxdepth 1 -type d ! -name work ! -name "$hash.tmp" -exec rm -rf {} +
	mv "$THEME_CACHE/$hash.tmp" "$THEME_CACHE/$hash"
	log "admin theme built in $(elapsed "$started")"
	echo "$out"
}

case "${1:-}" in
build) build ;;
check) check ;;
*) die "usage: $0 build | check" ;;
esac
