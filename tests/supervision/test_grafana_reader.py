"""Grafana's database login, made by the production script (deploy/timescaledb/initdb/grafana_reader.sql.in) and
tried from the outside: it runs every query of every dashboard, and reads nothing else — no users, sessions, audit
log, residents, contacts, no table made later. The views it reads (migration 0011) hold exactly the columns the
panels use, as PostgreSQL records what each panel's query reads."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors
from tests.registry.support import Database, create_database, drop_database
from tests.supervision.grafana_reader import GROUP, Query, Reader, empty_database, queries, reader_of, run_script

from eldercare.platform.db.migrate import migrate
from eldercare.platform.stack.model import StackInfo

VARIABLES = {
    "eldercare-operations": {},
    "eldercare-home": {"institution": "1"},
    "eldercare-regulator": {"region": "4205"},
}

# Relations PostgreSQL and its extensions make readable by everyone (their catalogues): not the platform's data.
EXTENSION_MEMBER = """
    EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')
"""

# Every relation outside the system catalogues the role may read a column of.
READABLE = f"""
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT {EXTENSION_MEMBER}
  AND (has_table_privilege(%(role)s, c.oid, 'SELECT') OR has_any_column_privilege(%(role)s, c.oid, 'SELECT'))
ORDER BY 1
"""

GRAFANA_RELATIONS = """
SELECT 'grafana.' || c.relname FROM pg_class c WHERE c.relnamespace = 'grafana'::regnamespace ORDER BY 1
"""

# Personal data and secrets, each read alone, as the reader: every one must be refused.
REFUSED = [
    "SELECT password_hash FROM users",
    "SELECT username FROM users",
    "SELECT token_hash FROM sessions",
    "SELECT * FROM audit_log",
    "SELECT name_enc FROM residents",
    "SELECT id_number_enc FROM residents",
    "SELECT id_number_hash FROM residents",
    "SELECT id_number_masked FROM residents",
    "SELECT birth_date, sex FROM residents",
    "SELECT person_code FROM residents",
    "SELECT phone_enc, phone_masked FROM resident_contacts",
    "SELECT * FROM family_links",
    "SELECT * FROM notification_channels",
    "SELECT * FROM notifications",
    "SELECT password_hash FROM gateways",
    "SELECT payload FROM parked_messages",
    "SELECT heart_rate FROM bed_readings",
    "SELECT resp_rate FROM bed_readings",
    "SELECT vitals_enc FROM bed_readings",
    "SELECT hr_min, hr_max, hr_sum, vitals_enc FROM bed_hourly",
    "SELECT rr_min, rr_max, rr_sum, vitals_enc FROM bed_daily",
    "SELECT resident_id FROM bed_assignments",
    "SELECT * FROM supervision_figures(ARRAY[1]::bigint[], '2026-10-01', '2026-10-30')",
]


@pytest.fixture(scope="module")
def migrated(stack: StackInfo) -> Iterator[Database]:
    db = create_database(stack, "reader")
    yield db
    drop_database(stack, db)


@pytest.fixture(scope="module")
def reader(stack: StackInfo, migrated: Database) -> Iterator[Reader]:
    """Made on a database migrated before the script ran (the order of a deployment that existed already)."""
    with reader_of(stack, migrated) as made:
        yield made


def _fails(reader: Reader, query: Query) -> str | None:
    """None, or why the reader could not run the query."""
    with psycopg.connect(reader.url) as conn:
        try:
            conn.execute(query.sql.encode())
        except psycopg.Error as exc:
            return f"{query.name}: {exc.sqlstate} {exc}"
    return None


def _readable(db: Database, role: str) -> list[str]:
    with psycopg.connect(db.admin_url) as conn:
        return [r[0] for r in conn.execute(READABLE, {"role": role})]


def _default_privileges_of(db: Database, *roles: str) -> int:
    with psycopg.connect(db.admin_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) a"
            " WHERE a.grantee IN (SELECT oid FROM pg_roles WHERE rolname = ANY (%s))",
            (list(roles),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_made_before_the_migrations_it_runs_every_dashboard_query(stack: StackInfo) -> None:
    """Production's order: the container runs the script on an empty database, the migrate service runs after."""
    with empty_database(stack, "reader_first") as db, reader_of(stack, db) as reader:
        migrate(db.url)
        failed = [why for query in queries(VARIABLES) if (why := _fails(reader, query))]
        assert failed == []
        with psycopg.connect(db.admin_url) as conn:
            grafana = [r[0] for r in conn.execute(GRAFANA_RELATIONS)]
        assert _readable(db, reader.name) == grafana


def test_made_after_the_migrations_it_runs_every_dashboard_query(reader: Reader) -> None:
    failed = [why for query in queries(VARIABLES) if (why := _fails(reader, query))]
    assert failed == []


