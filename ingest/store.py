"""Writes a batch of received MQTT messages in one transaction, exactly once per frame.

The steps of :meth:`BatchStore.write`, all in one transaction:

1. frame keys ``(gateway, epoch, seq, sent)`` go into ``uplink_frames`` with ``ON CONFLICT DO NOTHING``;
   only the frames whose key was new this time have their rows written (a redelivery writes nothing);
2. telemetry rows by binary ``COPY``; alarm-class messages into ``device_events`` and ``alarm_inbox``,
   then ``NOTIFY alarm_inbox`` (delivered to alerting at commit);
3. messages that cannot be stored are parked with their raw bytes and reason;
4. gateway status (birth, heartbeat, death) updates the gateway's row.

The caller acknowledges the MQTT messages only after :meth:`write` returns. If the database rejects the
batch for its data (SQLSTATE classes 22 and 23), the batch is written again frame by frame, and a frame
that still fails is parked whole with the database's reason, so one bad frame never blocks the others.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import errors

from eldercare.devices import messages as m
from eldercare.devices.topics import Channel
from eldercare.ingest.decode import (
    BadMessage,
    DecodedFrame,
    DecodedStatus,
    Received,
    Undecodable,
    decode,
)
from eldercare.ingest.registry import Conn, Registry

log = logging.getLogger(__name__)


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(slots=True)
class WriteResult:
    frames_new: int = 0
    frames_duplicate: int = 0
    rows: int = 0
    events: int = 0
    parked: Counter[str] = field(default_factory=Counter)  # by reason class
    statuses: int = 0


@dataclass(slots=True)
class _Parked:
    kind: str  # dead_letter | quarantine
    topic: str
    payload: bytes
    reason: str
    institution: str | None
    gateway: str | None
    context: dict[str, Any]


@dataclass(slots=True)
class _Rows:
    bed: list[tuple[datetime, int, bool, float | None, float | None, float | None]] = field(default_factory=list)
    scalar: list[tuple[datetime, int, str, float]] = field(default_factory=list)
    location: list[tuple[datetime, int, float, float, float | None]] = field(default_factory=list)
    accel: list[tuple[datetime, int, int, list[int]]] = field(default_factory=list)
    events: list[tuple[datetime, int, int, int, str, str, datetime]] = field(default_factory=list)

    def count(self) -> int:
        return len(self.bed) + len(self.scalar) + len(self.location) + len(self.accel) + len(self.events)


def _event_detail(message: m.AlarmMessage) -> tuple[str, dict[str, Any]]:
    match message:
        case m.Button(action=action):
            return "button", {"action": action.value}
        case m.Fall(source=source, confidence=confidence):
            return "fall", {"source": source, "confidence": confidence}
        case m.Sos(lat=lat, lon=lon):
            return "sos", {"lat": lat, "lon": lon}
        case m.BedExit(back=back):
            return "bed_exit", {"back": back}
        case m.EnvAlarm(kind=kind, active=active):
            return "env_alarm", {"kind": kind, "active": active}
        case m.DeviceFault(fault=fault, active=active):
            return "fault", {"fault": fault.value, "active": active}
    raise AssertionError(message)  # pragma: no cover - the union is exhaustive


class BatchStore:
    """Owns nothing but its cache; the connection is passed in so the caller controls reconnects."""

    def __init__(self, *, registry: Registry) -> None:
        self._registry = registry

    def write(self, conn: Conn, items: Sequence[Received]) -> WriteResult:
        decoded = [(item, decode(item)) for item in items]
        try:
            with conn.transaction():
                return self._write(conn, decoded)
        except (errors.DataException, errors.IntegrityError) as exc:
            if len(decoded) == 1:
                item, _ = decoded[0]
                log.warning("parking a frame the database refused: %s", exc.diag.message_primary)
                with conn.transaction():
                    result = WriteResult()
                    parked = _Parked(
                        "dead_letter",
                        item.topic,
                        item.payload,
                        f"database refused: {exc.sqlstate} {exc.diag.message_primary}",
                        None,
                        None,
                        {},
                    )
                    self._park(conn, [parked], result)
                    return result
            log.warning("batch refused by the database (%s); writing frame by frame", exc.sqlstate)
        total = WriteResult()
        for item, _ in decoded:
            part = self.write(conn, [item])
            total.frames_new += part.frames_new
            total.frames_duplicate += part.frames_duplicate
            total.rows += part.rows
            total.events += part.events
            total.parked.update(part.parked)
            total.statuses += part.statuses
        return total

    def write_in_transaction(self, conn: Conn, items: Sequence[Received]) -> WriteResult:
        """Like :meth:`write`, inside a transaction the caller holds, without the frame-by-frame retry."""
        return self._write(conn, [(item, decode(item)) for item in items])

    def _write(self, conn: Conn, decoded: Sequence[tuple[Received, object]]) -> WriteResult:
        result = WriteResult()
        parked: list[_Parked] = []
        frames: list[tuple[Received, DecodedFrame, int, int]] = []  # (item, frame, gateway_pk, institution_id)
        for item, dec in decoded:
            if isinstance(dec, Undecodable):
                t = dec.topic
                parked.append(
                    _Parked(
                        "dead_letter",
                        item.topic,
                        item.payload,
                        dec.bad.reason,
                        t.institution if t else None,
                        t.gateway if t else None,
                        {},
                    )
                )
                continue
            assert isinstance(dec, DecodedFrame | DecodedStatus)
            gateway = self._registry.gateway(conn, dec.topic.institution, dec.topic.gateway)
            if gateway is None or gateway.revoked:
                reason = "unknown gateway" if gateway is None else "revoked gateway"
                parked.append(
                    _Parked(
                        "quarantine",
                        item.topic,
                        item.payload,
                        reason,
                        dec.topic.institution,
                        dec.topic.gateway,
                        {},
                    )
                )
                continue
            if isinstance(dec, DecodedStatus):
                self._status(conn, gateway.pk, dec.status)
                result.statuses += 1
                continue
            frames.append((item, dec, gateway.pk, gateway.institution_id))

        new_keys = self._claim_frames(conn, frames)
        rows = _Rows()
        inbox: list[tuple[datetime, int, int, str, str, datetime]] = []
        for item, frame, gateway_pk, institution_id in frames:
            env = frame.envelope
            key = (gateway_pk, env.epoch, env.seq)
            if key not in new_keys:
                result.frames_duplicate += 1
                continue
            result.frames_new += 1
            context = {"epoch": env.epoch, "seq": env.seq, "sent": env.sent}
            parked.extend(self._bad(item, frame, bad, context) for bad in frame.bad)
            codes = {msg.dev for _, msg in frame.messages}
            known = self._registry.devices(conn, institution_id, codes)
            sent = _ts(env.sent)
            for index, msg in frame.messages:
                device_id = known.get(msg.dev)
                if device_id is None:
                    parked.append(
                        _Parked(
                            "quarantine",
                            item.topic,
                            m.encode(msg),
                            f"msgs[{index}]: unknown device {msg.dev!r}",
                            frame.topic.institution,
                            frame.topic.gateway,
                            {**context, "index": index},
                        )
                    )
                    continue
                self._add(rows, inbox, msg, device_id, gateway_pk, institution_id, sent)

        self._copy_rows(conn, rows)
        self._enqueue(conn, inbox)
        self._park(conn, parked, result)
        result.rows = rows.count() - len(rows.events)
        result.events = len(rows.events)
        return result

    def replay_message(self, conn: Conn, *, topic: str, raw: bytes, sent_ms: int) -> str | None:
        """Store one parked device message again (the frame it came in is already recorded).

        Returns None when stored, or the reason it still cannot be. Runs inside the caller's transaction.
        """
        item = Received(topic, b'{"v":1,"epoch":0,"seq":0,"sent":%d,"msgs":[%s]}' % (sent_ms, raw), 0, 0, 0.0)
        decoded = decode(item)
        if isinstance(decoded, Undecodable):
            return decoded.bad.reason
        if not isinstance(decoded, DecodedFrame):
            return "not a device message"
        if decoded.bad:
            return decoded.bad[0].reason
        gateway = self._registry.gateway(conn, decoded.topic.institution, decoded.topic.gateway)
        if gateway is None or gateway.revoked:
            return "unknown gateway" if gateway is None else "revoked gateway"
        rows = _Rows()
        inbox: list[tuple[datetime, int, int, str, str, datetime]] = []
        for _, msg in decoded.messages:
            known = self._registry.devices(conn, gateway.institution_id, {msg.dev})
            if msg.dev not in known:
                return f"unknown device {msg.dev!r}"
            self._add(rows, inbox, msg, known[msg.dev], gateway.pk, gateway.institution_id, _ts(sent_ms))
        self._copy_rows(conn, rows)
        self._enqueue(conn, inbox)
        return None

    @staticmethod
    def _enqueue(conn: Conn, inbox: Sequence[tuple[datetime, int, int, str, str, datetime]]) -> None:
        if not inbox:
            return
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO alarm_inbox (event_time, device_id, institution_id, kind, detail, published_at)"
                " VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
                inbox,
            )
        conn.execute("NOTIFY alarm_inbox")

    @staticmethod
    def _bad(item: Received, frame: DecodedFrame, bad: BadMessage, context: dict[str, Any]) -> _Parked:
        return _Parked(
            "dead_letter",
            item.topic,
            bad.raw,
            bad.reason,
            frame.topic.institution,
            frame.topic.gateway,
            {**context, "index": bad.index},
        )

    @staticmethod
    def _add(  # noqa: PLR0917 - one private call site, keeps the hot loop free of tuple packing
        rows: _Rows,
        inbox: list[tuple[datetime, int, int, str, str, datetime]],
        msg: m.DeviceMessage,
        device_id: int,
        gateway_pk: int,
        institution_id: int,
        sent: datetime,
    ) -> None:
        ts = _ts(msg.ts)
        match msg:
            case m.BedSample():
                rows.bed.append((ts, device_id, msg.presence, msg.hr, msg.rr, msg.move))
            case m.Battery():
                rows.scalar.append((ts, device_id, "battery", float(msg.level)))
            case m.EnvReading():
                rows.scalar.append((ts, device_id, msg.kind, msg.value))
            case m.Location():
                rows.location.append((ts, device_id, msg.lat, msg.lon, msg.acc))
            case m.AccelSamples():
                flat = [v for xyz in msg.xyz for v in xyz]
                rows.accel.append((ts, device_id, msg.hz, flat))
            case _:
                kind, detail = _event_detail(msg)
                detail_json = json.dumps(detail, separators=(",", ":"))
                rows.events.append((ts, device_id, gateway_pk, institution_id, kind, detail_json, sent))
                inbox.append((ts, device_id, institution_id, kind, detail_json, sent))

    @staticmethod
    def _claim_frames(
        conn: Conn, frames: Sequence[tuple[Received, DecodedFrame, int, int]]
    ) -> set[tuple[int, int, int]]:
        if not frames:
            return set()
        sent, gw, epoch, seq, lane, n = [], [], [], [], [], []
        for _, frame, gateway_pk, _ in frames:
            env = frame.envelope
            sent.append(_ts(env.sent))
            gw.append(gateway_pk)
            epoch.append(env.epoch)
            seq.append(env.seq)
            lane.append("alarm" if frame.topic.channel is Channel.ALARM else "telemetry")
            n.append(len(env.msgs))
        claimed = conn.execute(
            "INSERT INTO uplink_frames (sent_at, gateway_pk, epoch, seq, lane, n_msgs)"
            " SELECT * FROM unnest(%s::timestamptz[], %s::bigint[], %s::bigint[], %s::bigint[],"
            " %s::text[], %s::int[])"
            " ON CONFLICT DO NOTHING RETURNING gateway_pk, epoch, seq",
            (sent, gw, epoch, seq, lane, n),
        ).fetchall()
        return {(r[0], r[1], r[2]) for r in claimed}

    @staticmethod
    def _copy_rows(conn: Conn, rows: _Rows) -> None:
        with conn.cursor() as cur:
            if rows.bed:
                with cur.copy(
                    "COPY bed_readings (time, device_id, presence, heart_rate, resp_rate, movement)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["timestamptz", "int8", "bool", "float4", "float4", "float4"])
                    for bed_row in rows.bed:
                        copy.write_row(bed_row)
            if rows.scalar:
                with cur.copy(
                    "COPY device_readings (time, device_id, metric, value) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["timestamptz", "int8", "text", "float4"])
                    for scalar_row in rows.scalar:
                        copy.write_row(scalar_row)
            if rows.location:
                with cur.copy(
                    "COPY locations (time, device_id, lat, lon, accuracy) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["timestamptz", "int8", "float8", "float8", "float4"])
                    for location_row in rows.location:
                        copy.write_row(location_row)
            if rows.accel:
                with cur.copy("COPY accel_chunks (time, device_id, hz, samples) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["timestamptz", "int8", "int2", "int2[]"])
                    for accel_row in rows.accel:
                        copy.write_row(accel_row)
            if rows.events:
                cur.executemany(
                    "INSERT INTO device_events (time, device_id, gateway_pk, kind, detail)"
                    " VALUES (%s, %s, %s, %s, %s::jsonb)",
                    [(t, d, g, k, detail) for t, d, g, _, k, detail, _ in rows.events],
                )

    @staticmethod
    def _status(conn: Conn, gateway_pk: int, status: m.StatusMessage) -> None:
        heartbeat = m.encode(status).decode() if isinstance(status, m.Heartbeat) else None
        conn.execute(
            "UPDATE gateways SET last_seen_at = greatest(last_seen_at, %s), last_status = %s,"
            " last_heartbeat = coalesce(%s::jsonb, last_heartbeat) WHERE id = %s",
            (_ts(status.ts), type(status).__name__.lower(), heartbeat, gateway_pk),
        )

    @staticmethod
    def _park(conn: Conn, parked: Sequence[_Parked], result: WriteResult) -> None:
        if not parked:
            return
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO parked_messages (kind, topic, payload, reason, institution, gateway, context)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)",
                [
                    (
                        p.kind,
                        p.topic,
                        p.payload,
                        p.reason[:2000],
                        p.institution,
                        p.gateway,
                        json.dumps(p.context),
                    )
                    for p in parked
                ],
            )
        for p in parked:
            result.parked[p.kind] += 1
