"""How an alarm ended, as a code beside the sealed outcome text (migration 0015): given by staff when they close it
(or read from an outcome text that is itself a code, as the board sends it), set by the engine when a device closes
it, shown to every reader (regulators too, who see the text masked), and counted as false alarms in the response
report and the supervision figures. Through the app over HTTP, the real engine, and the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from tests.alerting.conftest import process, put_event, run, with_conn
from tests.alerting.test_api import _auth, _client

from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn, create_user
from eldercare.platform.crypto import Vault
from eldercare.simulators.seed import SeededHome


def _regulator(db: str, home: SeededHome) -> str:
    name = f"regoc-{home.institution_code[-6:].lower()}"

    async def make(conn: AsyncConn) -> int:
        return await create_user(conn, username=name, password="password-123", role=Role.REGULATOR, region_code="4205")

    run(with_conn(db, make))
    return name


def _alarm_ids(db: str, home: SeededHome, kind: str) -> list[int]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT id FROM alarms WHERE institution_id = %s AND kind = %s ORDER BY id", (home.institution_id, kind)
        ).fetchall()
    return [r[0] for r in rows]


def _codes(db: str, home: SeededHome) -> dict[str, tuple[str, str | None]]:
    """kind -> (state, outcome_code) of the home's alarms, as stored."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind, state::text, outcome_code::text FROM alarms WHERE institution_id = %s ORDER BY id",
            (home.institution_id,),
        ).fetchall()
    return {kind: (state, code) for kind, state, code in rows}


def _window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}


def _today() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


async def _figures(client: httpx.AsyncClient, headers: dict[str, str], home: SeededHome) -> dict[str, Any]:
    reply = await client.get(
        "/api/v1/supervision/figures",
        headers=headers,
        params={"from": _today(), "to": _today(), "institution_id": home.institution_id},
    )
    assert reply.status_code == 200, reply.text
    homes: list[dict[str, Any]] = reply.json()["homes"]
    [mine] = homes
    assert mine["institution_code"] == home.institution_code
    return mine


def test_staff_close_with_a_code_every_reader_sees_it_and_the_regulator_counts_false_alarms(
    db: str, vault: Vault, home: SeededHome
) -> None:
    buttons = [d.code for d in home.devices if d.kind == "button"][:4]
    assert len(buttons) == 4
    now = datetime.now(UTC)
    for n, code in enumerate(buttons):
        put_event(db, home, code, "button", {"action": "press"}, now + timedelta(milliseconds=n))
    assert process(db, vault) == 4
    real, mistake, false, unknown = _alarm_ids(db, home, "button")
    regulator = _regulator(db, home)

    async def work(client: httpx.AsyncClient) -> None:
        nurse = await _auth(client, home.staff_username, home.staff_password)

        async def close(alarm_id: int, action: str, body: dict[str, Any]) -> dict[str, Any]:
            reply = await client.post(f"/api/v1/alarms/{alarm_id}/{action}", headers=nurse, json=body)
            assert reply.status_code == 200, reply.text
            answer: dict[str, Any] = reply.json()
            return answer

        # An unknown code is refused, naming the field; the alarm stays as it was.
        refused = await client.post(
            f"/api/v1/alarms/{unknown}/resolve", headers=nurse, json={"outcome": "x", "outcome_code": "prank"}
        )
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["body.outcome_code"]

        # The code given; the outcome text that is a code (the board, older clients); free text alone: not known.
        closed = [
            await close(real, "resolve", {"outcome": "扶起，右手腕擦伤", "outcome_code": "real_event"}),
            await close(mistake, "cancel", {"outcome": "accidental_press"}),
            await close(false, "resolve", {"outcome": "按键自己触发", "outcome_code": "false_alarm"}),
            await close(unknown, "resolve", {"outcome": "家属来访时按的"}),
        ]
        assert [(a["state"], a["outcome_code"]) for a in closed] == [
            ("resolved", "real_event"),
            ("cancelled", "accidental_press"),
            ("resolved", "false_alarm"),
            ("resolved", None),
        ]
        assert closed[0]["outcome"] == "扶起，右手腕擦伤"  # the text is kept as before

        # The regulator sees the code in clear beside the masked text: in the alarm and in the list.
        reg = await _auth(client, regulator, "password-123")
        shown = (await client.get(f"/api/v1/alarms/{false}", headers=reg)).json()
        assert (shown["outcome"], shown["outcome_code"]) == ("***", "false_alarm")
        listed = (await client.get("/api/v1/alarms", headers=reg, params={"since": _window()["since"]})).json()
        assert {a["id"]: a["outcome_code"] for a in listed if a["id"] in (real, mistake, false, unknown)} == {
            real: "real_event",
            mistake: "accidental_press",
            false: "false_alarm",
            unknown: None,
        }
        assert "按键自己触发" not in str(listed)

        # The response report counts them: 2 false alarms (a false alarm, an accidental press) of 3 with a code.
        rows = (await client.get("/api/v1/alarms/report", headers=reg, params=_window())).json()
        [row] = [r for r in rows if r["institution_code"] == home.institution_code]
        assert (row["alarms"], row["closed_with_code"], row["false_alarms"]) == (4, 3, 2)
        assert row["false_alarm_rate"] == pytest.approx(2 / 3)
        assert row["alarms_by_outcome"] == {"real_event": 1, "accidental_press": 1, "false_alarm": 1}

        # And so do the supervision figures of the home.
        figures = await _figures(client, reg, home)
        assert (figures["closed_with_code"], figures["false_alarms"]) == (3, 2)
        assert figures["false_alarm_rate"] == pytest.approx(2 / 3)

    _client(db, vault)(work)
    assert _codes(db, home)["button"] == ("resolved", None)  # the last one, kept as not known


