"""BatchStore against the real TimescaleDB: exactly once per (gateway, epoch, seq), values through the binary
COPY unchanged, bad input parked without spoiling its neighbours, the roll-up bookkeeping."""

from __future__ import annotations

from itertools import pairwise
from math import isnan
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest import rows as rows_module
from eldercare.ingest import store as store_module
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.rows import HOUR_MS
from eldercare.ingest.store import BatchStore
from eldercare.platform.crypto import LOCATION_POSITION, PARKED_PAYLOAD, Vault
from eldercare.platform.sealed_vitals import micros_sql
from eldercare.simulators.load import LoadWorld

from .helpers import now_ms, scalar, stored_frames, stored_readings


def _topic(world: LoadWorld, *, alarm: bool = False) -> str:
    channel = topics.Channel.ALARM if alarm else topics.Channel.TELEMETRY
    return topics.uplink(world.institution_code, world.gateways[0].gateway_id, channel)


def _frame(
    world: LoadWorld, seq: int, msgs: list[m.DeviceMessage], *, epoch: int = 7, sent: int | None = None
) -> Received:
    frame = m.Frame(v=1, epoch=epoch, seq=seq, sent=sent or now_ms(), msgs=msgs)
    return Received(_topic(world), m.encode(frame))


def _bed(world: LoadWorld, i: int, ts: int) -> m.BedSample:
    beds = world.gateways[0].beds
    return m.BedSample(dev=beds[i % len(beds)], ts=ts + i, presence=True, hr=70.0, rr=15.0, move=0.2)


def _store(vault: Vault) -> BatchStore:
    return BatchStore(registry=Registry(retry_s=0), vault=vault)


def test_a_frame_is_stored_once_however_often_and_however_stamped_it_comes(
    db: str, vault: Vault, world: LoadWorld
) -> None:
    ts = now_ms() - 60_000
    first = _frame(world, 0, [_bed(world, i, ts) for i in range(5)], sent=ts)
    again_restamped = _frame(world, 0, [_bed(world, i, ts) for i in range(5)], sent=ts + 5_000)
    other = _frame(world, 1, [_bed(world, i, ts + 100) for i in range(3)])
    store = _store(vault)
    with psycopg.connect(db, autocommit=True) as conn:
        one = store.write(conn, [first, first, other])  # a redelivery inside the same batch
        two = store.write(conn, [first, again_restamped])  # and in later batches, even with another `sent`
    assert (one.frames_new, one.frames_duplicate, one.rows) == (2, 1, 8)
    assert (two.frames_new, two.frames_duplicate, two.rows) == (0, 2, 0)
    assert stored_frames(db, world) == 2
    assert stored_readings(db, world) == 8
    sent_at = scalar(db, "SELECT extract(epoch FROM sent_at) * 1000 FROM uplink_frames WHERE epoch = 7 AND seq = 0"
                     " AND gateway_pk = (SELECT id FROM gateways WHERE gateway_id = %s)",
                     (world.gateways[0].gateway_id,))  # fmt: skip
    assert round(float(sent_at)) == ts  # the first copy wins


