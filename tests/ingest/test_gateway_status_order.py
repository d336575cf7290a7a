"""The order of a gateway's statuses, which its own clock gives, and its liveness, which the database's clock gives.

Each step is what ingest writes for one status message (``BatchStore.write``, against the real database); the
table after it is what the alarm ticker reads: ``last_status`` ('death' raises gateway_offline at once) and
``last_seen_at`` (its silence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.store import BatchStore
from eldercare.platform.crypto import Vault
from eldercare.simulators.load import LoadWorld

from .helpers import now_ms


@dataclass(frozen=True, slots=True)
class Seen:
    status: str | None
    heard: bool  # last_seen_at moved to the database's now() with this status


class _Statuses:
    """The world's first gateway, its statuses written one by one as ingest writes them."""

    def __init__(self, db: str, vault: Vault, world: LoadWorld) -> None:
        self.db = db
        self.gateway = world.gateways[0].gateway_id
        self.topic = topics.uplink(world.institution_code, self.gateway, topics.Channel.STATUS)
        self.store = BatchStore(registry=Registry(retry_s=0), vault=vault)

    def send(self, message: m.StatusMessage) -> Seen:
        with psycopg.connect(self.db, autocommit=True) as conn:
            conn.execute("UPDATE gateways SET last_seen_at = '2001-01-01Z' WHERE gateway_id = %s", (self.gateway,))
            self.store.write(conn, [Received(self.topic, m.encode(message))])
            row = conn.execute(
                "SELECT last_status, last_seen_at, now() FROM gateways WHERE gateway_id = %s", (self.gateway,)
            ).fetchone()
        assert row is not None
        status: str | None = row[0]
        seen: datetime = row[1]
        return Seen(status, seen > datetime.fromisoformat("2001-01-01T00:00:00Z"))


def _birth(ts: int) -> m.Birth:
    return m.Birth(ts=ts, epoch=1, software="t")


def _heartbeat(ts: int) -> m.Heartbeat:
    return m.Heartbeat(ts=ts, queue=m.QueueDepth(alarm=0, telemetry=0))


def test_a_will_delivered_after_the_next_birth_is_ignored_and_the_current_will_counts(
    db: str, vault: Vault, world: LoadWorld
) -> None:
    gw, t = _Statuses(db, vault, world), now_ms() - 600_000
    assert gw.send(_birth(t)) == Seen("birth", heard=True)  # connection 1; its will was registered at t - 5
    assert gw.send(_heartbeat(t + 30_000)) == Seen("heartbeat", heard=True)
    assert gw.send(_birth(t + 60_000)) == Seen("birth", heard=True)  # connection 2, will registered at t + 59_995
    assert gw.send(m.Death(ts=t - 5)) == Seen("birth", heard=False)  # connection 1's will, late: ignored
    assert gw.send(_heartbeat(t + 90_000)) == Seen("heartbeat", heard=True)
    assert gw.send(m.Death(ts=t + 59_995)) == Seen("death", heard=False)  # connection 2 lost: dead at once
    assert gw.send(m.Death(ts=t + 59_995)) == Seen("death", heard=False)  # the retained will again: the same
    assert gw.send(_birth(t + 120_000)) == Seen("birth", heard=True)  # connection 3
    assert gw.send(m.Death(ts=t + 119_995)) == Seen("death", heard=False)


def test_a_status_sent_again_when_ingest_subscribes_again_is_no_sign_of_life(
    db: str, vault: Vault, world: LoadWorld
) -> None:
    gw, t = _Statuses(db, vault, world), now_ms()
    assert gw.send(_birth(t)) == Seen("birth", heard=True)
    assert gw.send(_birth(t)) == Seen("birth", heard=False)  # the retained birth: the gateway may be long gone
    assert gw.send(m.Death(ts=t + 1_000, clean=True)) == Seen("goodbye", heard=True)
    assert gw.send(m.Death(ts=t + 1_000, clean=True)) == Seen("goodbye", heard=False)  # the retained goodbye


def test_a_heartbeat_delivered_after_the_goodbye_that_followed_it_leaves_the_goodbye(
    db: str, vault: Vault, world: LoadWorld
) -> None:
    gw, t = _Statuses(db, vault, world), now_ms()
    assert gw.send(_birth(t)) == Seen("birth", heard=True)
    assert gw.send(m.Death(ts=t + 2_000, clean=True)) == Seen("goodbye", heard=True)
    assert gw.send(_heartbeat(t + 1_000)) == Seen("goodbye", heard=True)  # made before the goodbye
    assert gw.send(_birth(t + 5_000)) == Seen("birth", heard=True)


def test_a_clock_set_back_still_counts_as_alive(db: str, vault: Vault, world: LoadWorld) -> None:
    """Liveness never depends on the gateway's clock: a heartbeat or a birth made "before" the last status is
    still heard, and a new connection's birth ends a death whatever its time."""
    gw, t = _Statuses(db, vault, world), now_ms()
    assert gw.send(_birth(t)) == Seen("birth", heard=True)
    assert gw.send(_heartbeat(t + 30_000)) == Seen("heartbeat", heard=True)
    assert gw.send(_heartbeat(t - 3_600_000)) == Seen("heartbeat", heard=True)  # set back an hour by NTP
    assert gw.send(m.Death(ts=t - 1)) == Seen("death", heard=False)
    assert gw.send(_birth(t - 3_500_000)) == Seen("birth", heard=True)  # restarted with its clock still behind
