"""The database roles of docker-compose.yml, tried on a cluster made as the TimescaleDB container makes it: the
services log in as eldercare, which owns the database and every object of the platform and is no superuser, so an
injected statement cannot leave the database (COPY ... TO PROGRAM, server files, roles, other databases); the
superuser is the administrator's alone. Both ways to get there: a first start (deploy/timescaledb/initdb/), and the
upgrade of a deployment made by the earlier docker-compose.yml, whose superuser was eldercare itself
(deploy/timescaledb/upgrade-owner.sh). On either, `eldercare db migrate` runs as eldercare, and so do the API, the
maintenance jobs (roll-ups, retention's drop_chunks) and Grafana's read-only login. Over the network only those two
logins reach the platform's database (deploy/timescaledb/pg_hba.conf): the superuser logs in on the container's
socket only; and no role but the owner and Grafana's may connect to a database, nor any but the owner make temporary
tables (owner.sql.in)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from tests.deploy.container import UPGRADE, Container, compose_settings, container, resolved_compose, restart
from tests.platform_procs import migrate_command
from tests.registry.support import Server, login, new_id_number, new_uscc
from tests.supervision.grafana_reader import SCRIPT as GRAFANA_SCRIPT

from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import seal_reading

ADMIN = "site-admin"
ADMIN_PASSWORD = "a-long-admin-password"
OLD_READING = datetime.now(UTC) - timedelta(days=90)  # older than the raw retention (30 days)
EARLIER_SETTINGS = {"timescaledb.telemetry_level": "off"}  # the command of the earlier docker-compose.yml

# Every object in the database that its owner column gives to a role (the :role parameter), outside PostgreSQL's
# own (oids below FirstNormalObjectId, schemas pg_* and information_schema) and outside any extension. Indexes, a
# relation's row type and array types are left out: their owner is always their table's or element type's.
OWNED_BY = """
SELECT c.kind || ' ' || c.name FROM (
    SELECT 'schema' AS kind, nspname AS name, oid, nspowner AS owner, oid AS nsp, 'pg_namespace'::regclass AS cls
      FROM pg_namespace
    UNION ALL SELECT 'type', oid::regtype::text, oid, typowner, typnamespace, 'pg_type'::regclass FROM pg_type t
      WHERE (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
        AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)
    UNION ALL SELECT 'relation', oid::regclass::text, oid, relowner, relnamespace, 'pg_class'::regclass FROM pg_class
      WHERE relkind NOT IN ('i', 'I')
    UNION ALL SELECT 'routine', oid::regprocedure::text, oid, proowner, pronamespace, 'pg_proc'::regclass FROM pg_proc
    UNION ALL SELECT 'operator', oid::regoperator::text, oid, oprowner, oprnamespace, 'pg_operator'::regclass
      FROM pg_operator
    UNION ALL SELECT 'statistics', stxname, oid, stxowner, stxnamespace, 'pg_statistic_ext'::regclass
      FROM pg_statistic_ext
) c JOIN pg_namespace n ON n.oid = c.nsp
WHERE c.owner = %(role)s::regrole AND c.oid >= 16384
  AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = c.cls AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY 1
"""

# What an injected statement would try, each refused to the platform's login.
REFUSED = [
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "COPY regions (name) FROM '/etc/passwd'",
    "COPY regions TO '/tmp/regions.txt'",
    "SELECT pg_read_file('PG_VERSION')",
    "SELECT pg_ls_dir('.')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT rolpassword FROM pg_authid",
    "CREATE ROLE intruder LOGIN PASSWORD 'intruder'",
    "ALTER ROLE eldercare SUPERUSER",
    "CREATE DATABASE intruder",
    "ALTER SYSTEM SET log_statement = 'none'",
    "CREATE EXTENSION file_fdw",
    "SET session_replication_role = replica",  # would switch the audit log's append-only trigger off
]


@dataclass(frozen=True, slots=True)
class Deployment:
    how: str  # "first start" or "upgraded"
    container: Container
    app_url: str  # the services' ELDERCARE_DATABASE_URL, pointed at the cluster
    key: bytes  # ELDERCARE_DATA_KEY

    def tcp_url(self, user: str, database: str | None = None) -> str:
        """``user`` over TCP with the password the compose file gives it."""
        environment = self.container.environment
        passwords = {
            self.container.superuser: environment["POSTGRES_PASSWORD"],
            "eldercare": environment["ELDERCARE_DB_PASSWORD"],
            "grafana_reader": environment["GRAFANA_DB_PASSWORD"],
        }
        database = database or self.container.database
        return f"postgresql://{user}:{passwords[user]}@127.0.0.1:{self.container.port}/{database}"

    @property
    def grafana_url(self) -> str:
        return self.tcp_url("grafana_reader")

    @property
    def admin_url(self) -> str:
        """The administrator: the superuser, on the container's socket (`docker compose exec`)."""
        return self.container.socket_url(self.container.superuser)


