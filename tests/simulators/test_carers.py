"""The demo's carers on duty (simulators/run/carers.py): who is on shift as the platform reads the roster, what
a carer does about each alarm, when the night's rounds fall, that the demo's homes fall on both sides of the
regulator's targets, and, against a real platform, that the carer on shift answers alarms and walks rounds
through the API."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import httpx
import msgspec
import psycopg
import pytest
from tests.registry.support import (
    Database,
    Server,
    create_database,
    data_key,
    drop_database,
)
from tests.simulators.support import built_world, offline_world, small_plan

from eldercare.platform.alarms import text as alarm_text
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo
from eldercare.platform.supervision.attention import RULES
from eldercare.simulators.run import carers as carers_mod
from eldercare.simulators.run.carers import (
    DILIGENCE,
    LOCAL,
    Carers,
    Diligence,
    on_duty,
    outcome,
    round_times,
    steps,
)
from eldercare.simulators.world.model import InstitutionPlan, ShiftPlan, World
from eldercare.simulators.world.plan import PlanOptions

MONDAY = date(2026, 11, 23)


def _at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), LOCAL)


def _shift_of(home: InstitutionPlan, username: str) -> ShiftPlan:
    (shift,) = next(s for s in home.staff if s.username == username).shifts
    return shift


def test_the_carer_on_duty_is_the_one_the_roster_has_on_shift_else_the_head() -> None:
    home = small_plan().institutions[0]
    for hour, name in ((10, "白班"), (18, "中班"), (23, "夜班"), (2, "夜班")):
        for day in range(7):
            carer = on_duty(home, _at(MONDAY + timedelta(days=day), hour))
            if carer.role == "head":  # only when no carer of that shift works that weekday
                weekday = (MONDAY + timedelta(days=day)).isoweekday()
                assert all(weekday not in sh.weekdays for s in home.staff for sh in s.shifts if sh.name == name), (
                    hour,
                    day,
                )
            else:
                assert _shift_of(home, carer.username).name == name, (hour, day)
    # the weekday is the local moment's (as the platform's on_shift reads it), also after midnight
    night = next(s for s in home.staff if s.shifts and s.shifts[0].name == "夜班")
    off = {"weekdays": [d for d in range(1, 8) if d != MONDAY.isoweekday()]}
    alone = msgspec.structs.replace(
        home,
        staff=[home.staff[0], msgspec.structs.replace(night, shifts=[msgspec.structs.replace(night.shifts[0], **off)])],
    )
    assert on_duty(alone, _at(MONDAY, 2)).role == "head"  # Monday 02:00: the night carer is off on Mondays
    assert on_duty(alone, _at(MONDAY, 23, 30)).role == "head"
    assert on_duty(alone, _at(MONDAY + timedelta(days=1), 2)).username == night.username


def test_a_carer_answers_an_alarm_about_a_person_and_leaves_a_fault_to_its_device() -> None:
    rng, d = random.Random(1), Diligence(ack_s=10, walk_s=20, care_s=30, rounds_kept=1)
    person = steps({"state": "raised", "priority": "emergency"}, d, rng, 1000.0)
    assert [s.action for s in person] == ["acknowledge", "attend", "resolve"]
    assert 1000 < person[0].at < person[1].at < person[2].at
    assert [s.action for s in steps({"state": "attending", "priority": "urgent"}, d, rng, 0)] == ["resolve"]
    assert [s.action for s in steps({"state": "raised", "priority": "technical"}, d, rng, 0)] == ["acknowledge"]
    assert steps({"state": "acknowledged", "priority": "technical"}, d, rng, 0) == []


def test_at_the_bedside_a_fall_alarm_with_no_fall_in_the_truth_is_closed_as_a_false_alarm() -> None:
    at = datetime(2026, 11, 23, 10, 0, tzinfo=LOCAL)
    carers = Carers("http://unused", offline_world(small_plan()), say=print, seed=1, stop=threading.Event())
    for line in (
        {"kind": "fall", "t": int((at - timedelta(seconds=20)).timestamp() * 1000), "person": "P1", "device": "W1"},
        {"kind": "fall", "t": int(at.timestamp() * 1000), "device": "R2"},  # a radar's, nobody registered
        {"kind": "activity", "t": int(at.timestamp() * 1000), "person": "P3", "device": "W3"},  # sat down hard
        {"kind": "press", "t": int(at.timestamp() * 1000), "person": "P3"},
    ):
        carers.on_truth(line)

    def closed(kind: str, person: str | None, device: str | None, when: datetime = at) -> str:
        alarm = {"kind": kind, "person_code": person, "device_code": device, "occurred_at": when.isoformat()}
        return outcome(alarm, carers.falls)[0]

    assert closed("fall", "P1", "R9") == "real_event"  # the radar saw the person's fall
    assert closed("fall", None, "R2") == "real_event"
    assert closed("fall", "P3", "W3") == "false_alarm"
    assert closed("fall", "P1", "W1", at + timedelta(minutes=15)) == "false_alarm"  # a later alarm: another matter
    assert closed("fall", "P1", "W1", at - timedelta(minutes=5)) == "false_alarm"  # before the fall happened
    assert closed("button", "P3", "B3") == "real_event"
    assert closed("bed_exit", "P4", "S4") == "real_event"


def test_the_nights_rounds_fall_in_the_night_the_platform_counts() -> None:
    for seed in range(50):
        times = round_times(MONDAY, random.Random(seed))
        assert len(times) == 3 and times == sorted(times)
        for t in times:
            local = t.astimezone(LOCAL)
            assert local.time() >= time(21) or local.time() < time(6)  # migration 0008's night window
            assert (local - timedelta(hours=6)).date() == MONDAY  # and its night date


def _threshold(code: str) -> float:
    return next(r.threshold for r in RULES if r.code == code)


def test_the_demos_homes_fall_on_both_sides_of_the_regulators_targets() -> None:
    """The first home answers within the 60 s target and walks its rounds; the last does neither, so the
    regulator's figures and attention list have something to tell apart."""
    rng = random.Random(7)

    def p90_ack(d: Diligence) -> float:
        return sorted(carers_mod.draw(rng, d.ack_s) for _ in range(4000))[3600]

    def coverage(d: Diligence) -> float:  # a floor-night is covered when any of its three rounds is walked
        return 1 - (1 - d.rounds_kept) ** 3

    first, last = DILIGENCE[0], DILIGENCE[-1]
    assert p90_ack(first) < _threshold("slow_acknowledgement") < p90_ack(last)
    assert coverage(last) < _threshold("night_rounds_missing") <= coverage(first)


