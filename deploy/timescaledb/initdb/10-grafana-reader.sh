#!/bin/sh
# Runs once, when the TimescaleDB container initialises an empty data directory (after 05-eldercare-owner.sh), as the
# cluster's superuser: Grafana's login, which may read schema grafana only (views of what the dashboards show;
# migration 0011 makes them) and write nothing.
# Idempotent: on a database initialised by an earlier version, run it once by hand to take back the old grants
# (docker compose exec timescaledb sh /docker-entrypoint-initdb.d/10-grafana-reader.sh).
set -eu
here=${ELDERCARE_INITDB_DIR:-/docker-entrypoint-initdb.d}
psql -X -q -v ON_ERROR_STOP=1 -v reader=grafana_reader -v password="$GRAFANA_DB_PASSWORD" -v owner=eldercare \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$here/grafana_reader.sql.in"
