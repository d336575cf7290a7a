#!/bin/sh
# Runs once, when the TimescaleDB container initialises an empty data directory: a read-only role for
# Grafana. It may read every table the application role creates later (default privileges), and write none.
set -eu
psql -v ON_ERROR_STOP=1 -v reader=grafana_reader -v password="$GRAFANA_DB_PASSWORD" -v owner="$POSTGRES_USER" \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f /docker-entrypoint-initdb.d/grafana_reader.sql.in
