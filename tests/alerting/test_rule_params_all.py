"""``rule_params_all(rule)`` (migration 0030), joined as the ticker joins it, gives what ``rule_params(rule,
institution, resident)`` gives, for every rule, institution and resident (with or without a row of their own, and
with a row under another institution): the same merge order (default, then institution, then resident, the later
key winning) and the same NULL where the most specific row disables the rule, whichever level enabled or disabled
it before. Each world is written in a transaction rolled back at its end: the platform's default rows, which the
worlds change, are as they were afterwards, and no resident is left behind."""

from __future__ import annotations

import itertools
import json
import os
import random
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from eldercare.devices import codes

# The rules that can be switched off (a call, a fall and danger in the room cannot: migration 0020).
RULES = ("device_fault", "bed_exit_night", "vitals", "wander", "no_presence", "gateway_offline", "escalation")
STATES = ("absent", "enabled", "disabled")
Level = tuple[int | None, int | None]  # (institution, resident) by index in the world; (None, None) the default


@dataclass(frozen=True, slots=True)
class World:
    institutions: int
    residents: list[int]  # each resident's institution, by index
    rows: dict[tuple[str, int | None, int | None], tuple[bool, Any]]  # (rule, institution, resident) -> row


# Every pair the ticker can ask about, with the old and the new parameters. ``found`` counts the institution rows the
# join met (exactly one, or the ticker would drop or double the bed); the resident row is the one of that
# institution, if any.
_BOTH = """
WITH pairs AS (
    SELECT r.rule, i.id AS institution_id, p.resident_id
    FROM unnest(%(rules)s::text[]) r (rule), unnest(%(institutions)s::bigint[]) i (id),
         (SELECT NULL::bigint AS resident_id UNION ALL SELECT unnest(%(residents)s::bigint[])) p
), every AS MATERIALIZED (
    SELECT r.rule, f.* FROM unnest(%(rules)s::text[]) r (rule), rule_params_all(r.rule) f
)
SELECT p.rule, p.institution_id, p.resident_id, rule_params(p.rule, p.institution_id, p.resident_id),
       CASE WHEN own.resident_id IS NULL THEN home.params ELSE own.params END, count(home.institution_id)
           OVER (PARTITION BY p.rule, p.institution_id, p.resident_id)
FROM pairs p
LEFT JOIN every home ON home.rule = p.rule AND home.institution_id = p.institution_id AND home.resident_id IS NULL
LEFT JOIN every own ON own.rule = p.rule AND own.institution_id = p.institution_id AND own.resident_id = p.resident_id
"""


def _write(conn: psycopg.Connection[Any], world: World, rng: random.Random) -> tuple[list[int], list[int]]:
    """The world's institutions, residents and rule rows (the defaults of its rules replaced); their ids."""
    institutions = [
        conn.execute(
            "INSERT INTO institutions (code, name, kind, region_code) VALUES (%s, %s, 'residential_home', '420502')"
            " RETURNING id",
            (codes.generate_uscc(rng, region6="420502"), f"规则测试院{n}"),
        ).fetchone()[0]  # type: ignore[index]
        for n in range(world.institutions)
    ]
    residents = [
        conn.execute(
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex) VALUES (%s, %s, %s, %s, %s, '420502********1234', %s, 'female')"
            " RETURNING id",
            (
                institutions[home],
                codes.new_person_code(rng),
                os.urandom(40),
                os.urandom(40),
                os.urandom(32),
                date(1940, 1, 1),
            ),
        ).fetchone()[0]  # type: ignore[index]
        for home in world.residents
    ]
    conn.execute("DELETE FROM alarm_rules WHERE institution_id IS NULL AND rule = ANY(%s)", (list(RULES),))
    with conn.cursor().copy("COPY alarm_rules (institution_id, resident_id, rule, enabled, params) FROM STDIN") as copy:
        for (rule, home, resident), (enabled, params) in world.rows.items():
            copy.write_row((
                None if home is None else institutions[home],
                None if resident is None else residents[resident],
                rule,
                enabled,
                json.dumps(params),
            ))  # fmt: skip
    return institutions, residents