def test_values_go_through_the_binary_copy_unchanged(db: str, vault: Vault, world: LoadWorld) -> None:
    beds = world.gateways[0].beds
    ts = now_ms() - 3_600_000 + 123  # not a whole second: milliseconds must survive
    msgs: list[m.DeviceMessage] = [
        m.BedSample(dev=beds[0], ts=ts, presence=True, hr=71.3, rr=15.7, move=0.25),
        m.BedSample(dev=beds[1], ts=ts + 1, presence=False),
        m.BedSample(dev=beds[2], ts=ts + 2, presence=True, hr=58.0),
        m.Battery(dev=beds[3], ts=ts + 3, level=87),
        m.EnvReading(dev=beds[4], ts=ts + 4, kind="gas", value=3.5),
        m.Location(dev=beds[5], ts=ts + 5, lat=30.7123456, lon=111.2987654, acc=12.5),
        m.Location(dev=beds[6], ts=ts + 6, lat=-30.5, lon=-111.25),
        m.AccelSamples(dev=beds[7], ts=ts + 7, hz=50, xyz=[(1, -2, 256), (-32768, 32767, 0)]),
    ]
    with psycopg.connect(db, autocommit=True) as conn:
        result = _store(vault).write(conn, [_frame(world, 0, msgs, epoch=8)])
        assert result.rows == 8
        at = "(extract(epoch FROM time) * 1000)::bigint"
        bed = conn.execute(
            f"SELECT {at}, d.code, presence, heart_rate, resp_rate, movement, {micros_sql('time')}, device_id,"
            " vitals_enc FROM bed_readings r JOIN devices d ON d.id = r.device_id WHERE d.code = ANY(%s) ORDER BY 1",
            (beds[:3],),
        ).fetchall()
        scalar_rows = conn.execute(
            f"SELECT {at}, metric, value FROM device_readings r JOIN devices d ON d.id = r.device_id"
            " WHERE d.code = ANY(%s) ORDER BY 1",
            (beds[3:5],),
        ).fetchall()
        sealed = conn.execute(
            f"SELECT {at}, lat, lon, accuracy, position_enc FROM locations r JOIN devices d ON d.id = r.device_id"
            " WHERE d.code = ANY(%s) ORDER BY 1",
            (beds[5:7],),
        ).fetchall()
        accel = conn.execute(
            f"SELECT {at}, hz, samples FROM accel_chunks r JOIN devices d ON d.id = r.device_id WHERE d.code = %s",
            (beds[7],),
        ).fetchall()
    assert [row[3:5] for row in bed] == [(None, None)] * 3  # heart and breathing rates: never in clear
    assert bed[1][8] is None  # nobody in bed, no rates: nothing sealed
    opened = vault.open_vitals([r[6] for r in bed], [r[7] for r in bed], [r[8] or b"" for r in bed])
    assert opened.ok.tolist() == [True, False, True]
    rates = [(None if isnan(h) else h, None if isnan(r) else r) for h, r in zip(opened.hr, opened.rr, strict=True)]
    assert [(*row[:3], row[5], *rate) for row, rate in zip(bed, rates, strict=True)] == [
        (ts, beds[0], True, 0.25, 71.3, 15.7),  # movement a real (float4), read back as text: the same digits
        (ts + 1, beds[1], False, None, None, None),
        (ts + 2, beds[2], True, None, 58.0, None),
    ]
    assert scalar_rows == [(ts + 3, "battery", 87.0), (ts + 4, "gas", 3.5)]
    assert [row[1:3] for row in sealed] == [(None, None)] * 2  # a person's whereabouts: never in clear
    locations = [(t, *vault.open_position(enc, column=LOCATION_POSITION), acc) for t, _, _, acc, enc in sealed]
    assert locations == [(ts + 5, 30.7123456, 111.2987654, 12.5), (ts + 6, -30.5, -111.25, None)]
    assert accel == [(ts + 7, 50, [1, -2, 256, -32768, 32767, 0])]


def test_bad_and_unknown_messages_are_parked_and_their_neighbours_stored(
    db: str, vault: Vault, world: LoadWorld
) -> None:
    ts = now_ms()
    good = [_bed(world, i, ts) for i in range(3)]
    body = b",".join(m.encode(msg) for msg in good)
    bad = b'{"t":"bed","dev":"%s","ts":%d,"presence":"maybe"}' % (world.gateways[0].beds[0].encode(), ts)
    unknown = b'{"t":"battery","dev":"NOT-REGISTERED","ts":%d,"level":5}' % ts
    payload = b'{"v":1,"epoch":9,"seq":0,"sent":%d,"msgs":[%s,%s,%s]}' % (ts, body, bad, unknown)
    broken = Received(_topic(world), b'{"v":1,"epoch":9,"seq":"one"')
    with psycopg.connect(db, autocommit=True) as conn:
        result = _store(vault).write(conn, [Received(_topic(world), payload), broken])
        parked = conn.execute(
            "SELECT kind::text, reason, context->>'index', payload_enc, payload FROM parked_messages WHERE gateway = %s"
            " ORDER BY id",
            (world.gateways[0].gateway_id,),
        ).fetchall()
    assert result.rows == 3
    assert dict(result.rejected) == {"bad_message": 1, "unknown_device": 1, "bad_frame": 1}
    by_index = {p[2]: p for p in parked}
    assert set(by_index) == {"3", "4", None}
    assert by_index["3"][0] == "dead_letter"
    assert "presence" in by_index["3"][1]
    assert all(p[4] is None for p in parked)  # what a device sent is never kept in clear
    assert vault.open_bytes(by_index["3"][3], column=PARKED_PAYLOAD) == bad
    assert by_index["4"][:2] == ("quarantine", "msgs[4]: unknown device 'NOT-REGISTERED'")
    assert by_index[None][0] == "dead_letter"
    assert vault.open_bytes(by_index[None][3], column=PARKED_PAYLOAD) == broken.payload
    assert stored_readings(db, world) == 3


