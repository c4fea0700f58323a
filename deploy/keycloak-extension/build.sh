#!/usr/bin/env bash
# Compiles the project's Keycloak extension against a Keycloak's own jars,
# so it needs no download and always matches that Keycloak:
#
#   build.sh KEYCLOAK_HOME OUT_JAR
#
# KEYCLOAK_HOME is a distribution or image root (it has lib/lib/main);
# javac and jar come from JAVA_HOME, else from PATH. Used by
# deploy/local/keycloak.sh and deploy/keycloak/Dockerfile alike.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${1:?usage: build.sh KEYCLOAK_HOME OUT_JAR}"
out="${2:?usage: build.sh KEYCLOAK_HOME OUT_JAR}"
bin="${JAVA_HOME:+$JAVA_HOME/bin/}"
[[ -d "$home/lib/lib/main" ]] || { echo "build.sh: $home is not a Keycloak home (no lib/lib/main)" >&2; exit 1; }
classes="$(mktemp -d)"
trap 'rm -rf "$classes"' EXIT
"${bin}javac" --release 17 -cp "$home/lib/lib/main/*:$home/lib/lib/boot/*" -d "$classes" $(find "$src/src" -name '*.java')
cp -r "$src/META-INF" "$classes/"
"${bin}jar" --create --file "$out.tmp" -C "$classes" .
mv "$out.tmp" "$out"
