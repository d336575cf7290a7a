"""Wandering, no presence, SMS through a provider's HTTP API, and backoff when every channel fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from tests.alerting.conftest import alarm_text, alarms_of, process, put_event, run, tick, with_conn
from tests.alerting.receivers import WebhookServer
from tests.alerting.test_delivery import _channel, _deliver, _family

from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import LOCATION_POSITION, Vault
from eldercare.platform.notify import sender
from eldercare.platform.registry import service as registry
from eldercare.simulators.seed import SeededHome


@pytest.fixture
def webhooks(free_port: Callable[[], int]) -> Iterator[WebhookServer]:
    server = WebhookServer(free_port())
    yield server
    server.close()


def _wristband(db: str, home: SeededHome, person_code: str) -> str:
    code = f"WB-{home.institution_code[-6:]}"

    async def make(conn: AsyncConn) -> None:
        device_id = await registry.create_device(conn, institution_id=home.institution_id, code=code, kind="wristband")
        row = await (await conn.execute("SELECT id FROM residents WHERE person_code = %s", (person_code,))).fetchone()
        assert row is not None
        await conn.execute("UPDATE residents SET wander_risk = true WHERE id = %s", (row[0],))
        await registry.bind_device(
            conn, device_id=device_id, bed_id=None, resident_id=row[0], since=datetime.now(UTC) - timedelta(days=1)
        )

    run(with_conn(db, make))
    return code


def _where(db: str, vault: Vault, home: SeededHome, code: str, metres_north: float) -> None:
    """A fix this far north of the home, sealed as ingest stores it."""
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT d.id, i.lat + %s / 111320.0, i.lon FROM devices d JOIN institutions i ON i.id = d.institution_id"
            " WHERE d.code = %s",
            (metres_north, code),
        ).fetchone()
        assert row is not None
        device, lat, lon = row
        sealed = vault.seal_position(lat, lon, column=LOCATION_POSITION)
        conn.execute("INSERT INTO locations (time, device_id, position_enc) VALUES (now(), %s, %s)", (device, sealed))


def test_a_wanderer_beyond_the_homes_area_raises_one_emergency_with_the_last_location(
    db: str, vault: Vault, home: SeededHome
) -> None:
    person = next(d.person_code for d in home.devices if d.person_code)
    band = _wristband(db, home, person or "")
    _where(db, vault, home, band, 60)  # in the garden
    tick(db, vault)
    assert alarms_of(db, home) == []
    _where(db, vault, home, band, 400)  # out on the road
    tick(db, vault)
    tick(db, vault)
    [alarm] = alarms_of(db, home)
    assert (alarm["kind"], alarm["priority"], alarm["device"]) == ("wander", "emergency", band)
    detail = alarm_text(db, vault, alarm["id"]).detail
    assert 390 <= detail["metres_from_home"] <= 410 and "lat" in detail


def test_a_fix_an_older_ingest_wrote_in_clear_is_read_until_migrate_seals_it(
    db: str, vault: Vault, home: SeededHome
) -> None:
    """During an upgrade an ingest of the version before 0024 may still store fixes in clear; the wanderer is found by
    them all the same. (The row is removed afterwards: the session's database is migrated again by later fixtures,
    without the key a row in clear would need.)"""
    person = next(d.person_code for d in home.devices if d.person_code)
    band = _wristband(db, home, person or "")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO locations (time, device_id, lat, lon) SELECT now(), d.id, i.lat + 400 / 111320.0, i.lon"
            " FROM devices d JOIN institutions i ON i.id = d.institution_id WHERE d.code = %s",
            (band,),
        )
        try:
            tick(db, vault)
        finally:
            conn.execute("DELETE FROM locations WHERE lat IS NOT NULL")
    [alarm] = alarms_of(db, home)
    assert alarm["kind"] == "wander" and 390 <= alarm_text(db, vault, alarm["id"]).detail["metres_from_home"] <= 410


def _empty_bed_readings(db: str, home: SeededHome, minutes_ago: tuple[int, ...]) -> str:
    """A one-hour no-presence rule for the home and a bed sensor that saw nobody at these times."""
    sensor = next(d.code for d in home.devices if d.kind == "bed_sensor")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alarm_rules (institution_id, rule, params) VALUES (%s, 'no_presence', '{\"hours\": 1}')",
            (home.institution_id,),
        )
        for minutes in minutes_ago:
            conn.execute(
                "INSERT INTO bed_readings (time, device_id, presence) SELECT now() - make_interval(mins => %s), id,"
                " false FROM devices WHERE code = %s",
                (minutes, sensor),
            )
    return sensor


def test_a_bed_sensor_that_reports_but_never_sees_anyone_is_a_technical_alarm(
    db: str, vault: Vault, home: SeededHome
) -> None:
    sensor = _empty_bed_readings(db, home, (0, 30, 70))
    tick(db, vault)
    kinds = [(a["kind"], a["priority"], a["device"]) for a in alarms_of(db, home)]
    assert kinds == [("no_presence", "technical", sensor)]


def test_a_sensor_that_has_only_just_started_reporting_is_no_evidence_of_an_empty_bed(
    db: str, vault: Vault, home: SeededHome
) -> None:
    _empty_bed_readings(db, home, (0, 5, 20))  # a new sensor (or one back from an outage): 20 minutes of data
    tick(db, vault)
    assert alarms_of(db, home) == []


def test_a_resident_in_hospital_during_the_window_leaves_the_bed_empty_for_a_reason(
    db: str, vault: Vault, home: SeededHome
) -> None:
    sensor = _empty_bed_readings(db, home, (0, 30, 70))
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO hospital_stays (resident_id, during) SELECT ba.resident_id,"
            " tstzrange(now() - interval '3 hours', now() - interval '30 minutes')"
            " FROM devices d JOIN device_bindings db ON db.device_id = d.id AND db.during @> now()"
            " JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> now() WHERE d.code = %s",
            (sensor,),
        )
    tick(db, vault)
    assert alarms_of(db, home) == []


def test_sms_goes_through_the_providers_http_api(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    button = next(d for d in home.devices if d.kind == "button")
    family = _family(db, home, button.bed_code or "")
    _channel(db, vault, family, "sms", "13812345678", 1)
    monkeypatch.setenv("ELDERCARE_SMS_URL", f"{webhooks.url}/sms")
    monkeypatch.setenv("ELDERCARE_SMS_API_KEY", "provider-key")
    put_event(db, home, button.code, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    assert _deliver(db, vault, None) == 1
    [hit] = webhooks.hits
    assert hit.path == "/sms" and hit.headers["authorization"] == "Bearer provider-key"
    assert hit.json()["to"] == "13812345678" and "紧急呼叫" in hit.json()["text"]


def test_when_every_channel_fails_the_row_waits_and_is_retried(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button = next(d for d in home.devices if d.kind == "button")
    family = _family(db, home, button.bed_code or "")
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/broken", 1)
    put_event(db, home, button.code, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    slow = sender.SenderPolicy(backoff_base_s=30)
    assert _deliver(db, vault, None, slow) == 0
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT state, attempts, not_before > now() + interval '20 seconds', last_error FROM notifications"
            " WHERE user_id = %s",
            (family,),
        ).fetchone()
    assert row is not None and row[:3] == ("pending", 1, True) and "HTTP 500" in row[3]
    assert _deliver(db, vault, None, slow) == 0  # not due yet: nothing is tried
    assert len(webhooks.hits) == 1