OPTIONS = PlanOptions(
    region="4205", institutions=1, households=0, seed=11, as_of=date(2026, 11, 1), beds_min=6, beds_max=8
)


@pytest.fixture(scope="module")
def platform(stack: StackInfo) -> Iterator[tuple[World, Server, Database]]:
    db = create_database(stack, "ec_carers")
    try:
        with built_world(stack, db, OPTIONS) as (world, server):
            yield world, server, db
    finally:
        drop_database(stack, db)


def _raise(db: Database, world: World, kind: str, priority: str, device_kind: str) -> int:
    home = world.plan.institutions[0]
    issued = world.issued.institutions[home.key]
    device = next(d for d in home.devices if d.kind == device_kind)
    with psycopg.connect(db.url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, occurred_at, last_event_at)"
            " VALUES (%s, %s, %s, %s, now(), now()) RETURNING id",
            (issued.id, kind, priority, issued.devices[device.code]),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _alarm(db: Database, alarm_id: int) -> tuple[str, list[tuple[str, str]]]:
    with psycopg.connect(db.url) as conn:
        state = conn.execute("SELECT state::text FROM alarms WHERE id = %s", (alarm_id,)).fetchone()
        changes = conn.execute(
            "SELECT actor, to_state::text FROM alarm_changes WHERE alarm_id = %s ORDER BY id", (alarm_id,)
        ).fetchall()
    assert state is not None
    return state[0], [(a, s) for a, s in changes]


