"""The read endpoints behind the pages, against the running platform and the gateway's real telemetry: the
board's bed states, a resident's state and vital signs (bucketed with time_bucket beyond an hour, and only
the readings of the time the resident was in the bed), their alarms, and a family user's own residents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from tests.web.support import World


def _get(web: World, username: str, path: str, status: int = 200) -> Any:
    reply = web.api(username, "GET", path)
    assert reply.status_code == status, f"{path}: {reply.status_code} {reply.text}"
    return reply.json()


def test_the_board_tells_each_bed_apart(web: World) -> None:
    board = _get(web, web.users.nurse, f"/api/v1/institutions/{web.home.institution_id}/board")
    beds = {b["bed_code"]: b for b in board["beds"]}
    b = [beds[x.bed_code] for x in web.beds]
    assert [x["presence"] for x in b] == [
        "in_bed",
        "in_bed",
        "out_of_bed",
        "unknown",
        "out_of_bed",
        "out_of_bed",
        "in_bed",
        "in_bed",
    ]
    assert b[0]["resident_id"] == web.beds[0].resident_id and not b[0]["device_offline"]
    out_since = datetime.fromisoformat(b[2]["out_since"])
    left = datetime.now(UTC) - out_since
    # The last reading in bed was at most one sample (two minutes of history) before the 25 minutes.
    assert timedelta(minutes=25) <= left <= timedelta(minutes=40), left
    assert b[2]["out_minutes"] >= 25 and not b[2]["out_longer_than_window"]
    assert b[3]["device_offline"] and b[3]["out_since"] is None
    silent = next(d for d in b[3]["devices"] if d["kind"] == "bed_sensor")
    assert silent["offline"] and "device_offline" in silent["faults"]
    assert datetime.now(UTC) - datetime.fromisoformat(silent["last_seen"]) > timedelta(minutes=110)
    assert [a["kind"] for a in b[3]["alarms"]] == ["device_offline"]
    assert b[4]["in_hospital"] and b[4]["resident_id"] == web.beds[4].resident_id
    assert b[5]["resident_id"] is None
    assert all(not d["offline"] for x in (b[0], b[1], b[2], b[6], b[7]) for d in x["devices"])
    assert [f["beds"] for f in board["floors"]] == [8]
    assert not board["gateway_offline"]


def test_the_board_of_one_floor_and_of_a_floor_elsewhere(web: World) -> None:
    board = _get(web, web.users.nurse, f"/api/v1/institutions/{web.home.institution_id}/board")
    floor = board["floors"][0]["id"]
    one = _get(web, web.users.nurse, f"/api/v1/institutions/{web.home.institution_id}/board?floor_id={floor}")
    assert len(one["beds"]) == 8
    other = _get(web, web.users.regulator, f"/api/v1/institutions/{web.other_homes[0].institution_id}/board")
    elsewhere = other["floors"][0]["id"]
    _get(web, web.users.nurse, f"/api/v1/institutions/{web.home.institution_id}/board?floor_id={elsewhere}", 404)
    _get(web, web.users.nurse, f"/api/v1/institutions/{web.other_homes[0].institution_id}/board", 404)
    _get(web, web.users.family_a, f"/api/v1/institutions/{web.home.institution_id}/board", 403)


def test_a_residents_state_in_plain_terms(web: World) -> None:
    states = [_get(web, web.users.nurse, f"/api/v1/residents/{b.resident_id}/status")["state"] for b in web.beds]
    assert states == ["in_bed", "in_bed", "out_of_bed", "unknown", "in_hospital", "discharged", "in_bed", "in_bed"]
    mine = _get(web, web.users.family_a, f"/api/v1/residents/{web.beds[0].resident_id}/status")
    assert mine["bed_label"] == web.beds[0].label and mine["has_bed_sensor"]
    assert datetime.now(UTC) - datetime.fromisoformat(mine["last_reading_at"]) < timedelta(minutes=2)


def test_vital_signs_are_bucketed_beyond_an_hour(web: World) -> None:
    rid = web.beds[0].resident_id
    raw = _get(web, web.users.nurse, f"/api/v1/residents/{rid}/vitals?hours=1")
    assert raw["bucket_s"] is None
    assert len(raw["t"]) >= 30  # one every two minutes of history, then the gateway's samples
    assert raw["t"] == sorted(raw["t"]) and all(55 < hr < 85 for hr in raw["hr"])
    six = _get(web, web.users.nurse, f"/api/v1/residents/{rid}/vitals?hours=6")
    assert six["bucket_s"] == 60
    assert all(b - a >= 60 for a, b in zip(six["t"], six["t"][1:], strict=False))
    assert 170 <= len(six["t"]) <= 361
    assert all(lo <= avg <= hi for lo, avg, hi in zip(six["hr_min"], six["hr"], six["hr_max"], strict=True))
    day = _get(web, web.users.nurse, f"/api/v1/residents/{rid}/vitals?hours=24")
    assert day["bucket_s"] == 300 and len(day["t"]) <= 289
    week = _get(web, web.users.nurse, f"/api/v1/residents/{rid}/vitals?hours=168")
    assert week["bucket_s"] == 1800
    _get(web, web.users.nurse, f"/api/v1/residents/{rid}/vitals?hours=169", 422)


def test_vital_signs_are_the_residents_own(web: World) -> None:
    """The out-of-bed resident's last 25 minutes have no heart rate; the discharged resident's bed sensor kept
    reporting after they left, and none of that is theirs."""
    out = _get(web, web.users.nurse, f"/api/v1/residents/{web.beds[2].resident_id}/vitals?hours=1")
    cut = (datetime.now(UTC) - timedelta(minutes=24)).timestamp()
    recent = [(hr, in_bed) for t, hr, in_bed in zip(out["t"], out["hr"], out["in_bed"], strict=True) if t > cut]
    assert recent and all(hr is None and in_bed == 0 for hr, in_bed in recent)
    gone = _get(web, web.users.nurse, f"/api/v1/residents/{web.beds[5].resident_id}/vitals?hours=6")
    assert gone["t"] == []
    with psycopg.connect(web.db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM bed_readings r JOIN devices d ON d.id = r.device_id WHERE d.code = %s"
            " AND r.time > now() - interval '6 hours'",
            (web.beds[5].sensor,),
        ).fetchone()
    assert row is not None and row[0] > 100  # the sensor did report: the readings exist, they are not theirs


def test_a_residents_alarms_newest_first_with_paging(web: World) -> None:
    rid = web.beds[0].resident_id
    alarms = _get(web, web.users.family_a, f"/api/v1/residents/{rid}/alarms")
    assert web.past_alarm_id in [a["id"] for a in alarms]
    past = next(a for a in alarms if a["id"] == web.past_alarm_id)
    assert past["outcome"] == "accidental_press" and past["acknowledged_at"] and past["attending_at"]
    assert [a["id"] for a in alarms] == sorted((a["id"] for a in alarms), reverse=True)
    page = _get(web, web.users.nurse, f"/api/v1/residents/{rid}/alarms?before={web.past_alarm_id}")
    assert all(a["id"] < web.past_alarm_id for a in page)


def test_a_family_user_has_their_own_residents_only(web: World) -> None:
    mine = _get(web, web.users.family_a, "/api/v1/me/residents")
    assert [(r["id"], r["name"]) for r in mine] == [(web.beds[0].resident_id, web.beds[0].name)]
    assert mine[0]["institution_name"] == web.home.name
    assert _get(web, web.users.nurse, "/api/v1/me/residents") == []
    for path in ("status", "vitals", "alarms"):
        _get(web, web.users.family_a, f"/api/v1/residents/{web.beds[1].resident_id}/{path}", 404)


def _last_health_read(web: World, resident_id: int) -> tuple[str, str, dict[str, Any]]:
    """Who read the resident's health data last, as what object, and what the read showed."""
    with psycopg.connect(web.db) as conn:
        row = conn.execute(
            "SELECT actor, object_type, detail FROM audit_log WHERE action = 'read_health' AND object_id = %s"
            " ORDER BY seq DESC LIMIT 1",
            (resident_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_reads_of_health_data_are_audited(web: World) -> None:
    rid = web.beds[6].resident_id
    _get(web, web.users.nurse2, f"/api/v1/residents/{rid}/vitals?hours=6")
    actor, object_type, detail = _last_health_read(web, rid)
    assert (actor, object_type, detail["hours"]) == (web.users.nurse2, "resident", 6)


def test_reads_of_a_residents_alarm_history_are_audited_with_what_they_showed(web: World) -> None:
    rid = web.beds[0].resident_id
    alarms = _get(web, web.users.family_a, f"/api/v1/residents/{rid}/alarms?limit=50")
    assert alarms
    actor, object_type, detail = _last_health_read(web, rid)
    assert (actor, object_type) == (web.users.family_a, "resident")
    assert detail == {"fields": ["alarms"], "alarms": len(alarms), "kinds": sorted({a["kind"] for a in alarms})}