def _compose() -> tuple[dict[str, str], str, bytes]:
    """The timescaledb service's environment, the services' database URL, and the data key."""
    services = resolved_compose()["services"]
    environment: dict[str, str] = services["timescaledb"]["environment"]
    app_env: dict[str, str] = services["migrate"]["environment"]
    return environment, app_env["ELDERCARE_DATABASE_URL"], base64.b64decode(app_env["ELDERCARE_DATA_KEY"])


def _migrate(url: str, key: bytes) -> None:
    done = migrate_command(url, key)
    assert done.returncode == 0, done.stdout + done.stderr


def _eldercare(*args: str, url: str, key: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """The command line as a service runs it; ``key``: the data key, for what opens or seals personal data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env |= {"ELDERCARE_ENV_FILE": "/nonexistent/eldercare.env", "ELDERCARE_DATABASE_URL": url}
    if key is not None:
        env["ELDERCARE_DATA_KEY"] = base64.b64encode(key).decode()
    env["ELDERCARE_NEW_PASSWORD"] = ADMIN_PASSWORD
    exe = Path(sys.executable).with_name("eldercare")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def _store_old_reading(url: str, key: bytes) -> None:
    """A reading with a heart rate, sealed as ingest stores it, older than the raw retention."""
    sealed = seal_reading(Vault(key).vitals_sealer(), OLD_READING, 1, 70, None)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO bed_readings (time, device_id, presence, vitals_enc) VALUES (%s, 1, true, %s)",
            (OLD_READING, sealed),
        )


def _first_start() -> Iterator[Deployment]:
    environment, url, key = _compose()
    with container(environment, compose_settings()) as made:
        made.run_entrypoint_scripts()
        app_url = made.tcp_url(url)
        _migrate(app_url, key)  # the migrate service, after the container's first start
        done = _eldercare("users", "add", ADMIN, "--role", "admin", url=app_url)
        assert done.returncode == 0, done.stderr
        _store_old_reading(app_url, key)
        yield Deployment("first start", made, app_url, key)


def _upgraded() -> Iterator[Deployment]:
    """A deployment of the earlier docker-compose.yml (the container made with POSTGRES_USER=eldercare, the services
    logging in as that superuser), with data, then upgraded as the README says."""
    environment, url, key = _compose()
    old = {
        "POSTGRES_USER": "eldercare",
        "POSTGRES_PASSWORD": environment["ELDERCARE_DB_PASSWORD"],
        "POSTGRES_DB": "eldercare",
        "GRAFANA_DB_PASSWORD": environment["GRAFANA_DB_PASSWORD"],
    }
    with container(old, EARLIER_SETTINGS) as before:
        with psycopg.connect(before.socket_url("eldercare", "postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE eldercare")
        # the earlier 10-grafana-reader.sh: the reader script with the superuser as the owner
        grafana = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "reader=grafana_reader", "-v",
             f"password={old['GRAFANA_DB_PASSWORD']}", "-v", "owner=eldercare", "-d", before.socket_url("eldercare"),
             "-f", str(GRAFANA_SCRIPT)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert grafana.returncode == 0, grafana.stderr
        app_url = before.tcp_url(url)
        _migrate(app_url, key)
        with psycopg.connect(app_url) as conn:
            row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (True,), "the earlier layout: the services' login is the superuser"
        done = _eldercare("users", "add", ADMIN, "--role", "admin", url=app_url)
        assert done.returncode == 0, done.stderr
        _store_old_reading(app_url, key)

        after = Container(folder=before.folder, port=before.port, environment=environment)  # the new compose file
        early = after.sh(UPGRADE)  # in the container of the earlier compose file: its superuser is reached over TCP
        assert early.returncode == 1 and "docker compose up -d timescaledb" in early.stderr, early.stdout + early.stderr
        with psycopg.connect(after.socket_url("eldercare")) as conn:
            unchanged = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert unchanged == (True,)
        restart(after, compose_settings())  # docker compose up -d timescaledb
        upgrade = after.sh(UPGRADE)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        again = after.sh(UPGRADE)
        assert again.returncode == 0, again.stdout + again.stderr
        yield Deployment("upgraded", after, app_url, key)


@pytest.fixture(scope="module", params=["first start", "upgraded"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    yield from (_first_start() if request.param == "first start" else _upgraded())


def test_the_services_log_in_as_the_owner_which_is_no_superuser(deployment: Deployment) -> None:
    with psycopg.connect(deployment.app_url) as conn:
        me = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        memberships = conn.execute(
            "SELECT roleid::regrole::text FROM pg_auth_members WHERE member = current_user::regrole"
        ).fetchall()
        owner = conn.execute(
            "SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert me == ("eldercare", False, False, False, False, False)
    assert memberships == []  # no pg_read_server_files, pg_execute_server_program ...
    assert owner == ("eldercare",)
    assert deployment.container.superuser != "eldercare"
    with psycopg.connect(deployment.admin_url) as admin:  # the administrator's login, with its own password
        made_the_cluster = admin.execute("SELECT rolname, rolsuper FROM pg_roles WHERE oid = 10").fetchone()
    assert made_the_cluster == (deployment.container.superuser, True)


@pytest.mark.parametrize("statement", REFUSED)
def test_an_injected_statement_cannot_leave_the_database(deployment: Deployment, statement: str) -> None:
    with psycopg.connect(deployment.app_url, autocommit=True) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement.encode())


def test_it_owns_every_object_of_the_platform(deployment: Deployment) -> None:
    with psycopg.connect(deployment.admin_url) as conn:
        superusers = [r[0] for r in conn.execute(OWNED_BY, {"role": deployment.container.superuser})]
        owned = {r[0] for r in conn.execute(OWNED_BY, {"role": "eldercare"})}
        chunks = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE c.relowner = 'eldercare'::regrole)"
            " FROM timescaledb_information.chunks i JOIN pg_class c"
            " ON c.oid = format('%I.%I', i.chunk_schema, i.chunk_name)::regclass"
        ).fetchone()
    assert superusers == []
    assert {
        "schema grafana",
        "relation schema_migrations",
        "relation bed_readings",
        "relation audit_log",
        "relation grafana.gateways",
        "routine grafana.supervision_figures(bigint[],date,date)",
        "routine grafana_grant()",
        "type alarm_state",
    } <= owned
    assert chunks is not None and chunks[0] > 0 and chunks[0] == chunks[1]


def test_migrate_and_the_api_run_as_the_owner(deployment: Deployment) -> None:
    _migrate(deployment.app_url, deployment.key)  # again: nothing to apply, every file's checksum checked
    with Server(database_url=deployment.app_url, key=deployment.key, state_dir=deployment.container.folder) as api:
        admin = login(api.base, ADMIN, ADMIN_PASSWORD)
        home: dict[str, Any] = admin.ok(
            "POST",
            "/api/v1/institutions",
            201,
            json={"code": new_uscc("420502"), "name": "属主院", "kind": "residential_home", "region_code": "420502"},
        )
        admin.ok(
            "POST",
            f"/api/v1/institutions/{home['id']}/residents",
            201,
            json={"name": "王秀英", "id_number": new_id_number("420502")},
        )
        assert admin.request("GET", "/api/v1/alarms").status_code == 200
    done = _eldercare("audit", "verify", url=deployment.app_url)
    assert done.returncode == 0, done.stdout + done.stderr


def test_maintenance_drops_old_chunks_as_the_owner(deployment: Deployment) -> None:
    done = _eldercare(
        "ingest", "maintain", "--job", "rollups", "--job", "retention", url=deployment.app_url, key=deployment.key
    )  # the roll-ups open the readings' rates and seal their statistics
    assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(deployment.app_url) as conn:
        left = conn.execute("SELECT count(*) FROM bed_readings WHERE time = %s", (OLD_READING,)).fetchone()
    assert left == (0,), done.stdout


def test_grafana_reads_its_views_and_nothing_else(deployment: Deployment) -> None:
    with psycopg.connect(deployment.grafana_url) as conn:
        regions = conn.execute("SELECT count(*) FROM grafana.regions").fetchone()
        conn.execute("SELECT * FROM grafana.supervision_figures(ARRAY[1]::bigint[], '2026-10-01', '2026-10-30')")
        assert regions is not None and regions[0] > 3000
    with psycopg.connect(deployment.grafana_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT password_hash FROM users")


# Heart and breathing rates, sealed or in clear, and the roll-ups' statistics of them: health data, which Grafana can
# neither open nor audit a read of (migration 0028). Its views have none of these columns; the tables are refused.
RATES = ["heart_rate", "resp_rate", "vitals_enc", "hr_min", "hr_max", "hr_sum", "rr_min", "rr_max", "rr_sum"]
RATE_TABLES = {"bed_readings": RATES[:3], "bed_hourly": RATES[2:], "bed_daily": RATES[2:]}


def test_grafana_reads_no_heart_or_breathing_rate(deployment: Deployment) -> None:
    with psycopg.connect(deployment.grafana_url) as conn:
        in_views = conn.execute(
            "SELECT c.relname || '.' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = 'grafana'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped"
            " AND a.attname = ANY (%s)",
            (RATES,),
        ).fetchall()
        readable = conn.execute(
            "SELECT c.relname || '.' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped"
            " AND a.attname = ANY (%s) AND has_column_privilege(c.oid, a.attnum, 'SELECT')",
            (RATES,),
        ).fetchall()
        # what the dashboards show of a bed instead: presence and occupancy
        conn.execute("SELECT time, device_id, presence FROM grafana.bed_readings LIMIT 1")
        conn.execute("SELECT observed_minutes, occupied_minutes FROM grafana.bed_hourly LIMIT 1")
    assert in_views == [] and readable == []
    for table, columns in RATE_TABLES.items():
        for column in columns:
            with psycopg.connect(deployment.grafana_url) as conn, pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT {column} FROM public.{table}".encode())


# Over TCP with the right password, each refused by pg_hba.conf before a password is asked.
REFUSED_OVER_TCP = [
    ("superuser", "eldercare", False),
    ("superuser", "postgres", False),
    ("superuser", "postgres", True),  # replication
    ("eldercare", "postgres", False),
    ("eldercare", "template1", False),
    ("eldercare", "postgres", True),
    ("grafana_reader", "postgres", False),
    ("grafana_reader", "template1", False),
]


@pytest.mark.parametrize(("user", "database", "replication"), REFUSED_OVER_TCP)
def test_over_the_network_only_the_services_logins_reach_the_platforms_database(
    deployment: Deployment, user: str, database: str, replication: bool
) -> None:
    login = deployment.container.superuser if user == "superuser" else user
    url = deployment.tcp_url(login, database) + ("?replication=true" if replication else "")
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects (replication )?connection"):
        psycopg.connect(url, connect_timeout=10).close()
    for service in ("eldercare", "grafana_reader"):  # the services' logins, to the platform's database
        with psycopg.connect(deployment.tcp_url(service)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (service,)
    if login == deployment.container.superuser and not replication:  # docker compose exec timescaledb psql
        with psycopg.connect(deployment.container.socket_url(login, database)) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)


@pytest.mark.parametrize("user", ["eldercare", "grafana_reader"])
@pytest.mark.parametrize("database", ["postgres", "template1"])
def test_the_services_logins_connect_to_no_other_database(deployment: Deployment, user: str, database: str) -> None:
    """Also where pg_hba.conf would let them (the container's socket): they have no CONNECT there."""
    with pytest.raises(psycopg.OperationalError, match=f'permission denied for database "{database}"'):
        psycopg.connect(deployment.container.socket_url(user, database)).close()


def test_public_has_no_right_on_any_database(deployment: Deployment) -> None:
    with psycopg.connect(deployment.admin_url) as conn:
        granted = conn.execute(
            "SELECT d.datname, a.grantee::regrole::text, a.privilege_type"
            " FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
            " WHERE d.datallowconn AND a.grantee <> d.datdba ORDER BY 1, 2, 3"
        ).fetchall()
    database = deployment.container.database
    assert granted == [(database, "eldercare_grafana", "CONNECT")]  # 0 would be PUBLIC


def test_only_the_owner_makes_temporary_tables(deployment: Deployment) -> None:
    """The subsidy checks build temporary tables as the owner; Grafana's login, whose read-only default it may
    switch off itself, may not make one."""
    with psycopg.connect(deployment.app_url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE scratch (x int)")
    with psycopg.connect(deployment.grafana_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(errors.InsufficientPrivilege, match="temporary tables"):
            conn.execute("CREATE TEMP TABLE scratch (x int)")


def test_timescaledb_runs_its_apache_licensed_features_only(deployment: Deployment) -> None:
    """As development and the tests do: the image's default would be the Timescale-licensed edition."""
    with psycopg.connect(deployment.app_url) as conn:
        assert conn.execute("SHOW timescaledb.license").fetchone() == ("apache",)