def test_the_carer_on_shift_answers_alarms_and_walks_rounds_through_the_api(
    platform: tuple[World, Server, Database], stack: StackInfo
) -> None:
    world, server, db = platform
    clock = [_at(MONDAY, 1)]  # a Monday night, before its 01:30 round
    said: list[str] = []
    carers = Carers(
        server.base,
        world,
        say=said.append,
        seed=3,
        stop=threading.Event(),
        diligence=(Diligence(ack_s=10, walk_s=10, care_s=10, rounds_kept=1),),
        clock=lambda: clock[0],
    )
    (home,) = carers.homes
    carer = on_duty(home.plan, clock[0])
    assert carer.role == "staff" and carer.shifts[0].name == "夜班"
    fall = _raise(db, world, "fall", "emergency", "fall_radar")
    radar = next(d.code for d in world.plan.institutions[0].devices if d.kind == "fall_radar")
    carers.on_truth({"kind": "fall", "t": int(datetime.now(LOCAL).timestamp() * 1000) - 5000, "device": radar})
    battery = _raise(db, world, "device_battery_low", "technical", "button")
    press = _raise(db, world, "button", "emergency", "button")
    other = _raise(db, world, "bed_exit", "urgent", "bed_sensor")
    with httpx.Client(base_url=server.base + "/api/v1", timeout=10) as http:
        carers.tick(http, home)  # seen: nothing is due yet
        assert set(home.planned) == {fall, battery, press, other} and not said
        with psycopg.connect(db.url, autocommit=True) as conn:  # the press is cancelled at the bedside meanwhile
            conn.execute("UPDATE alarms SET state = 'cancelled', closed_at = now() WHERE id = %s", (press,))
        head = _login(http, world, home.plan.staff[0].username)  # and the head acknowledges the bed exit
        assert http.post(f"/alarms/{other}/acknowledge", json={}, headers=head).status_code == 200
        clock[0] += timedelta(minutes=50)  # past every step and the 01:30 round (01:15-01:45)
        carers.tick(http, home)
        carers.tick(http, home)  # the bed exit is planned afresh from the state the head left it in
        clock[0] += timedelta(minutes=2)
        carers.tick(http, home)

    assert _alarm(db, fall) == (
        "resolved",
        [(carer.username, "acknowledged"), (carer.username, "attending"), (carer.username, "resolved")],
    )
    assert _alarm(db, battery) == ("acknowledged", [(carer.username, "acknowledged")])
    assert _alarm(db, press)[0] == "cancelled" and press not in home.planned
    head_name = home.plan.staff[0].username
    assert _alarm(db, other) == (
        "resolved",
        [(head_name, "acknowledged"), (carer.username, "attending"), (carer.username, "resolved")],
    )
    with psycopg.connect(db.url) as conn:
        rounds = conn.execute(
            "SELECT n.floor_id, u.username FROM night_rounds n JOIN users u ON u.id = n.user_id ORDER BY 1"
        ).fetchall()
        floors = conn.execute(
            "SELECT f.id FROM floors f JOIN buildings b ON b.id = f.building_id WHERE b.institution_id = %s ORDER BY 1",
            (home.id,),
        ).fetchall()
    assert rounds == [(f, carer.username) for (f,) in floors] and floors
    assert any(f"night round of {home.plan.name}" in line for line in said)
    assert any(f"alarm {fall} fall: resolved by {carer.username}" in line for line in said), said
    with psycopg.connect(db.url) as conn:
        sealed = conn.execute("SELECT id, outcome_enc FROM alarms WHERE id IN (%s, %s)", (fall, other)).fetchall()
    vault = Vault(data_key(stack))  # outcomes are health text, encrypted at rest
    outcomes = [(i, vault.decrypt(bytes(blob), column=alarm_text.OUTCOME)) for i, blob in sealed]
    assert sorted(outcomes) == sorted([(fall, "real_event"), (other, "real_event")])


def _login(http: httpx.Client, world: World, username: str) -> dict[str, str]:
    password = world.issued.institutions[world.plan.institutions[0].key].users[username][1]
    reply = http.post("/auth/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}
