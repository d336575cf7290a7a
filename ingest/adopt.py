"""Adopting the MQTT sessions of ingest processes that died, so their messages reach the living.

What Mosquitto 2.0.11 does (measured, see ``docs/ingest.md``): a member of a shared subscription whose
persistent session is disconnected keeps its unacknowledged messages *and* keeps getting its share of new
ones, queued until it reconnects; if its session expires they are discarded. So after a SIGKILL nothing is
redelivered to the other members by the broker itself.

Ingest therefore does it: every member (one per lane and process, by MQTT client id) is registered in
``ingest_members`` and holds a PostgreSQL session-level advisory lock on its row while its process
lives. A process that dies loses its database connection and with it the locks. The others poll; a member
whose lock has been free for ``grace_s`` is adopted by whoever takes the lock first: it connects once with the
dead member's client id (resuming its session: the broker resends the unacknowledged messages and the
queued ones), unsubscribes it from the shared topics (no new messages go to it), stores and acknowledges
what it receives, and when nothing has come for ``quiet_s`` after the last acknowledgement, ends the
session (DISCONNECT with session expiry 0) and deletes the member. If the dead process comes back under
the same name first, its CONNECT takes the session over; the adopter's connection ends (Mosquitto 2.0.11
closes it without a reason code) and the adopter lets go. An adopted connection is never re-opened: when it
ends for any reason the lock is released, and the session is adopted again if it is still an orphan.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from eldercare.ingest.lane import Lane, LaneConfig
from eldercare.ingest.metrics import IngestMetrics
from eldercare.ingest.registry import Conn

log = logging.getLogger(__name__)

LOCK_CLASS = 0x696E67  # "ing": the first key of the two-key advisory locks


@dataclass(slots=True)
class _Adopted:
    member_id: int
    lane: Lane
    shared_topics: tuple[str, ...]
    unsubscribed: bool = False


class Membership:
    def __init__(
        self,
        *,
        database_url: str,
        name: str,
        group: str,
        own: Sequence[LaneConfig],
        make_lane: Callable[[LaneConfig], Lane],
        metrics: IngestMetrics,
        poll_s: float = 0.5,
        grace_s: float = 2.0,
        quiet_s: float = 2.0,
    ) -> None:
        self._database_url = database_url
        self._name = name
        self._group = group
        self._own = {config.client_id: config for config in own}
        self._make_lane = make_lane
        self._poll_s, self._grace_s, self._quiet_s = poll_s, grace_s, quiet_s
        self._conn: Conn | None = None
        self._connected_at = 0.0
        self._own_ids: dict[str, int] = {}  # client id -> member id
        self._own_locked: set[int] = set()
        self._free_since: dict[int, float] = {}
        self._adopted: dict[int, _Adopted] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-membership", daemon=True)
        metrics.adopted.set_function(lambda: float(len(self._adopted)))
        self.adoptions = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        for adopted in list(self._adopted.values()):
            adopted.lane.stop()  # the session stays; another process adopts it
        self._adopted.clear()
        if self._conn is not None:
            self._conn.close()

    def adopted_client_ids(self) -> list[str]:
        return [a.lane.config.client_id for a in self._adopted.values()]

    def _run(self) -> None:
        while not self._stopping.wait(self._poll_s):
            try:
                conn = self._connection()
                self._hold_own(conn)
                self._tend_adopted(conn)
                if time.monotonic() - self._connected_at >= self._grace_s:
                    self._adopt_orphans(conn)
            except psycopg.Error as exc:
                log.warning("membership: database unavailable (%s); locks are lost until it returns", exc)
                self._reset()

    def _reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._own_locked.clear()
        self._free_since.clear()

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._reset()
            self._conn = psycopg.connect(
                self._database_url,
                autocommit=True,
                connect_timeout=5,
            )
            self._connected_at = time.monotonic()
            for member_id, adopted in list(self._adopted.items()):  # the locks went with the old connection
                if not self._try_lock(self._conn, member_id):
                    log.warning(
                        "membership: %s was adopted by another process meanwhile", adopted.lane.config.client_id
                    )
                    adopted.lane.stop()
                    del self._adopted[member_id]
        return self._conn

    def _hold_own(self, conn: Conn) -> None:
        """Own members registered (again, if an adopter retired a row meanwhile) and locked."""
        rows = conn.execute(
            "SELECT client_id, id FROM ingest_members WHERE client_id = ANY(%s)", (list(self._own),)
        ).fetchall()
        registered: dict[str, int] = dict(rows)
        for client_id, config in self._own.items():
            member_id = registered.get(client_id)
            if member_id is None:
                row = conn.execute(
                    "INSERT INTO ingest_members (client_id, grp, lane, name) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (client_id) DO UPDATE SET last_started_at = now() RETURNING id",
                    (client_id, self._group, config.kind, self._name),
                ).fetchone()
                assert row is not None
                member_id = row[0]
            old = self._own_ids.get(client_id)
            if old is not None and old != member_id and old in self._own_locked:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, old))
                self._own_locked.discard(old)
            self._own_ids[client_id] = member_id
            if member_id not in self._own_locked and self._try_lock(conn, member_id):
                self._own_locked.add(member_id)

    @staticmethod
    def _try_lock(conn: Conn, member_id: int) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, member_id)).fetchone()
        return bool(row and row[0])

    def _adopt_orphans(self, conn: Conn) -> None:
        rows = conn.execute(
            "SELECT m.id, m.client_id, m.lane FROM ingest_members m WHERE m.grp = %s AND NOT EXISTS ("
            " SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = %s AND l.objid::bigint = m.id)",
            (self._group, LOCK_CLASS),
        ).fetchall()
        now = time.monotonic()
        free = {member_id for member_id, client_id, _ in rows if client_id not in self._own}
        self._free_since = {k: v for k, v in self._free_since.items() if k in free}
        for member_id, client_id, kind in rows:
            if member_id not in free or member_id in self._adopted:
                continue
            first_seen = self._free_since.setdefault(member_id, now)
            if now - first_seen < self._grace_s or not self._try_lock(conn, member_id):
                continue
            template = next((c for c in self._own.values() if c.kind == kind), None)
            if template is None:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, member_id))
                continue
            config = LaneConfig(
                kind=kind,
                client_id=client_id,
                topics=(),
                max_wait_s=template.max_wait_s,
                max_frames=template.max_frames,
                max_rows=template.max_rows,
                session_expiry_s=template.session_expiry_s,
                receive_maximum=template.receive_maximum,
            )
            log.warning("membership: %s is gone; adopting its session to drain it", client_id)
            lane = self._make_lane(config)
            lane.start()
            self._adopted[member_id] = _Adopted(member_id, lane, template.topics)
            self.adoptions += 1

    def _tend_adopted(self, conn: Conn) -> None:
        for member_id, adopted in list(self._adopted.items()):
            lane = adopted.lane
            if lane.mqtt.ended.is_set():  # taken over by its owner, or lost: let go, re-adopt if still orphaned
                log.info("membership: lost the session of %s (%s); letting it go", lane.config.client_id,
                         lane.mqtt.last_error)  # fmt: skip
                self._release(conn, member_id, retire=False)
            elif lane.session_present is False:
                log.info("membership: %s had no session left; removing the member", lane.config.client_id)
                self._release(conn, member_id, retire=True)
            elif lane.session_present and not adopted.unsubscribed:
                adopted.unsubscribed = lane.mqtt.unsubscribe(adopted.shared_topics, timeout=5)
            elif (
                adopted.unsubscribed
                and lane.outstanding() == 0
                and time.monotonic() - lane.last_activity >= self._quiet_s
            ):
                log.info("membership: drained %s; ending its session", lane.config.client_id)
                self._release(conn, member_id, retire=True)

    def _release(self, conn: Conn, member_id: int, *, retire: bool) -> None:
        adopted = self._adopted.pop(member_id)
        adopted.lane.stop(session_expiry_s=0 if retire else None)
        if retire:
            conn.execute("DELETE FROM ingest_members WHERE id = %s", (member_id,))
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, member_id))