def _compare(db: str, world: World, rng: random.Random) -> list[str]:
    """Every (rule, institution, resident) pair of the world where the two differ, or where the join does not meet
    exactly one institution row, described."""
    with psycopg.connect(db) as conn, conn.transaction(force_rollback=True):
        institutions, residents = _write(conn, world, rng)
        rows = conn.execute(
            _BOTH, {"rules": list(RULES), "institutions": institutions, "residents": residents}
        ).fetchall()
    assert len(rows) == len(RULES) * len(institutions) * (len(residents) + 1)  # no pair met two rows of a level
    return [
        f"{rule} institution {home} resident {resident}: rule_params {old!r}, rule_params_all {new!r} ({found} rows)"
        for rule, home, resident, old, new, found in rows
        if old != new or found != 1
    ]


def _states(world: World) -> set[tuple[str, str, str]]:
    """The (default, institution, resident) row states the world's pairs go through."""

    def state(key: tuple[str, int | None, int | None]) -> str:
        row = world.rows.get(key)
        return "absent" if row is None else "enabled" if row[0] else "disabled"

    return {
        (state((rule, None, None)), state((rule, home, None)), state((rule, home, resident)))
        for rule in RULES
        for home in range(world.institutions)
        for resident in range(len(world.residents))
    }


def _every_order() -> World:
    """Each rule's default absent, enabled or disabled (by rule); three homes, each rule's home row absent, enabling or
    disabling (by home and rule); three residents a home, absent, enabling or disabling; one resident with a row under
    another home than theirs. Each level sets a key of its own and overrides the same shared ones, so that the merge
    order shows."""
    rows: dict[tuple[str, int | None, int | None], tuple[bool, Any]] = {}
    residents = [home for home in range(3) for _ in range(3)]

    def put(rule: str, home: int | None, resident: int | None, state: str, params: dict[str, Any]) -> None:
        if state != "absent":
            rows[(rule, home, resident)] = (state == "enabled", params)

    for r, rule in enumerate(RULES):
        put(rule, None, None, STATES[r % 3], {"shared": "default", "both": "default", "default": r})
        for home in range(3):
            put(rule, home, None, STATES[(r + home) % 3], {"shared": "home", "both": f"home {home}", "home": home})
            for n, resident in enumerate(i for i, h in enumerate(residents) if h == home):
                put(rule, home, resident, STATES[n], {"shared": "resident", "resident": resident})
        put(rule, 1, 0, "enabled", {"shared": "moved", "moved": True})  # resident 0 lives in home 0
    return World(3, residents, rows)


def test_rule_params_all_gives_rule_params_for_every_order_of_enabling_and_disabling(db: str) -> None:
    world = _every_order()
    assert _states(world) == set(itertools.product(STATES, repeat=3))  # all 27 orders are met
    assert _compare(db, world, random.Random(1)) == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "x", "09:00"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
    max_leaves=4,
)
# Mostly objects over a few keys that collide between levels; now and then an array or a scalar, which ``||``
# concatenates into an array: both functions must do that alike too.
_PARAMS = st.dictionaries(st.sampled_from(["a", "b", "delay_s", "tiers"]), _JSON, max_size=3) | _JSON
_ROW = st.none() | st.tuples(st.booleans(), _PARAMS)


@st.composite
def _worlds(draw: st.DrawFn) -> World:
    homes = draw(st.integers(1, 3))
    residents = draw(st.lists(st.integers(0, homes - 1), max_size=4))
    rows: dict[tuple[str, int | None, int | None], tuple[bool, Any]] = {}
    for rule in draw(st.lists(st.sampled_from(RULES), min_size=1, max_size=3, unique=True)):
        levels: list[Level] = [(None, None), *((h, None) for h in range(homes))]
        levels += [(h, r) for r, own in enumerate(residents) for h in {own, draw(st.integers(0, homes - 1))}]
        for home, resident in levels:
            row = draw(_ROW)
            if row is not None:
                rows[(rule, home, resident)] = row
    return World(homes, residents, rows)


@settings(max_examples=60, deadline=None)
@given(world=_worlds(), seed=st.integers(0, 2**32))
def test_rule_params_all_gives_rule_params_for_any_rows(db: str, world: World, seed: int) -> None:
    assert _compare(db, world, random.Random(seed)) == []
