#!/usr/bin/env bash
# Installs what the project needs on a Debian 12 machine, and nothing when it is all present.
# Called by `make setup` (and so by `make demo` and `make test`). Idempotent; quick when nothing is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: binaries we call, and the headers TimescaleDB is built against.
# command-or-file -> package
need_pkgs=()
check() { # check PATH PACKAGE
    [ -e "$1" ] || need_pkgs+=("$2")
}
check /usr/lib/postgresql/15/bin/initdb postgresql-15
check /usr/lib/postgresql/15/bin/pg_config postgresql-server-dev-15
check /usr/include/postgresql/15/server/postgres.h postgresql-server-dev-15
check /usr/share/postgresql/15/extension/btree_gist.control postgresql-contrib
check /usr/sbin/mosquitto mosquitto
check /usr/bin/mosquitto_pub mosquitto-clients
check /usr/bin/mosquitto_passwd mosquitto
check /usr/bin/cmake cmake
check /usr/bin/gcc build-essential
check /usr/bin/make build-essential
check /usr/bin/dpkg-source dpkg-dev
check /usr/bin/docker-compose docker-compose
check /bin/busybox busybox  # the broker entrypoint is tested under the shell of the eclipse-mosquitto image
check /usr/bin/chromium chromium
check /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc fonts-noto-cjk
check /usr/bin/xz xz-utils
check /usr/bin/pdftotext poppler-utils
check /usr/include/openssl/ssl.h libssl-dev
check /usr/bin/python3.11 python3.11
check /usr/lib/python3.11/venv/__init__.py python3.11-venv

if [ ${#need_pkgs[@]} -gt 0 ]; then
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    log "installing Debian packages: ${need_pkgs[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# The packaged Mosquitto and PostgreSQL may start their own system services; the project never relies
# on them (it runs its own on its own ports), so they are left as they are.

"$here/tools/build-timescaledb.sh"