def test_a_device_closing_its_alarm_sets_the_code_and_technical_alarms_are_no_false_alarms(
    db: str, vault: Vault, home: SeededHome
) -> None:
    button = next(d.code for d in home.devices if d.kind == "button")
    sensor = next(d.code for d in home.devices if d.kind == "bed_sensor")
    now = datetime.now(UTC)
    put_event(db, home, button, "button", {"action": "press"}, now)
    put_event(db, home, sensor, "fault", {"fault": "low_battery", "active": True}, now)
    assert process(db, vault) == 2
    # the carer cancels the call at the bedside; the battery is changed
    put_event(db, home, button, "button", {"action": "cancel"}, now + timedelta(seconds=30))
    put_event(db, home, sensor, "fault", {"fault": "low_battery", "active": False}, now + timedelta(seconds=31))
    process(db, vault)
    assert _codes(db, home) == {"button": ("cancelled", "other"), "device_low_battery": ("resolved", "device_issue")}
    regulator = _regulator(db, home)

    async def work(client: httpx.AsyncClient) -> None:
        reg = await _auth(client, regulator, "password-123")
        [battery] = _alarm_ids(db, home, "device_low_battery")
        shown = (await client.get(f"/api/v1/alarms/{battery}", headers=reg)).json()
        assert shown["outcome_code"] == "device_issue"
        # a technical alarm's device issue is no false alarm for a person: the figures count alarms for people
        figures = await _figures(client, reg, home)
        assert (figures["closed_with_code"], figures["false_alarms"], figures["false_alarm_rate"]) == (1, 0, 0.0)

    _client(db, vault)(work)


def test_the_daily_counts_follow_a_code_set_or_changed(db: str, vault: Vault, home: SeededHome) -> None:
    """The per home-day table the figures read is kept by the triggers as the recount from the alarms says."""
    button = next(d.code for d in home.devices if d.kind == "button")
    put_event(db, home, button, "fall", {"source": "radar"}, datetime.now(UTC))
    assert process(db, vault) == 1
    [fall] = _alarm_ids(db, home, "fall")

    def counts(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
        sql = "SELECT kind, alarms, coded, false_alarms FROM {} WHERE institution_id = %s ORDER BY kind"
        kept = conn.execute(sql.format("supervision_alarm_daily"), (home.institution_id,)).fetchall()
        again = conn.execute(sql.format("supervision_alarm_daily_recomputed"), (home.institution_id,)).fetchall()
        assert kept == again
        return kept

    with psycopg.connect(db, autocommit=True) as conn:
        assert counts(conn) == [("fall", 1, 0, 0)]
        conn.execute(
            "UPDATE alarms SET state = 'resolved', closed_at = now(), outcome_code = 'device_issue' WHERE id = %s",
            (fall,),
        )
        assert counts(conn) == [("fall", 1, 1, 1)]
        conn.execute("UPDATE alarms SET outcome_code = 'real_event' WHERE id = %s", (fall,))
        assert counts(conn) == [("fall", 1, 1, 0)]
        with pytest.raises(psycopg.errors.CheckViolation):  # only a closed alarm has a code
            conn.execute("UPDATE alarms SET state = 'raised', closed_at = NULL WHERE id = %s", (fall,))
