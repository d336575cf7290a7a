#!/usr/bin/env bash
# Builds and installs the Apache-licensed TimescaleDB extension into PostgreSQL 15 from Debian's own
# source package (trixie's, 2.19.x), because Debian 12 ships no TimescaleDB package.
# Skipped when the extension is already installed.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
ext_dir=$("$PG_CONFIG" --sharedir)/extension
pkglib=$("$PG_CONFIG" --pkglibdir)
log() { printf 'timescaledb: %s\n' "$*" >&2; }
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ls "$pkglib"/timescaledb-2.*.so >/dev/null 2>&1 && [ -f "$ext_dir/timescaledb.control" ]; then
    exit 0
fi

srclist=/etc/apt/sources.list.d/eldercare-trixie-src.list
if [ ! -f "$srclist" ]; then
    log "adding a deb-src line for trixie (source packages only; nothing is installed from it)"
    echo "deb-src http://deb.debian.org/debian trixie main" | as_root tee "$srclist" >/dev/null
    as_root apt-get update -qq
fi

work=$(mktemp -d /tmp/timescaledb-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
log "fetching the source package"
if ! apt-get source --download-only -qq timescaledb >/dev/null 2>&1; then
    as_root apt-get update -qq
    apt-get source --download-only -qq timescaledb >/dev/null
fi
orig=$(ls timescaledb_*.orig.tar.* | head -n 1)
log "building from $orig"
mkdir src
tar -xf "$orig" -C src --strip-components=1
cd src
./bootstrap -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=1 -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF \
    -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
make -C build -j"$(nproc)" >/dev/null
as_root make -C build install >/dev/null
log "installed: $(ls "$pkglib"/timescaledb-2.*.so | xargs -n1 basename | tr '\n' ' ')"
