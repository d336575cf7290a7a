"""A person's position goes from the gateway to staff sealed: ingest stores a wristband's fixes and an SOS press's
place encrypted (never in clear), the ticker finds a wanderer by the sealed fixes, and the engine puts an SOS's place
into the alarm, whose text is sealed again. A place that does not open never holds the alarm back."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from tests.alerting.conftest import alarm_text, alarms_of, device_id, process, put_event, tick
from tests.alerting.test_more_rules import _wristband

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.store import BatchStore
from eldercare.platform.crypto import EVENT_POSITION, INBOX_POSITION, LOCATION_POSITION, Vault
from eldercare.simulators.seed import SeededHome

_seqs = itertools.count()
_METRE = 1 / 111_320  # of latitude, in degrees


def _via_ingest(db: str, vault: Vault, home: SeededHome, msg: m.DeviceMessage, *, alarm: bool = False) -> None:
    """A frame of one message from the home's gateway, stored as ingest stores it."""
    channel = topics.Channel.ALARM if alarm else topics.Channel.TELEMETRY
    topic = topics.uplink(home.institution_code, home.gateway.gateway_id, channel)
    frame = m.Frame(v=1, epoch=1, seq=next(_seqs), sent=msg.ts, msgs=[msg])
    with psycopg.connect(db, autocommit=True) as conn:
        result = BatchStore(registry=Registry(retry_s=0), vault=vault).write(conn, [Received(topic, m.encode(frame))])
    assert result.frames_new == 1 and not result.rejected, result


def _home_position(db: str, home: SeededHome) -> tuple[float, float]:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT lat, lon FROM institutions WHERE id = %s", (home.institution_id,)).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def _person(home: SeededHome) -> str:
    return next(d.person_code for d in home.devices if d.person_code) or ""


def test_a_wanderer_is_found_by_the_fixes_ingest_sealed(db: str, vault: Vault, home: SeededHome) -> None:
    band = _wristband(db, home, _person(home))
    lat, lon = _home_position(db, home)
    now = int(time.time() * 1000)
    _via_ingest(db, vault, home, m.Location(dev=band, ts=now - 2000, lat=lat + 60 * _METRE, lon=lon))  # the garden
    tick(db, vault)
    assert alarms_of(db, home) == []
    road = lat + 400 * _METRE
    _via_ingest(db, vault, home, m.Location(dev=band, ts=now - 1000, lat=road, lon=lon, acc=8))
    tick(db, vault)
    [alarm] = alarms_of(db, home)
    assert (alarm["kind"], alarm["priority"]) == ("wander", "emergency")
    detail = alarm_text(db, vault, alarm["id"]).detail
    assert 390 <= detail["metres_from_home"] <= 410 and (detail["lat"], detail["lon"]) == (road, lon)

    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT lat, lon, position_enc FROM locations WHERE device_id = %s ORDER BY time", (device_id(db, band),)
        ).fetchall()
    assert [(a, b) for a, b, _ in stored] == [(None, None)] * 2
    assert vault.open_position(stored[-1][2], column=LOCATION_POSITION) == (road, lon)


def _sos_rows(db: str, band: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(db) as conn:
        events = conn.execute(
            "SELECT detail, position_enc FROM device_events WHERE device_id = %s AND kind = 'sos' ORDER BY time",
            (device_id(db, band),),
        ).fetchall()
        inbox = conn.execute(
            "SELECT detail, position_enc FROM alarm_inbox WHERE device_id = %s AND kind = 'sos' ORDER BY id",
            (device_id(db, band),),
        ).fetchall()
    return events, inbox


def test_an_sos_press_keeps_its_place_sealed_and_the_alarm_carries_it(db: str, vault: Vault, home: SeededHome) -> None:
    band = _wristband(db, home, _person(home))
    now = int(time.time() * 1000)
    _via_ingest(db, vault, home, m.Sos(dev=band, ts=now, lat=30.7123456, lon=111.2987654), alarm=True)

    events, inbox = _sos_rows(db, band)
    assert [detail for detail, _ in events + inbox] == [{}, {}]  # nothing of the place in clear
    assert vault.open_position(events[0][1], column=EVENT_POSITION) == (30.7123456, 111.2987654)
    assert vault.open_position(inbox[0][1], column=INBOX_POSITION) == (30.7123456, 111.2987654)

    process(db, vault)
    [alarm] = alarms_of(db, home)
    assert (alarm["kind"], alarm["priority"], alarm["device"]) == ("sos", "emergency", band)
    assert alarm_text(db, vault, alarm["id"]).detail == {"lat": 30.7123456, "lon": 111.2987654}


def test_an_sos_press_without_a_fix_is_stored_and_raised_without_a_place(
    db: str, vault: Vault, home: SeededHome
) -> None:
    band = _wristband(db, home, _person(home))
    _via_ingest(db, vault, home, m.Sos(dev=band, ts=int(time.time() * 1000)), alarm=True)
    events, inbox = _sos_rows(db, band)
    assert events + inbox == [({}, None), ({}, None)]
    process(db, vault)
    [alarm] = alarms_of(db, home)
    assert alarm["kind"] == "sos" and alarm_text(db, vault, alarm["id"]).detail == {}


def test_a_place_that_does_not_open_never_holds_the_sos_back(db: str, vault: Vault, home: SeededHome) -> None:
    """Sealed under another key (a key rotated wrongly, a row copied from another site): the alarm is raised all the
    same, saying the place could not be read."""
    band = _wristband(db, home, _person(home))
    put_event(db, home, band, "sos", {}, datetime.now(UTC))
    other = Vault(bytes(32)).seal_position(30.5, 111.5, column=INBOX_POSITION)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE alarm_inbox SET position_enc = %s WHERE device_id = %s", (other, device_id(db, band)))
    process(db, vault)
    [alarm] = alarms_of(db, home)
    assert alarm["kind"] == "sos" and alarm_text(db, vault, alarm["id"]).detail == {"position": "unreadable"}
