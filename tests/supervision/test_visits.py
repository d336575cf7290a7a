"""Visits to elders living alone (独居老人巡访): recording, reading per role, the due list and the regulators'
coverage, on a world of this module's own database (dropped with it) that can be counted by hand.

Homes H and O (420502) hold the coverage figures of August-October 2026, worked out below; home D (420503) the due
list, relative to today."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from tests.registry.support import Client, Database, data_key, login, new_id_number
from tests.supervision.world import PASSWORD, Seeder

from eldercare.devices import codes
from eldercare.platform.auth.service import hash_password
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo

TZ = ZoneInfo("Asia/Shanghai")
START, END = date(2026, 8, 1), date(2026, 10, 31)
REGISTERED = datetime(2024, 1, 1, tzinfo=TZ)


@dataclass
class VisitWorld:
    homes: dict[str, int]
    residents: dict[str, int]
    users: dict[str, str] = field(default_factory=dict)  # key -> username
    sessions: dict[str, Client] = field(default_factory=dict)

    def as_(self, base: str, key: str) -> Client:
        if key not in self.sessions:
            self.sessions[key] = login(base, self.users[key], PASSWORD)
        return self.sessions[key]


def _local(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ)


def _today() -> date:
    return datetime.now(UTC).astimezone(TZ).date()


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


class VisitSeeder(Seeder):
    def home_of(self, region: str, name: str, kind: str) -> int:
        home = self.home(region, name)
        self.conn.execute("UPDATE institutions SET kind = %s WHERE id = %s", (kind, home.id))
        return home.id

    def alone(
        self,
        home: int,
        *,
        born: date,
        since: date | None,
        capability: str = "self_care",
        status: str = "registered",
    ) -> int:
        id_number = codes.generate_id_number(self.rng, region6="420502", birth_date=born, sex="female")
        return self.one(
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex, status, capability, lives_alone, lives_alone_since, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'female', %s, %s, %s, %s, %s) RETURNING id",
            (
                home,
                codes.new_person_code(self.rng),
                self.vault.encrypt("李桂芳", column="residents.name"),
                self.vault.encrypt(id_number, column="residents.id_number"),
                self.vault.lookup_hash(id_number),
                id_number[:6] + "********" + id_number[-4:],
                born,
                status,
                capability,
                since is not None,
                since,
                REGISTERED,
            ),
        )

    def visit(self, resident: int, day: date, user: int, outcome: str = "well") -> None:
        self.conn.execute(
            "INSERT INTO resident_visits (resident_id, visited_at, visited_by, mode, outcome)"
            " VALUES (%s, %s, %s, 'in_person', %s)",
            (resident, _local(day), user, outcome),
        )


OLD, YOUNG, SINCE = date(1940, 5, 1), date(1960, 5, 1), date(2026, 1, 1)


def _build(url: str, vault: Vault) -> VisitWorld:
    today = _today()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        s = VisitSeeder(conn, vault, random.Random(20261124))
        h = s.home_of("420502", "西陵居家服务中心", "home_care_provider")
        o = s.home_of("420502", "西陵社区中心", "community_centre")
        d = s.home_of("420503", "伍家岗居家服务中心", "home_care_provider")
        w = s.home_of("420102", "江岸居家服务中心", "home_care_provider")
        world = VisitWorld(homes={"H": h, "O": o, "D": d, "W": w}, residents={})
        suffix = secrets.token_hex(3)
        ids: dict[str, int] = {}
        for key, role, home, region in (
            ("staff_h", "staff", h, None),
            ("staff_d", "staff", d, None),
            ("head_h", "head", h, None),
            ("family_h", "family", None, None),
            ("reg_4205", "regulator", None, "4205"),
            ("reg_4201", "regulator", None, "4201"),
        ):
            username = f"{key.replace('_', '-')}-{suffix}"
            ids[key] = s.one(
                "INSERT INTO users (username, password_hash, role, institution_id, region_code, display_name)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (username, hash_password(PASSWORD), role, home, region, "张护士" if key == "staff_h" else ""),
            )
            world.users[key] = username
        nurse = ids["staff_h"]
        r = world.residents
        # H, key subjects (monthly) over August-October 2026:
        r["k_all"] = s.alone(h, born=OLD, since=SINCE)  # visited each month: covered
        r["k_gap"] = s.alone(h, born=YOUNG, since=SINCE, capability="partly_disabled")  # no September visit
        r["k_late"] = s.alone(h, born=OLD, since=date(2026, 9, 15))  # on the list from 15 September: owes Sep, Oct
        r["k_away"] = s.alone(h, born=OLD, since=SINCE)  # nobody home in October: not covered
        r["k_80"] = s.alone(h, born=date(1946, 10, 31), since=SINCE)  # 80 on the period's last day: key
        # H, general subjects (yearly):
        r["g_once"] = s.alone(h, born=YOUNG, since=date(2025, 1, 1))  # visited in March 2026: covered
        r["g_last_year"] = s.alone(h, born=YOUNG, since=date(2025, 1, 1))  # visited in December 2025 only
        r["g_after"] = s.alone(h, born=YOUNG, since=date(2025, 1, 1))  # visited only after the period
        r["g_79"] = s.alone(h, born=date(1946, 11, 1), since=SINCE)  # 79 on the period's last day: general, unvisited
        # H, not on the list: dead, not alone, put on the list after the period
        r["dead"] = s.alone(h, born=OLD, since=SINCE, status="deceased")
        r["with_family"] = s.alone(h, born=OLD, since=None)
        r["k_new"] = s.alone(h, born=OLD, since=date(2026, 11, 3))
        for month in (8, 9, 10):
            s.visit(r["k_all"], date(2026, month, 28), nurse)
            s.visit(r["k_away"], date(2026, month, 3), nurse, "not_found_home" if month == 10 else "well")
            s.visit(r["k_80"], date(2026, month, 1), nurse)
        s.visit(r["k_gap"], date(2026, 8, 1), nurse)
        s.visit(r["k_gap"], date(2026, 10, 31), nurse)
        s.visit(r["k_late"], date(2026, 9, 20), nurse)
        s.visit(r["k_late"], date(2026, 10, 2), nurse)
        s.visit(r["g_once"], date(2026, 3, 3), nurse)
        s.visit(r["g_last_year"], date(2025, 12, 30), nurse)
        s.visit(r["g_after"], date(2026, 11, 2), nurse)
        s.visit(r["dead"], date(2026, 8, 2), nurse)
        # O: one key subject, visited in each month
        r["o_key"] = s.alone(o, born=OLD, since=SINCE)
        for month in (8, 9, 10):
            s.visit(r["o_key"], date(2026, month, 15), nurse)
        # W, in Wuhan: outside the Yichang regulator's region
        r["w_key"] = s.alone(w, born=OLD, since=SINCE)
        # D: the due list, relative to today
        staff_d = ids["staff_d"]
        r["d_general_never"] = s.alone(d, born=YOUNG, since=date(today.year - 2, 3, 1))
        r["d_key_95"] = s.alone(d, born=OLD, since=today - timedelta(days=400))
        s.visit(r["d_key_95"], today - timedelta(days=95), staff_d)
        r["d_key_fresh"] = s.alone(d, born=OLD, since=today - timedelta(days=400))
        s.visit(r["d_key_fresh"], today, staff_d)
        r["d_not_home"] = s.alone(d, born=OLD, since=today - timedelta(days=400))
        s.visit(r["d_not_home"], today - timedelta(days=95), staff_d)
        s.visit(r["d_not_home"], today, staff_d, "not_found_home")
        r["d_80_today"] = s.alone(d, born=_years_before(today, 80), since=today - timedelta(days=400))
        r["d_80_tomorrow"] = s.alone(
            d, born=_years_before(today, 80) + timedelta(days=1), since=today - timedelta(days=400)
        )
        r["d_disabled"] = s.alone(d, born=YOUNG, since=today - timedelta(days=400), capability="disabled")
        conn.execute(
            "INSERT INTO family_links (user_id, resident_id, relation) VALUES (%s, %s, '女儿')",
            (ids["family_h"], r["k_all"]),
        )
    return world


@pytest.fixture(scope="module")
def vw(stack: StackInfo, sup_db: Database) -> Iterator[VisitWorld]:
    yield _build(sup_db.url, Vault(data_key(stack)))


def _errors(reply: Any) -> list[str]:
    assert reply.status_code == 422, reply.text
    return [e["field"] for e in reply.json()["errors"]]


def test_staff_record_a_visit_with_a_sealed_note(api: str, vw: VisitWorld, sup_db: Database, stack: StackInfo) -> None:
    nurse = vw.as_(api, "staff_h")
    resident = vw.residents["g_79"]
    when = datetime.now(UTC) - timedelta(hours=2)
    body = {"visited_at": when.isoformat(), "mode": "phone", "outcome": "needs_follow_up", "note": "膝盖疼，需复诊"}
    visit = nurse.ok("POST", f"/api/v1/residents/{resident}/visits", 201, json=body)
    assert visit["resident_id"] == resident and visit["mode"] == "phone" and visit["outcome"] == "needs_follow_up"
    assert visit["note"] == "膝盖疼，需复诊" and visit["visited_by"] == "张护士" and visit["counts"] is True
    with psycopg.connect(sup_db.url) as conn:
        row = conn.execute("SELECT note_enc, visited_by FROM resident_visits WHERE id = %s", (visit["id"],)).fetchone()
        logged = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'create' AND object_type = 'resident_visit'"
            " AND object_id = %s",
            (visit["id"],),
        ).fetchone()
    assert row is not None and logged is not None
    assert "膝盖".encode() not in bytes(row[0])
    assert Vault(data_key(stack)).decrypt(bytes(row[0]), column="resident_visits.note") == "膝盖疼，需复诊"
    assert logged[0]["note"] is True and "膝盖" not in str(logged[0])
    # without a note: nothing sealed
    quiet = nurse.ok("POST", f"/api/v1/residents/{resident}/visits", 201, json={**body, "note": ""})
    assert quiet["note"] == ""


def test_bad_visits_are_refused_naming_the_field(api: str, vw: VisitWorld) -> None:
    nurse = vw.as_(api, "staff_h")
    path = f"/api/v1/residents/{vw.residents['g_79']}/visits"
    ok = {"visited_at": datetime.now(UTC).isoformat(), "mode": "in_person", "outcome": "well"}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _errors(nurse.post(path, json={**ok, "visited_at": future})) == ["body.visited_at"]
    before = (REGISTERED - timedelta(days=1)).isoformat()
    assert _errors(nurse.post(path, json={**ok, "visited_at": before})) == ["body.visited_at"]
    assert _errors(nurse.post(path, json={**ok, "visited_at": "2026-11-01T10:00:00"})) == ["body.visited_at"]
    assert _errors(nurse.post(path, json={**ok, "mode": "letter"})) == ["body.mode"]
    assert _errors(nurse.post(path, json={**ok, "outcome": "fine"})) == ["body.outcome"]
    assert _errors(nurse.post(path, json={**ok, "note": "a\u202eb"})) == ["body.note"]
    assert "body.mode" in _errors(nurse.post(path, json={"visited_at": ok["visited_at"], "outcome": "well"}))
    # staff of another home, a regulator and a family may not record
    assert vw.as_(api, "staff_d").post(path, json=ok).status_code == 404
    assert vw.as_(api, "reg_4205").post(path, json=ok).status_code == 403
    assert vw.as_(api, "family_h").post(path, json=ok).status_code == 403


def _audits(url: str, resident: int) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT actor, detail FROM audit_log WHERE action = 'read_health' AND object_type = 'resident_visits'"
            " AND object_id = %s ORDER BY seq",
            (resident,),
        ).fetchall()
    return [{"actor": a, **d} for a, d in rows]


def test_each_role_sees_what_it_may_and_every_read_is_audited(api: str, vw: VisitWorld, sup_db: Database) -> None:
    resident = vw.residents["k_all"]
    path = f"/api/v1/residents/{resident}/visits"
    when = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    body = {"visited_at": when, "mode": "in_person", "outcome": "well", "note": "血压偏高，已提醒服药"}
    vw.as_(api, "staff_h").ok("POST", path, 201, json=body)
    before = len(_audits(sup_db.url, resident))

    staff = vw.as_(api, "head_h").ok("GET", path)
    assert [v["visited_at"][:10] for v in staff[1:]] == ["2026-10-28", "2026-09-28", "2026-08-28"]
    assert staff[0]["note"] == "血压偏高，已提醒服药" and staff[0]["visited_by"] == "张护士"

    regulator = vw.as_(api, "reg_4205").ok("GET", path)
    assert [v["id"] for v in regulator] == [v["id"] for v in staff]
    assert regulator[0]["note"] == "***" and regulator[1]["note"] == ""  # that there is a note, not what it says
    assert regulator[0]["mode"] == "in_person" and regulator[0]["outcome"] == "well"

    family = vw.as_(api, "family_h").ok("GET", path)
    assert [v["id"] for v in family] == [v["id"] for v in staff]
    assert all(v["visited_by"] is None and v["note"] is None for v in family)
    assert "血压" not in str(family) and "张护士" not in str(family)

    audits = _audits(sup_db.url, resident)[before:]
    assert [a["actor"] for a in audits] == [vw.users["head_h"], vw.users["reg_4205"], vw.users["family_h"]]
    assert [a["note_as"] for a in audits] == ["clear", "masked", "none"]
    assert all(a["ids"] == [v["id"] for v in staff] for a in audits)

    # outside the scope: not found, and nothing logged
    for outsider in ("staff_d", "reg_4201"):
        assert vw.as_(api, outsider).get(path).status_code == 404
    assert vw.as_(api, "family_h").get(f"/api/v1/residents/{vw.residents['k_gap']}/visits").status_code == 404
    assert len(_audits(sup_db.url, resident)) == before + 3


def _end_of_month(day: date) -> date:
    first_next = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first_next - timedelta(days=1)


def test_the_due_list_is_most_overdue_first_with_the_kind(api: str, vw: VisitWorld, sup_db: Database) -> None:
    today = _today()
    r = vw.residents
    staff = vw.as_(api, "staff_d")
    due = staff.ok("GET", "/api/v1/visits/due", params={"within_days": 366})
    by_id = {d["resident_id"]: d for d in due}
    # the general subject never visited owes the visit of the year they were put on the list: most overdue
    assert due[0]["resident_id"] == r["d_general_never"] and due[0]["kind"] == "general"
    assert due[0]["due"] == f"{today.year - 2}-12-31" and due[0]["last_visit"] is None
    assert due[0]["days_overdue"] == (today - date(today.year - 2, 12, 31)).days
    assert [d["due"] for d in due] == sorted(d["due"] for d in due)
    # a key subject last visited 95 days ago owed a visit by the end of the month after that visit's
    last = today - timedelta(days=95)
    expected = _end_of_month(_end_of_month(last) + timedelta(days=1))
    assert by_id[r["d_key_95"]]["due"] == expected.isoformat() and by_id[r["d_key_95"]]["kind"] == "key"
    assert by_id[r["d_key_95"]]["days_overdue"] == (today - expected).days > 0
    # nobody home does not count: still due from the visit before
    assert by_id[r["d_not_home"]]["last_visit"] == last.isoformat()
    assert by_id[r["d_not_home"]]["due"] == expected.isoformat()
    # the 80th birthday today makes a key subject; tomorrow's is still general; not self-caring is key at any age
    assert by_id[r["d_80_today"]]["kind"] == "key"
    assert by_id[r["d_80_tomorrow"]]["kind"] == "general"
    assert by_id[r["d_disabled"]]["kind"] == "key"
    # visited today: due at the end of next month, beyond a week, so not on the default list
    assert r["d_key_fresh"] in by_id
    week = {d["resident_id"] for d in staff.ok("GET", "/api/v1/visits/due")}
    assert r["d_key_fresh"] not in week and r["d_general_never"] in week
    assert all(d["due"] <= (today + timedelta(days=7)).isoformat() for d in staff.ok("GET", "/api/v1/visits/due"))
    # only the caller's own home; regulators and families have no due list
    assert not {d["resident_id"] for d in vw.as_(api, "staff_h").ok("GET", "/api/v1/visits/due")} & set(by_id)
    assert vw.as_(api, "reg_4205").get("/api/v1/visits/due").status_code == 403
    assert vw.as_(api, "family_h").get("/api/v1/visits/due").status_code == 403
    with psycopg.connect(sup_db.url) as conn:
        logged = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'read_personal' AND detail->>'as' = 'visits_due'"
            " AND actor = %s ORDER BY seq LIMIT 1",
            (vw.users["staff_d"],),
        ).fetchone()
    assert logged is not None and logged[0]["ids"] == [d["resident_id"] for d in due]


def test_the_regulators_coverage_counted_by_hand(api: str, vw: VisitWorld) -> None:
    """H: key k_all (covered), k_gap (no September), k_late (owes only September and October: covered), k_away
    (nobody home in October), k_80 (80 on 31 October, so key; covered); general g_once (visited in March: covered),
    g_last_year, g_after, g_79. O: one key subject, covered. So H: key 3/5, general 1/4; region key 4/6."""
    regulator = vw.as_(api, "reg_4205")
    report = regulator.ok("GET", "/api/v1/supervision/visits", params={"from": START, "to": END, "region": "420502"})
    homes = {h["institution_id"]: h for h in report["homes"]}
    assert set(homes) == {vw.homes["H"], vw.homes["O"]}
    h = homes[vw.homes["H"]]
    assert (h["living_alone"], h["key_subjects"], h["general_subjects"]) == (9, 5, 4)
    assert (h["key_visited_monthly"], h["general_visited_yearly"]) == (3, 1)
    assert (h["key_coverage"], h["general_coverage"]) == (0.6, 0.25)
    o = homes[vw.homes["O"]]
    assert (o["key_subjects"], o["key_visited_monthly"], o["key_coverage"], o["general_coverage"]) == (1, 1, 1.0, None)
    region = report["region"]
    assert region["institution_id"] == 0 and region["institution_code"] is None
    assert (region["key_subjects"], region["key_visited_monthly"]) == (6, 4)
    assert (region["general_subjects"], region["general_visited_yearly"]) == (4, 1)
    assert region["key_target"] == region["general_target"] == 1.0
    # one month: September alone, k_gap is not covered, k_away is
    september = regulator.ok(
        "GET", "/api/v1/supervision/visits", params={"from": "2026-09-01", "to": "2026-09-30", "region": "420502"}
    )
    sep_h = next(x for x in september["homes"] if x["institution_id"] == vw.homes["H"])
    assert (sep_h["key_subjects"], sep_h["key_visited_monthly"]) == (4, 3)  # k_80 is 79 on 30 September: general
    # the whole city region includes D (420503) but not Wuhan's W
    city = regulator.ok("GET", "/api/v1/supervision/visits", params={"from": START, "to": END})
    assert vw.homes["D"] in {x["institution_id"] for x in city["homes"]}
    assert vw.homes["W"] not in {x["institution_id"] for x in city["homes"]}
    # another region's regulator: not found; staff: refused
    wuhan = vw.as_(api, "reg_4201").get(
        "/api/v1/supervision/visits", params={"from": START, "to": END, "region": "420502"}
    )
    assert wuhan.status_code == 404
    assert (
        vw.as_(api, "staff_h").get("/api/v1/supervision/visits", params={"from": START, "to": END}).status_code == 403
    )
    head = vw.as_(api, "head_h").ok("GET", "/api/v1/supervision/visits", params={"from": START, "to": END})
    assert [x["institution_id"] for x in head["homes"]] == [vw.homes["H"]]


def test_lives_alone_is_set_through_the_resident_api(api: str, vw: VisitWorld, sup_db: Database) -> None:
    head = vw.as_(api, "head_h")
    resident = vw.residents["with_family"]
    assert head.ok("GET", f"/api/v1/residents/{resident}")["lives_alone"] is False
    changed = head.ok("PATCH", f"/api/v1/residents/{resident}", json={"lives_alone": True})
    assert changed["lives_alone"] is True and changed["lives_alone_since"] == _today().isoformat()
    back = head.ok("PATCH", f"/api/v1/residents/{resident}", json={"lives_alone": False})
    assert back["lives_alone"] is False and back["lives_alone_since"] is None
    with psycopg.connect(sup_db.url) as conn:
        detail = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'update' AND object_id = %s ORDER BY seq DESC LIMIT 1",
            (resident,),
        ).fetchone()
    assert detail is not None and detail[0]["lives_alone"] is False
    created = head.ok(
        "POST",
        f"/api/v1/institutions/{vw.homes['H']}/residents",
        201,
        json={"name": "赵淑珍", "id_number": new_id_number(born=date(1941, 2, 3)), "lives_alone": True},
    )
    assert created["lives_alone"] is True and created["lives_alone_since"] == _today().isoformat()
    assert _errors(head.patch(f"/api/v1/residents/{resident}", json={"lives_alone": "sometimes"})) == [
        "body.lives_alone"
    ]


def test_a_home_joining_gives_the_day_an_elder_was_put_on_the_list_and_its_earlier_visits(
    api: str, vw: VisitWorld
) -> None:
    """A home registering an elder it has visited on paper gives the day they were put on the list (not today, not in
    the future, only with the flag) and records the visits since, made before the registration; not those before."""
    head = vw.as_(api, "head_h")
    since = date(2026, 11, 3)  # after the hand-counted period: H's coverage stays as counted
    body = {"name": "钱秀英", "id_number": new_id_number(born=date(1940, 4, 5)), "lives_alone": True}
    path = f"/api/v1/institutions/{vw.homes['H']}/residents"
    tomorrow = (_today() + timedelta(days=1)).isoformat()
    assert head.post(path, json={**body, "lives_alone_since": tomorrow}).status_code == 422
    assert (
        head.post(path, json={**body, "lives_alone": False, "lives_alone_since": since.isoformat()}).status_code == 422
    )
    created = head.ok("POST", path, 201, json={**body, "lives_alone_since": since.isoformat()})
    assert created["lives_alone_since"] == since.isoformat()
    visits = f"/api/v1/residents/{created['id']}/visits"
    ok = {"visited_at": _local(since, 0).isoformat(), "mode": "in_person", "outcome": "well"}
    assert head.ok("POST", visits, 201, json=ok)["counts"] is True  # before the registration, on the list's first day
    before = (_local(since, 0) - timedelta(minutes=1)).isoformat()
    assert _errors(head.post(visits, json={**ok, "visited_at": before})) == ["body.visited_at"]
    moved = head.ok(
        "PATCH", f"/api/v1/residents/{created['id']}", json={"lives_alone": True, "lives_alone_since": "2026-11-01"}
    )
    assert moved["lives_alone_since"] == "2026-11-01"
    assert head.patch(f"/api/v1/residents/{created['id']}", json={"lives_alone_since": "2026-11-02"}).status_code == 422


def test_one_homes_coverage_is_its_row_of_the_region_and_only_for_a_home_in_scope(api: str, vw: VisitWorld) -> None:
    """``?institution_id=`` (a home's drill-down): that home's row, the same figures as in the region's answer, and
    a region of that home alone; a home outside the caller's region, or of another head, is not found."""
    params: dict[str, Any] = {"from": START, "to": END}
    regulator = vw.as_(api, "reg_4205")
    whole = regulator.ok("GET", "/api/v1/supervision/visits", params=params)
    row = next(x for x in whole["homes"] if x["institution_id"] == vw.homes["H"])
    one = regulator.ok("GET", "/api/v1/supervision/visits", params={**params, "institution_id": vw.homes["H"]})
    assert one["homes"] == [row]
    figures = {k: v for k, v in row.items() if not k.startswith("institution_")}
    assert {k: v for k, v in one["region"].items() if not k.startswith("institution_")} == figures
    for who, home in (("reg_4205", "W"), ("reg_4201", "H"), ("head_h", "O")):
        reply = vw.as_(api, who).get("/api/v1/supervision/visits", params={**params, "institution_id": vw.homes[home]})
        assert reply.status_code == 404, (who, home, reply.text)
        assert set(reply.json()) == {"detail", "errors"}
    wuhan = vw.as_(api, "reg_4201").ok(
        "GET", "/api/v1/supervision/visits", params={**params, "institution_id": vw.homes["W"]}
    )
    assert [x["institution_id"] for x in wuhan["homes"]] == [vw.homes["W"]] and wuhan["region"]["key_subjects"] == 1
