#!/bin/sh
# Runs once, when the TimescaleDB container initialises an empty data directory, as the cluster's superuser
# (POSTGRES_USER, the administrator's login, password ELDERCARE_DB_ADMIN_PASSWORD): makes the platform's login
# eldercare (password ELDERCARE_DB_PASSWORD), a plain role that owns the database, and installs TimescaleDB in it
# (owner.sql.in). Every service of docker-compose.yml connects as eldercare; nothing but these scripts and an
# administrator uses the superuser. Idempotent. upgrade-owner.sh runs it on a deployment of an earlier version.
set -eu
here=${ELDERCARE_INITDB_DIR:-/docker-entrypoint-initdb.d}
if [ "$POSTGRES_USER" = eldercare ]; then
    echo "POSTGRES_USER is the platform's login (eldercare): the superuser must be another role" >&2
    exit 1
fi
if [ "$ELDERCARE_DB_PASSWORD" = "$POSTGRES_PASSWORD" ]; then
    echo "ELDERCARE_DB_PASSWORD must differ from the superuser's password (ELDERCARE_DB_ADMIN_PASSWORD)" >&2
    exit 1
fi
psql -X -q -v ON_ERROR_STOP=1 -v owner=eldercare -v password="$ELDERCARE_DB_PASSWORD" -v database="$POSTGRES_DB" \
    --username "$POSTGRES_USER" --dbname postgres -f "$here/owner.sql.in"
