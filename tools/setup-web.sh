#!/usr/bin/env bash
# Installs the front-end libraries the platform serves (platform/web/node_modules, from the npm registry).
# Quick when nothing changed: a stamp holds the hash of package-lock.json.
set -euo pipefail

web=$(cd "$(dirname "$0")/../platform/web" && pwd)
stamp="$web/node_modules/.eldercare-stamp"
want=$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "setup: installing nodejs and npm (Debian packages)" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    else sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; fi
fi
echo "setup: installing front-end libraries (npm ci)" >&2
(cd "$web" && npm ci --omit=dev --no-audit --no-fund --silent)
echo "$want" > "$stamp"