def test_a_frame_the_database_refuses_is_parked_and_the_rest_of_the_batch_stored(
    db: str, vault: Vault, world: LoadWorld
) -> None:
    ts = now_ms()
    frames = [_frame(world, seq, [_bed(world, seq, ts)], epoch=10) for seq in range(3)]
    beds = world.gateways[0].beds
    refused = m.BedSample(dev=beds[1], ts=ts + 50, presence=True, move=0.95)  # valid on the wire
    frames[1] = _frame(world, 1, [refused], epoch=10)
    with psycopg.connect(db) as conn:  # one outer transaction, rolled back: the constraint never escapes
        conn.execute("ALTER TABLE bed_readings ADD CONSTRAINT test_move_below_09 CHECK (movement < 0.9)")
        result = _store(vault).write(conn, frames)
        stored = conn.execute(
            "SELECT count(*) FROM bed_readings r JOIN devices d ON d.id = r.device_id WHERE d.institution_id = %s",
            (world.institution_id,),
        ).fetchone()
        reasons = conn.execute(
            "SELECT reason FROM parked_messages WHERE topic = %s ORDER BY id", (_topic(world),)
        ).fetchall()
        conn.rollback()
    assert (result.frames_new, result.rows, dict(result.rejected)) == (2, 2, {"db_refused": 1})
    assert stored == (2,)
    assert len(reasons) == 1
    assert reasons[0][0].startswith("database refused: 23514")


