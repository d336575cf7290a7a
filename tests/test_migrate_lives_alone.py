"""``eldercare db migrate`` over residents of residential homes flagged as living alone (possible before 0032): the
migration does not fail on them; it clears their flag, so that they leave the due lists and the regulators' coverage,
and keeps each cleared flag (resident, home, since when) in ``lives_alone_cleared`` for the homes to check. Residents
of other kinds of institution keep theirs; and from then on the database refuses the flag in a residential home."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg
from tests.platform_procs import migrate_command
from tests.registry.support import Database, data_key, drop_database, old_database

from eldercare.devices import codes
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo

SINCE = date(2026, 3, 4)


def _resident(conn: psycopg.Connection[Any], vault: Vault, rng: random.Random, home: int, *, alone: bool) -> int:
    number = codes.generate_id_number(rng, region6="420502", birth_date=date(1941, 2, 3), sex="female")
    row = conn.execute(
        "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
        " id_number_masked, birth_date, sex, lives_alone, lives_alone_since)"
        " VALUES (%s, %s, %s, %s, %s, %s, '1941-02-03', 'female', %s, %s) RETURNING id",
        (
            home,
            codes.new_person_code(rng),
            vault.encrypt("王秀英", column="residents.name"),
            vault.encrypt(number, column="residents.id_number"),
            vault.lookup_hash(number),
            number[:6] + "********" + number[-4:],
            alone,
            SINCE if alone else None,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def old_db(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Database, dict[str, int]]]:
    """A database of the version before 0032: in the residential home one resident flagged and one not; in a
    home-care provider one flagged. The database and the ids (residents, and the two institutions)."""
    db, home = old_database(stack, monkeypatch, below=32, prefix="ec_alone")
    vault, rng = Vault(data_key(stack)), random.Random(20260304)
    with psycopg.connect(db.url, autocommit=True) as conn:
        provider = conn.execute(
            "INSERT INTO institutions (code, name, kind, region_code) VALUES (%s, '居家服务中心',"
            " 'home_care_provider', '420502') RETURNING id",
            (codes.generate_uscc(rng, region6="420502"),),
        ).fetchone()
        assert provider is not None
        ids = {
            "home": home,
            "provider": int(provider[0]),
            "in_home_alone": _resident(conn, vault, rng, home, alone=True),
            "in_home": _resident(conn, vault, rng, home, alone=False),
            "at_home_alone": _resident(conn, vault, rng, int(provider[0]), alone=True),
        }
        conn.execute(
            "INSERT INTO users (username, password_hash, role, institution_id) VALUES ('nurse-old', 'x', 'staff', %s)",
            (home,),
        )
        conn.execute(
            "INSERT INTO resident_visits (resident_id, visited_at, visited_by, mode, outcome)"
            " SELECT %s, now(), id, 'phone', 'well' FROM users WHERE username = 'nurse-old'",
            (ids["in_home_alone"],),
        )
    yield db, ids
    drop_database(stack, db)


def test_migrate_clears_the_flag_in_residential_homes_and_keeps_what_it_cleared(
    stack: StackInfo, old_db: tuple[Database, dict[str, int]]
) -> None:
    db, ids = old_db
    done = migrate_command(db.url, data_key(stack))
    assert done.returncode == 0, done.stderr
    assert "applied 0032_lives_alone_at_home" in done.stdout, done.stdout
    with psycopg.connect(db.url, autocommit=True) as conn:
        rows = conn.execute("SELECT id, lives_alone, lives_alone_since FROM residents").fetchall()
        flags = {resident: (alone, since) for resident, alone, since in rows}
        assert flags == {
            ids["in_home_alone"]: (False, None),
            ids["in_home"]: (False, None),
            ids["at_home_alone"]: (True, SINCE),
        }
        cleared = conn.execute("SELECT resident_id, institution_id, lives_alone_since FROM lives_alone_cleared")
        assert cleared.fetchall() == [(ids["in_home_alone"], ids["home"], SINCE)]
        visits = conn.execute("SELECT count(*) FROM resident_visits WHERE resident_id = %s", (ids["in_home_alone"],))
        assert visits.fetchone() == (1,)  # what was done stays
        with pytest.raises(pg.CheckViolation) as refused:
            conn.execute("UPDATE residents SET lives_alone = true WHERE id = %s", (ids["in_home"],))
        assert refused.value.diag.constraint_name == "residents_lives_alone_at_home"
        conn.execute("UPDATE residents SET lives_alone = false WHERE id = %s", (ids["at_home_alone"],))
        conn.execute("UPDATE residents SET lives_alone = true WHERE id = %s", (ids["at_home_alone"],))
    again = migrate_command(db.url, data_key(stack))
    assert again.returncode == 0 and again.stdout.strip() == "up to date", again