@pytest.mark.parametrize("statement", REFUSED)
def test_personal_data_and_secrets_are_refused(reader: Reader, statement: str) -> None:
    with psycopg.connect(reader.url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


# Heart and breathing rates, in clear or sealed, and their roll-ups' statistics (migration 0028): health data.
RATES = r"^(heart_rate|resp_rate|vitals_enc|(hr|rr)_(min|max|sum|avg))$"


def test_no_view_of_it_holds_a_rate(migrated: Database, reader: Reader) -> None:
    """Grafana cannot open sealed rates nor audit a read: its views have none (the dashboards show presence and
    occupancy; the resident's page shows the rates, audited)."""
    with psycopg.connect(migrated.admin_url) as conn:
        columns = conn.execute(
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = 'grafana'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped"
        ).fetchall()
    assert {"bed_readings", "bed_hourly"} <= {relation for relation, _ in columns}
    assert [(r, c) for r, c in columns if re.match(RATES, c)] == []
    with psycopg.connect(reader.url) as conn, pytest.raises(errors.UndefinedColumn):
        conn.execute("SELECT heart_rate FROM grafana.bed_readings")


def test_it_reads_schema_grafana_and_nothing_else(migrated: Database, reader: Reader) -> None:
    with psycopg.connect(migrated.admin_url) as conn:
        grafana = [r[0] for r in conn.execute(GRAFANA_RELATIONS)]
        definers = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.prosecdef"
            " AND has_function_privilege(%s, p.oid, 'EXECUTE') AND NOT EXISTS (SELECT 1 FROM pg_depend e"
            " WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')",
            (reader.name,),
        ).fetchall()
    assert "grafana.gateways" in grafana and "grafana.residents" not in grafana
    assert _readable(migrated, reader.name) == grafana  # chunks, public's tables and views: none
    assert [r[0] for r in definers] == ["grafana.supervision_figures(bigint[],date,date)"]
    assert _default_privileges_of(migrated, reader.name, GROUP) == 0


def test_a_table_made_later_is_not_readable_and_nothing_is_writable(migrated: Database, reader: Reader) -> None:
    with psycopg.connect(migrated.url, autocommit=True) as owner:
        owner.execute("CREATE TABLE made_later (x int)")  # by the application role, after the script
    with psycopg.connect(reader.url, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM made_later")
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        # a setting the session may change: the grants are what hold
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO grafana.regions (code, name, level) VALUES ('99', 'x', 1)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE alarms SET state = 'resolved'")


def test_running_it_again_takes_back_what_the_earlier_script_granted(stack: StackInfo, migrated: Database) -> None:
    """The earlier script granted SELECT on every table and on every table made later; run again, this one takes
    both back (the upgrade of a deployment whose database the earlier one initialised)."""
    with reader_of(stack, migrated) as reader, psycopg.connect(migrated.admin_url, autocommit=True) as admin:
        admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{reader.name}"')
        admin.execute(
            f'ALTER DEFAULT PRIVILEGES FOR ROLE eldercare IN SCHEMA public GRANT SELECT ON TABLES TO "{reader.name}"'
        )
        assert "public.users" in _readable(migrated, reader.name)
        run_script(migrated, reader=reader.name, password="another-password-1")
        assert all(name.startswith("grafana.") for name in _readable(migrated, reader.name))
        assert _default_privileges_of(migrated, reader.name) == 0


def test_the_views_hold_only_columns_the_panels_read(migrated: Database) -> None:
    """PostgreSQL records which columns a view reads: each panel's query made a temporary view shows what it reads.
    Every relation a panel reads is in schema grafana, and every column there is read by some panel."""
    read: set[tuple[str, str]] = set()
    functions: set[str] = set()
    with psycopg.connect(migrated.url) as conn:
        for query in queries(VARIABLES):
            with conn.transaction(force_rollback=True):
                conn.execute(f"CREATE TEMP VIEW panel AS {query.sql}".encode())
                deps = conn.execute(
                    "SELECT d.refclassid = 'pg_class'::regclass, d.refobjid::regclass::text, a.attname,"
                    " d.refobjid::regprocedure::text"
                    " FROM pg_depend d JOIN pg_rewrite w ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid"
                    " LEFT JOIN pg_attribute a ON d.refclassid = 'pg_class'::regclass AND a.attrelid = d.refobjid"
                    "  AND a.attnum = d.refobjsubid"
                    " WHERE w.ev_class = 'panel'::regclass"
                    "  AND d.refclassid IN ('pg_class'::regclass, 'pg_proc'::regclass)"
                    "  AND d.refobjid <> 'panel'::regclass",
                ).fetchall()
            for is_relation, relation, column, function in deps:
                if is_relation:
                    assert relation.startswith("grafana."), f"{query.name} reads {relation}: make a view in grafana"
                    if column is not None:
                        read.add((relation, column))
                elif function.startswith("grafana."):
                    functions.add(function)
        exposed = set(conn.execute(
            "SELECT 'grafana.' || c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = 'grafana'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped"
        ).fetchall())  # fmt: skip
        outputs = conn.execute(
            "SELECT p.oid::regprocedure::text, a.name FROM pg_proc p,"
            " unnest(p.proargnames, p.proargmodes) a (name, mode)"
            " WHERE p.pronamespace = 'grafana'::regnamespace AND a.mode = 't'"
        ).fetchall()
    assert exposed - read == set(), "columns of schema grafana no panel reads"
    assert {function for function, _ in outputs} == functions
    words = set(re.findall(r"\w+", " ".join(q.sql for q in queries(VARIABLES))))
    assert {name for _, name in outputs} - words == set(), "columns of grafana's functions no panel reads"