def test_a_bug_on_one_frame_parks_that_frame_only(
    db: str, vault: Vault, world: LoadWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = world.gateways[0].beds[2]
    real = rows_module.add_beds

    def failing(rows: Any, beds: Any, device_ids: Any) -> list[int]:
        if any(bed.dev == poisoned for bed in beds):
            raise RuntimeError("simulated bug")
        return real(rows, beds, device_ids)

    monkeypatch.setattr(store_module, "add_beds", failing)
    ts = now_ms()
    frames = [_frame(world, seq, [_bed(world, seq, ts)], epoch=11) for seq in range(4)]
    with psycopg.connect(db, autocommit=True) as conn:
        result = _store(vault).write(conn, frames)
    assert (result.frames_new, result.rows, dict(result.rejected)) == (3, 3, {"internal_error": 1})
    reason = scalar(db, "SELECT reason FROM parked_messages WHERE topic = %s", (_topic(world),))
    assert reason == "ingest error: RuntimeError: simulated bug"


def test_touched_hours_are_recorded_for_the_rollups(db: str, vault: Vault, world: LoadWorld) -> None:
    now = now_ms()
    old = now - 5 * HOUR_MS
    msgs: list[m.DeviceMessage] = [_bed(world, 0, old), _bed(world, 1, now)]
    with psycopg.connect(db, autocommit=True) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) FROM rollup_pending").fetchone()
        assert before is not None
        _store(vault).write(conn, [_frame(world, 0, msgs, epoch=12)])
        rows = conn.execute("SELECT hours, devices FROM rollup_pending WHERE id > %s", (before[0],)).fetchall()
        device = conn.execute("SELECT id FROM devices WHERE code = %s", (world.gateways[0].beds[0],)).fetchone()
    assert device is not None
    assert len(rows) == 1
    pairs = set(zip(rows[0][0], rows[0][1], strict=True))
    # an hour that is over is recorded per device; the current hour once, for all devices (device 0)
    assert pairs == {(old // HOUR_MS, device[0]), (now // HOUR_MS, 0)}


def _press(world: LoadWorld, seq: int, ts: int, *, epoch: int) -> Received:
    gateway = world.gateways[0]
    frame = m.Frame(
        v=1, epoch=epoch, seq=seq, sent=ts, msgs=[m.Button(dev=gateway.button, ts=ts, action=m.ButtonAction.PRESS)]
    )
    return Received(_topic(world, alarm=True), m.encode(frame))


def _round_trips(trace: str) -> int:
    """How often the client sent and then waited for the server's answer: in libpq's trace, each run of
    frontend messages (F) followed by backend messages (B)."""
    directions = [line[0] for line in trace.splitlines() if line[:2] in ("F\t", "B\t")]
    return sum(1 for pair in pairwise(directions) if pair == ("F", "B"))


def test_an_alarm_batch_is_written_in_two_round_trips(db: str, vault: Vault, world: LoadWorld, tmp_path: Path) -> None:
    ts = now_ms()
    store = _store(vault)
    trace = tmp_path / "libpq.trace"
    with psycopg.connect(db, autocommit=True) as conn:
        store.write(conn, [_press(world, 0, ts, epoch=12)])  # the registry's cache: gateway and device known
        with trace.open("w") as out:
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            result = store.write(conn, [_press(world, seq, ts + seq, epoch=12) for seq in (1, 2, 3)])
            conn.pgconn.untrace()
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert (result.frames_new, result.events) == (3, 3)
    assert _round_trips(trace.read_text()) == 2
    inbox = scalar(db, "SELECT count(*) FROM alarm_inbox a JOIN devices d ON d.id = a.device_id"
                   " WHERE d.code = %s AND a.event_time >= to_timestamp(%s / 1000.0)",
                   (world.gateways[0].button, ts))  # fmt: skip
    assert inbox == 4


def test_an_alarm_frame_the_database_refuses_leaves_the_others_stored(db: str, vault: Vault, world: LoadWorld) -> None:
    ts = now_ms()
    refused_ts = ts + 2  # the second of three presses breaks a constraint added for the test
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE device_events ADD CONSTRAINT test_no_such_time"
            f" CHECK (time <> to_timestamp({refused_ts} / 1000.0))"
        )
        try:
            result = _store(vault).write(conn, [_press(world, seq, ts + seq, epoch=13) for seq in (1, 2, 3)])
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        finally:
            conn.execute("ALTER TABLE device_events DROP CONSTRAINT test_no_such_time")
    assert (result.frames_new, result.events, dict(result.rejected)) == (2, 2, {"db_refused": 1})
    kept = scalar(db, "SELECT array_agg(extract(epoch FROM event_time) * 1000 ORDER BY event_time)"
                  " FROM alarm_inbox a JOIN devices d ON d.id = a.device_id"
                  " WHERE d.code = %s AND a.event_time >= to_timestamp(%s / 1000.0)",
                  (world.gateways[0].button, ts))  # fmt: skip
    assert [round(float(v)) for v in kept] == [ts + 1, ts + 3]


def test_a_low_battery_keeps_its_level_into_the_alarm_inbox(db: str, vault: Vault, world: LoadWorld) -> None:
    """The level a gateway sends with a low battery goes into the event's detail for the alarm engine; a fault
    without one (an older gateway, another kind of fault) has no level key; a level on another kind of fault is
    parked as a bad message, its neighbours stored."""
    button = world.gateways[0].button
    ts = now_ms()
    low = m.DeviceFault(dev=button, ts=ts, fault=m.FaultKind.LOW_BATTERY, active=True, level=12)
    old = m.DeviceFault(dev=button, ts=ts + 1, fault=m.FaultKind.LOW_BATTERY, active=True)
    offline = m.DeviceFault(dev=button, ts=ts + 2, fault=m.FaultKind.OFFLINE, active=True)
    wrong = b'{"t":"fault","dev":"%s","ts":%d,"fault":"tamper","active":true,"level":7}' % (button.encode(), ts + 3)
    body = b",".join([*(m.encode(msg) for msg in (low, old, offline)), wrong])
    payload = b'{"v":1,"epoch":14,"seq":0,"sent":%d,"msgs":[%s]}' % (ts + 3, body)
    with psycopg.connect(db, autocommit=True) as conn:
        result = _store(vault).write(conn, [Received(_topic(world, alarm=True), payload)])
        inbox = conn.execute(
            "SELECT a.kind, a.detail FROM alarm_inbox a JOIN devices d ON d.id = a.device_id"
            " WHERE d.code = %s AND a.event_time >= to_timestamp(%s / 1000.0) ORDER BY a.event_time",
            (button, ts),
        ).fetchall()
        events = conn.execute(
            "SELECT e.detail FROM device_events e JOIN devices d ON d.id = e.device_id"
            " WHERE d.code = %s AND e.time >= to_timestamp(%s / 1000.0) ORDER BY e.time",
            (button, ts),
        ).fetchall()
        reason = conn.execute(
            "SELECT reason FROM parked_messages WHERE gateway = %s AND context->>'index' = '3'"
            " ORDER BY id DESC LIMIT 1",
            (world.gateways[0].gateway_id,),
        ).fetchone()
    assert (result.events, dict(result.rejected)) == (3, {"bad_message": 1})
    assert inbox == [
        ("fault", {"fault": "low_battery", "active": True, "level": 12}),
        ("fault", {"fault": "low_battery", "active": True}),
        ("fault", {"fault": "offline", "active": True}),
    ]
    assert [e[0] for e in events] == [detail for _, detail in inbox]
    assert reason is not None
    assert "`level` is for a low_battery fault only, not tamper" in reason[0]
