#!/bin/sh
# Once, on a deployment made by an earlier docker-compose.yml, whose TimescaleDB container was initialised with
# POSTGRES_USER=eldercare: the platform's login was then the cluster's superuser. This makes it a plain owner, as a
# new deployment has it (initdb/owner.sql.in):
#   1. the role that made the cluster, eldercare, is renamed to the administrator's login (POSTGRES_USER, password
#      ELDERCARE_DB_ADMIN_PASSWORD) and stays the superuser: the role that made a cluster must keep that right;
#   2. a new role eldercare (password ELDERCARE_DB_PASSWORD, no superuser) is made the owner of the database
#      (initdb/05-eldercare-owner.sh);
#   3. the platform's schemas, types, tables, chunks, views, sequences and functions are handed to it
#      (hand_over.sql.in); the extensions stay the administrator's;
#   4. Grafana's login is made again with its grants (initdb/10-grafana-reader.sh).
# It refuses to start unless the server reads this folder's pg_hba.conf (the container was made by the new
# docker-compose.yml: the superuser then logs in on the container's socket only). On a deployment made by an
# earlier version of this script or of initdb/ it changes only what this version added (owner.sql.in takes back
# PUBLIC's CONNECT and TEMPORARY on the databases).
# Run it with the platform's services stopped, in the timescaledb container of the new docker-compose.yml (it
# connects over the container's socket, as the entrypoint's scripts do):
#   docker compose stop migrate platform ingest-1 ingest-2 grafana simulated-home
#   docker compose up -d timescaledb
#   docker compose exec timescaledb sh /eldercare/timescaledb/upgrade-owner.sh
#   docker compose up -d
# Idempotent: on a deployment made by this version (or upgraded by it already) it changes nothing.
set -eu
here=$(cd "$(dirname "$0")" && pwd -P)
admin=$POSTGRES_USER
if [ "$admin" = eldercare ]; then
    echo "POSTGRES_USER is still eldercare: take docker-compose.yml of this version (its superuser is another role)" >&2
    exit 1
fi
q() {  # q USER SQL: one value, over the container's socket, in the platform's database (the one eldercare may
        # connect to once it is no superuser: owner.sql.in takes CONNECT on postgres from PUBLIC)
    psql -X -q -tA -v ON_ERROR_STOP=1 --username "$1" --dbname "$POSTGRES_DB" -c "$2"
}

made_the_cluster=$(q eldercare "SELECT count(*) FROM pg_roles WHERE oid = 10 AND rolname = 'eldercare'")
if [ "$made_the_cluster" = 1 ]; then superuser=eldercare; else superuser=$admin; fi
# The superuser must be refused over the network before it is the administrator's: the container of this version
# reads its rules from this folder (docker-compose.yml, -c hba_file=...), one of an earlier version does not.
hba_file=$(q "$superuser" "SHOW hba_file")
if [ "$hba_file" != "$here/pg_hba.conf" ]; then
    echo "the server reads $hba_file, not $here/pg_hba.conf: start the container of this version's" \
        "docker-compose.yml first (docker compose up -d timescaledb)" >&2
    exit 1
fi
if [ "$made_the_cluster" = 1 ]; then
    others=$(q eldercare "SELECT count(*) FROM pg_stat_activity
        WHERE usename = 'eldercare' AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
    if [ "$others" != 0 ]; then
        echo "$others sessions of eldercare are open: stop the platform's services first" >&2
        exit 1
    fi
    echo "renaming eldercare, the role that made the cluster, to $admin"
    q eldercare "CREATE ROLE eldercare_upgrade SUPERUSER LOGIN"  # a role may not rename itself
    psql -X -q -v ON_ERROR_STOP=1 -v admin="$admin" -v password="$POSTGRES_PASSWORD" \
        --username eldercare_upgrade --dbname postgres <<'SQL'
ALTER ROLE eldercare RENAME TO :"admin";
ALTER ROLE :"admin" WITH PASSWORD :'password';
SQL
    q "$admin" "DROP ROLE eldercare_upgrade"
fi

ELDERCARE_INITDB_DIR="$here/initdb" sh "$here/initdb/05-eldercare-owner.sh"
echo "handing the platform's objects in database $POSTGRES_DB from $admin to eldercare"
psql -X -q -v ON_ERROR_STOP=1 -v from="$admin" -v to=eldercare \
    --username "$admin" --dbname "$POSTGRES_DB" -f "$here/hand_over.sql.in"
ELDERCARE_INITDB_DIR="$here/initdb" sh "$here/initdb/10-grafana-reader.sh"
echo "done: eldercare owns database $POSTGRES_DB and is no superuser; $admin is the cluster's superuser"
