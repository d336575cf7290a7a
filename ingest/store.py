"""Writes a batch of received MQTT messages in one transaction, exactly once per frame.

The steps of :meth:`BatchStore.write`, all in one transaction:

1. frame keys ``(gateway, epoch, seq)`` go into ``uplink_frames`` (its primary key) with
   ``ON CONFLICT DO NOTHING``; only frames whose key was new this time have their rows written, once even
   when two copies of a frame are in the same batch;
2. telemetry rows by binary ``COPY``; alarm-class messages into ``device_events`` and ``alarm_inbox``,
   then ``NOTIFY alarm_inbox`` (delivered to alerting at commit). A person's position (a wristband's fix, an
   SOS press's place) is sealed with the data key on the way (``position_enc``), never stored in clear;
3. messages that cannot be stored are parked with their raw bytes (sealed with the data key) and reason;
4. gateway status (birth, heartbeat, death) updates the gateway's row: its liveness by the database's clock,
   the order of its statuses by the gateway's (:meth:`BatchStore._status`);
5. the (hour, device) pairs the batch touched go to ``rollup_pending`` so that the roll-ups of hours
   already computed are recomputed (see ``rollups.py``).

Before it starts, the batch drops what changed in the registry since the last one (``Registry.refresh``). Rows
that other batches may write too are locked in one order by every batch, so two batches never deadlock: gateway
rows (statuses, applied first) by id, then frame keys in key order.

On a connection in autocommit mode (the lanes'), a batch that needs no COPY (a few frames of alarm-class
messages, statuses: the alarm lane) is written in pipeline mode with an explicit BEGIN, in two round trips
to the database instead of four: BEGIN with the frame claims, whose answer decides what is written, then
the rest with COMMIT.

The caller acknowledges the MQTT messages only after :meth:`write` returns. If the database rejects the
batch for its data (SQLSTATE classes 22 and 23), or the code fails on it, the batch is written again frame
by frame, and a frame that still fails is parked whole with the reason, so one bad frame never blocks the
others.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import msgspec
from psycopg import errors
from psycopg.pq import TransactionStatus

from eldercare.devices import messages as m
from eldercare.devices.topics import Channel
from eldercare.ingest.decode import (
    BadMessage,
    Decoded,
    DecodedFrame,
    DecodedStatus,
    Incoming,
    Received,
    Undecodable,
    decode,
)
from eldercare.ingest.registry import Conn, GatewayRef, Registry
from eldercare.ingest.rows import COPY_SIGNATURE, COPY_TRAILER, HOUR_MS, Rows, add_beds, add_telemetry, copy_rows
from eldercare.platform.crypto import EVENT_POSITION, INBOX_POSITION, PARKED_PAYLOAD, Vault

log = logging.getLogger(__name__)

# ms, device, gateway, institution, kind, detail (JSON), sent ms, position (lat, lon: sealed when stored)
Event = tuple[int, int, int, int, str, str, int, tuple[float, float] | None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CLAIMS_TABLE = (
    "CREATE TEMP TABLE frame_claims"
    " (sent_ms bigint, gateway_pk bigint, epoch bigint, seq bigint, alarm boolean, n_msgs integer)"
)
_CLAIM_ROW = struct.Struct("!hiqiqiqiqi?ii")
_FEW_FRAMES = 16


@dataclass(slots=True)
class WriteResult:
    frames_new: int = 0
    frames_duplicate: int = 0
    rows: int = 0
    events: int = 0
    statuses: int = 0
    parked: Counter[str] = field(default_factory=Counter)  # by kind: dead_letter, quarantine
    rejected: Counter[str] = field(default_factory=Counter)  # by cause, for metrics
    sent_ms: list[int] = field(default_factory=list)  # of the frames stored now, for the lag

    def merge(self, other: WriteResult) -> None:
        self.frames_new += other.frames_new
        self.frames_duplicate += other.frames_duplicate
        self.rows += other.rows
        self.events += other.events
        self.statuses += other.statuses
        self.parked.update(other.parked)
        self.rejected.update(other.rejected)
        self.sent_ms.extend(other.sent_ms)


@dataclass(slots=True)
class _Parked:
    kind: str  # dead_letter | quarantine
    cause: str
    topic: str
    payload: bytes
    reason: str
    institution: str | None
    gateway: str | None
    context: dict[str, Any]


def _event_detail(message: m.DeviceMessage) -> tuple[str, dict[str, Any], tuple[float, float] | None]:
    """An alarm-class message's kind, its detail (kept in clear: what the alarm rules read) and the position it
    carries, if any (sealed)."""
    match message:
        case m.Button(action=action):
            return "button", {"action": action.value}, None
        case m.Fall(source=source, confidence=confidence):
            return "fall", {"source": source, "confidence": confidence}, None
        case m.Sos(lat=lat, lon=lon):
            return "sos", {}, None if lat is None or lon is None else (lat, lon)
        case m.BedExit(back=back):
            return "bed_exit", {"back": back}, None
        case m.EnvAlarm(kind=kind, active=active):
            return "env_alarm", {"kind": kind, "active": active}, None
        case m.DeviceFault(fault=fault, active=active, level=level):
            fault_detail: dict[str, Any] = {"fault": fault.value, "active": active}
            if level is not None:  # a low battery's level (%), from a gateway that sends it: staff see how low
                fault_detail["level"] = level
            return "fault", fault_detail, None
    raise AssertionError(message)  # pragma: no cover - telemetry never reaches here


class BatchStore:
    """Owns nothing but its cache; the connection is passed in so the caller controls reconnects."""

    def __init__(self, *, registry: Registry, vault: Vault) -> None:
        self._vault = vault
        self._registry = registry

    def write(self, conn: Conn, items: Sequence[Incoming], decoded: Sequence[Decoded] | None = None) -> WriteResult:
        pairs = list(zip(items, decoded if decoded is not None else [decode(i) for i in items], strict=True))
        try:
            if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE and _without_copy(pairs):
                return self._write_pipelined(conn, pairs)
            with conn.transaction():
                return self._write(conn, pairs)
        except (errors.DataException, errors.IntegrityError) as exc:
            reason, cause = f"database refused: {exc.sqlstate} {exc.diag.message_primary}", "db_refused"
        except (errors.Error, MemoryError):
            raise  # the database is unavailable or the process is in trouble: the caller retries
        except Exception as exc:  # a bug in ingest: park what it chokes on, keep the rest flowing
            log.exception("ingest failed on a batch of %d; retrying frame by frame", len(pairs))
            reason, cause = f"ingest error: {type(exc).__name__}: {exc}", "internal_error"
        if len(pairs) == 1:
            item, _ = pairs[0]
            log.warning("parking a frame that cannot be stored: %s", reason)
            result = WriteResult()
            with conn.transaction():
                self._park(
                    conn, [_Parked("dead_letter", cause, item.topic, item.payload, reason, None, None, {})], result
                )
            return result
        total = WriteResult()
        for item, dec in pairs:
            total.merge(self.write(conn, [item], [dec]))
        return total

    def write_in_transaction(self, conn: Conn, items: Sequence[Incoming]) -> WriteResult:
        """Like :meth:`write`, inside a transaction the caller holds, without the frame-by-frame retry."""
        return self._write(conn, [(item, decode(item)) for item in items])

    def _write_pipelined(self, conn: Conn, pairs: Sequence[tuple[Incoming, Decoded]]) -> WriteResult:
        """:meth:`_write` in pipeline mode: BEGIN goes with the claims (whose fetch is the first sync), COMMIT
        with the rest (the pipeline's exit is the second). On any error the transaction is rolled back here, so
        the caller finds the connection idle, as after a failed ``conn.transaction()``."""
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                result = self._write(conn, pairs, pipelined=True)
                conn.execute("COMMIT")
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()
            raise
        return result

    def _write(self, conn: Conn, pairs: Sequence[tuple[Incoming, Decoded]], *, pipelined: bool = False) -> WriteResult:
        self._registry.refresh()
        result = WriteResult()
        parked: list[_Parked] = []
        frames = self._sort(conn, pairs, parked, result)
        claimed = self._claim_frames(conn, frames)
        rows = Rows(self._vault)
        events: list[Event] = []
        for item, frame, gateway in frames:
            key = (gateway.pk, frame.epoch, frame.seq)
            if key not in claimed:
                result.frames_duplicate += 1
                continue
            claimed.discard(key)  # a second copy of the frame in this batch is a duplicate too
            result.frames_new += 1
            result.sent_ms.append(frame.sent)
            context = {"epoch": frame.epoch, "seq": frame.seq, "sent": frame.sent}
            inst, gw = frame.topic.institution, frame.topic.gateway
            parked.extend(_dead(item, bad, inst, gw, {**context, "index": bad.index}) for bad in frame.bad)
            for index, code, raw in self._frame_rows(conn, frame, gateway, rows, events):
                cause, why = self._registry.device_reason(gateway.institution_id, code)  # unknown, or retired
                ctx = {**context, "index": index}
                parked.append(_Parked("quarantine", cause, item.topic, raw, f"msgs[{index}]: {why}", inst, gw, ctx))
        if pipelined:
            assert not rows.count(), "a pipelined batch has no rows to COPY"  # see _without_copy
            self._rest(conn, events, parked, result, rows.touched)
        else:
            with conn.cursor() as cur:
                copy_rows(cur, rows)
            with conn.pipeline():  # the rest in one round trip
                self._rest(conn, events, parked, result, rows.touched)
        result.rows = rows.count()
        result.events = len(events)
        return result

    def _rest(
        self,
        conn: Conn,
        events: Sequence[Event],
        parked: Sequence[_Parked],
        result: WriteResult,
        touched: set[tuple[int, int]],
    ) -> None:
        self._events(conn, events)
        self._park(conn, parked, result)
        self._pending_rollups(conn, touched)

    def _sort(
        self, conn: Conn, pairs: Sequence[tuple[Incoming, Decoded]], parked: list[_Parked], result: WriteResult
    ) -> list[tuple[Incoming, DecodedFrame, GatewayRef]]:
        """Park what cannot be stored, apply gateway status, return the frames of known gateways."""
        frames: list[tuple[Incoming, DecodedFrame, GatewayRef]] = []
        statuses: list[tuple[int, m.StatusMessage]] = []
        for item, dec in pairs:
            if isinstance(dec, Undecodable):
                t = dec.topic
                parked.append(_dead(item, dec.bad, t.institution if t else None, t.gateway if t else None, {}))
                continue
            gateway = self._registry.gateway(conn, dec.topic.institution, dec.topic.gateway)
            if gateway is None or gateway.revoked:
                cause = "unknown_gateway" if gateway is None else "revoked_gateway"
                reason = cause.replace("_", " ")
                inst, gw = dec.topic.institution, dec.topic.gateway
                parked.append(_Parked("quarantine", cause, item.topic, item.payload, reason, inst, gw, {}))
                continue
            if isinstance(dec, DecodedStatus):
                statuses.append((gateway.pk, dec.status))
                continue
            frames.append((item, dec, gateway))
        # Gateway rows are updated in the order of their ids (each gateway's statuses in the order they came): two
        # batches, of two lanes or processes, that update the same gateways then lock them in the same order and
        # never wait for each other in a cycle (a deadlock: PostgreSQL aborts one after a second, and it is retried)
        statuses.sort(key=itemgetter(0))
        for gateway_pk, status in statuses:
            self._status(conn, gateway_pk, status)
        result.statuses += len(statuses)
        return frames

    def _frame_rows(
        self, conn: Conn, frame: DecodedFrame, gateway: GatewayRef, rows: Rows, events: list[Event]
    ) -> list[tuple[int, str, bytes]]:
        """Add a frame's readings and events; return (index, code, raw message) of those from unknown devices."""
        unknown: list[tuple[int, str, bytes]] = []
        registry, institution = self._registry, gateway.institution_id
        if frame.beds:
            ids = registry.device_ids(conn, institution, [bed.dev for bed in frame.beds])
            for position in add_beds(rows, frame.beds, ids):
                bed = frame.beds[position]
                unknown.append((position, bed.dev, msgspec.json.encode(bed)))
        if frame.messages:
            ids = registry.device_ids(conn, institution, [msg.dev for msg in frame.messages])
            for position, (msg, device_id) in enumerate(zip(frame.messages, ids, strict=True)):
                if device_id is None:
                    unknown.append((frame.index(position), msg.dev, m.encode(msg)))
                elif not add_telemetry(rows, msg, device_id):
                    kind, detail, at = _event_detail(msg)
                    detail_json = json.dumps(detail, separators=(",", ":"))
                    events.append((msg.ts, device_id, gateway.pk, institution, kind, detail_json, frame.sent, at))
                    rows.touched.add((msg.ts // HOUR_MS, device_id))
        return unknown

    def replay_message(self, conn: Conn, *, topic: str, raw: bytes, sent_ms: int) -> str | None:
        """Store one parked device message again (the frame it came in is already recorded).

        Returns None when stored, or the reason it still cannot be. Runs inside the caller's transaction.
        """
        wrapped = Received(topic, b'{"v":1,"epoch":0,"seq":0,"sent":%d,"msgs":[%s]}' % (sent_ms, raw))
        decoded = decode(wrapped)
        if isinstance(decoded, Undecodable):
            return decoded.bad.reason
        if not isinstance(decoded, DecodedFrame):
            return "not a device message"
        if decoded.bad:
            return decoded.bad[0].reason
        gateway = self._registry.gateway(conn, decoded.topic.institution, decoded.topic.gateway)
        if gateway is None or gateway.revoked:
            return "unknown gateway" if gateway is None else "revoked gateway"
        rows = Rows(self._vault)
        events: list[Event] = []
        unknown = self._frame_rows(conn, decoded, gateway, rows, events)
        if unknown:
            return self._registry.device_reason(gateway.institution_id, unknown[0][1])[1]
        with conn.cursor() as cur:
            copy_rows(cur, rows)
        self._events(conn, events)
        self._pending_rollups(conn, rows.touched)
        return None

    @staticmethod
    def _claim_frames(
        conn: Conn, frames: Sequence[tuple[Incoming, DecodedFrame, GatewayRef]]
    ) -> set[tuple[int, int, int]]:
        """Insert the frame keys; return those that were new. A few go as arrays in one statement (one round
        trip: the alarm lane); many by binary COPY to a temporary table, then one INSERT ... ON CONFLICT
        (psycopg's array parameters cost ~25 µs a frame, measured). Keys are inserted in their order: a key another
        transaction inserted and has not committed yet is waited for, so two batches holding copies of the same
        frames (a gateway's resends, shared out to two processes) would otherwise deadlock. Copies of a frame in the
        batch keep their order (the position in the batch breaks the tie), so the first copy is the one claimed."""
        if not frames:
            return set()
        if len(frames) <= _FEW_FRAMES:
            return BatchStore._claim_few(conn, frames)
        # Checked every time: created inside a transaction that rolls back, the table is gone again.
        missing = conn.execute("SELECT to_regclass('pg_temp.frame_claims') IS NULL").fetchone()
        if missing is None or missing[0]:
            conn.execute(_CLAIMS_TABLE)
        alarm = Channel.ALARM
        data = [
            _CLAIM_ROW.pack(6, 8, f.sent, 8, g.pk, 8, f.epoch, 8, f.seq, 1, f.topic.channel is alarm, 4, f.n_msgs)
            for _, f, g in frames
        ]
        with conn.cursor() as cur:
            with cur.copy("COPY frame_claims FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_SIGNATURE + b"".join(data) + COPY_TRAILER)
            claimed = cur.execute(
                "INSERT INTO uplink_frames (sent_at, gateway_pk, epoch, seq, lane, n_msgs)"
                " SELECT to_timestamp(sent_ms / 1000.0), gateway_pk, epoch, seq,"
                " CASE WHEN alarm THEN 'alarm' ELSE 'telemetry' END, n_msgs FROM frame_claims"
                # ctid: the order of the rows COPY wrote into the table TRUNCATE emptied, the batch's
                " ORDER BY gateway_pk, epoch, seq, ctid ON CONFLICT DO NOTHING RETURNING gateway_pk, epoch, seq"
            ).fetchall()
            # TRUNCATE, not DELETE: autovacuum never visits temporary tables, so deleted rows would pile up
            # and every later INSERT ... SELECT would read them all again
            cur.execute("TRUNCATE frame_claims")
        return {(r[0], r[1], r[2]) for r in claimed}

    @staticmethod
    def _claim_few(
        conn: Conn, frames: Sequence[tuple[Incoming, DecodedFrame, GatewayRef]]
    ) -> set[tuple[int, int, int]]:
        columns: list[list[object]] = [[], [], [], [], [], []]
        for _, frame, gateway in frames:
            lane = "alarm" if frame.topic.channel is Channel.ALARM else "telemetry"
            for column, value in zip(
                columns, (frame.sent, gateway.pk, frame.epoch, frame.seq, lane, frame.n_msgs), strict=True
            ):
                column.append(value)
        claimed = conn.execute(
            "INSERT INTO uplink_frames (sent_at, gateway_pk, epoch, seq, lane, n_msgs)"
            " SELECT to_timestamp(s / 1000.0), g, e, q, l, n FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[],"
            " %s::bigint[], %s::text[], %s::int[]) WITH ORDINALITY AS u(s, g, e, q, l, n, i)"
            " ORDER BY g, e, q, i ON CONFLICT DO NOTHING RETURNING gateway_pk, epoch, seq",
            columns,
        ).fetchall()
        return {(r[0], r[1], r[2]) for r in claimed}

    def _events(self, conn: Conn, events: Sequence[Event]) -> None:
        if not events:
            return

        def seal(position: tuple[float, float] | None, column: str) -> bytes | None:
            return None if position is None else self._vault.seal_position(*position, column=column)

        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO device_events (time, device_id, gateway_pk, kind, detail, position_enc)"
                " VALUES (to_timestamp(%s / 1000.0), %s, %s, %s, %s::jsonb, %s)",
                [(ts, d, g, k, detail, seal(at, EVENT_POSITION)) for ts, d, g, _, k, detail, _, at in events],
            )
            cur.executemany(
                "INSERT INTO alarm_inbox"
                " (event_time, device_id, gateway_pk, institution_id, kind, detail, published_at, position_enc) VALUES"
                " (to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s::jsonb, to_timestamp(%s / 1000.0), %s)",
                [(ts, d, g, i, k, text, sent, seal(at, INBOX_POSITION)) for ts, d, g, i, k, text, sent, at in events],
            )
        conn.execute("NOTIFY alarm_inbox")

    @staticmethod
    def _pending_rollups(conn: Conn, touched: set[tuple[int, int]]) -> None:
        """Record what this batch touched, for the roll-up job. Hours not yet over are recorded once, as
        (hour, 0): the job recomputes them whole if they were rolled up before this batch committed."""
        if not touched:
            return
        current = int(time.time() * 1000) // HOUR_MS
        pairs = {(hour, 0) if hour >= current else (hour, device) for hour, device in touched}
        conn.execute(
            "INSERT INTO rollup_pending (hours, devices) VALUES (%s::bigint[], %s::bigint[])",
            ([p[0] for p in pairs], [p[1] for p in pairs]),
        )

    @staticmethod
    def _status(conn: Conn, gateway_pk: int, status: m.StatusMessage) -> None:
        """Record a gateway status: liveness by the database's clock, the order of statuses by the gateway's.

        ``last_seen_at`` is when the platform heard from the gateway (``now()``, the database's time, which the
        alarm ticker compares it with), never the gateway's ``ts``: a gateway whose clock is slow would be offline
        for good, one whose clock is fast would pin it in the future. A birth, a heartbeat and a clean goodbye are
        signs of life; a last will is not. ``ts`` orders the statuses (``status_sent_at``, migration 0019):

        - a birth starts a connection and always applies, unless it is one already seen (a retained birth sent
          again when ingest subscribes again: the same ``ts``), which changes nothing, liveness included;
        - a heartbeat always counts as a sign of life; it becomes the status only if made after the status held
          (one delivered after the goodbye that followed it leaves the goodbye);
        - a clean goodbye ("goodbye": only the gateway's silence raises gateway_offline, so an update's restart
          raises nothing) applies if made after the status held; a retained one sent again changes nothing;
        - a last will ("death": raises gateway_offline at once) carries the time the will was registered, when
          its connection began, before that connection's birth. It is ignored when a later connection's birth has
          been seen: when its ``ts`` is at or before the birth before the latest (``prior_birth_sent_at``). A will
          the broker delivers after the gateway reconnected then never marks a live gateway dead.
        """
        sent = _EPOCH + timedelta(milliseconds=status.ts)  # exact: a retained status sent again compares equal
        match status:
            case m.Birth():
                conn.execute(_BIRTH, {"sent": sent, "pk": gateway_pk})
            case m.Heartbeat():
                conn.execute(_HEARTBEAT, {"sent": sent, "pk": gateway_pk, "payload": m.encode(status).decode()})
            case m.Death(clean=True):
                conn.execute(_GOODBYE, {"sent": sent, "pk": gateway_pk})
            case m.Death():
                conn.execute(_WILL, {"sent": sent, "pk": gateway_pk})

    def _park(self, conn: Conn, parked: Sequence[_Parked], result: WriteResult) -> None:
        """Park what cannot be stored, its bytes sealed: they are what a device sent (heart rates, positions)."""
        if not parked:
            return
        seal = self._vault.seal_bytes
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO parked_messages (kind, topic, payload_enc, reason, institution, gateway, context)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)",
                [
                    (
                        p.kind,
                        p.topic,
                        seal(p.payload, column=PARKED_PAYLOAD),
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
            result.rejected[p.cause] += 1


_BIRTH = (
    "UPDATE gateways SET last_seen_at = now(), last_status = 'birth', status_sent_at = %(sent)s,"
    " birth_sent_at = greatest(birth_sent_at, %(sent)s),"
    " prior_birth_sent_at = CASE WHEN birth_sent_at IS NULL OR %(sent)s > birth_sent_at THEN birth_sent_at"
    " ELSE greatest(prior_birth_sent_at, %(sent)s) END"
    " WHERE id = %(pk)s AND %(sent)s IS DISTINCT FROM birth_sent_at AND %(sent)s IS DISTINCT FROM prior_birth_sent_at"
)
_HEARTBEAT = (  # made after the status held: it becomes the status; in any case a sign of life
    "UPDATE gateways SET last_seen_at = now(), last_heartbeat = %(payload)s::jsonb,"
    " last_status = CASE WHEN status_sent_at IS NULL OR %(sent)s > status_sent_at THEN 'heartbeat'"
    " ELSE last_status END,"
    " status_sent_at = CASE WHEN status_sent_at IS NULL OR %(sent)s > status_sent_at THEN %(sent)s"
    " ELSE status_sent_at END"
    " WHERE id = %(pk)s"
)
_GOODBYE = (
    "UPDATE gateways SET last_seen_at = now(), last_status = 'goodbye', status_sent_at = %(sent)s"
    " WHERE id = %(pk)s AND (status_sent_at IS NULL OR %(sent)s > status_sent_at)"
)
_WILL = (
    "UPDATE gateways SET last_status = 'death', status_sent_at = %(sent)s"
    " WHERE id = %(pk)s AND (prior_birth_sent_at IS NULL OR %(sent)s > prior_birth_sent_at)"
)


def _without_copy(pairs: Sequence[tuple[Incoming, Decoded]]) -> bool:
    """True when writing ``pairs`` needs no COPY (which pipeline mode cannot do): few enough frames to claim
    with one INSERT, and no telemetry in them."""
    if len(pairs) > _FEW_FRAMES:
        return False
    for _, dec in pairs:
        if isinstance(dec, DecodedFrame) and (dec.beds or not all(map(m.is_alarm_class, dec.messages))):
            return False
    return True


def _dead(
    item: Incoming, bad: BadMessage, institution: str | None, gateway: str | None, context: dict[str, Any]
) -> _Parked:
    return _Parked("dead_letter", bad.cause, item.topic, bad.raw, bad.reason, institution, gateway, context)
