"""Registry changes reach a running ingest at once (migration 0022, ``ingest/watch.py``), and concurrent batches
never deadlock on the rows they share.

A gateway revoked, or a device retired, re-coded or moved, while ingest has it cached, is no longer stored half a
second later: the gateway's frames are quarantined as ``revoked gateway``, the device's messages as ``retired
device``, as if ingest had just started. The registry is changed here by SQL, as the API changes it (``revoke``
sets ``revoked_at`` and clears the password; ``PATCH /devices/{id}`` sets ``retired_at``): the broker is not told,
so the gateway's connection stays up and shows what ingest does with what reaches it afterwards.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.store import BatchStore, WriteResult
from eldercare.ingest.watch import RegistryWatch
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .conftest import new_world
from .helpers import gateways, now_ms, scalar, stored_readings, wait_until

NOTICED_S = 0.5  # a change is noticed well within this (the target is about a second)

_INBOX = "SELECT count(*) FROM alarm_inbox a JOIN devices d ON d.id = a.device_id WHERE d.code = %s"


def _parked(db: str, gateway: str) -> list[str]:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT reason FROM parked_messages WHERE gateway = %s ORDER BY id", (gateway,))
        return [str(r[0]) for r in rows.fetchall()]


def _readings_of(db: str, device_id: int) -> int:
    return int(scalar(db, "SELECT count(*) FROM bed_readings WHERE device_id = %s", (device_id,)))


def _device_id(db: str, world: LoadWorld, code: str) -> int:
    return int(
        scalar(db, "SELECT id FROM devices WHERE institution_id = %s AND code = %s", (world.institution_id, code))
    )


def _execute(db: str, query: str, params: Sequence[Any]) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(query.encode(), params)


def _bed(code: str, ts: int) -> m.BedSample:
    return m.BedSample(dev=code, ts=ts, presence=True, hr=70.0, rr=15.0, move=0.1)


def test_a_gateway_revoked_while_cached_is_quarantined_at_once_and_stored_again_when_readmitted(
    stack: StackInfo, db: str, world: LoadWorld, run_ingest: Callable[..., Any]
) -> None:
    config = world.gateways[0]
    with run_ingest(), gateways(stack, world) as (link,):
        link.send(link.frame(link.beds(5)))
        link.send(link.frame([link.press()]), alarm=True)
        wait_until(
            lambda: stored_readings(db, world) == 5 and scalar(db, _INBOX, (config.button,)) == 1,
            timeout=15,
            what="both lanes to store the gateway (and cache it)",
        )

        _execute(db, "UPDATE gateways SET password_hash = NULL, revoked_at = now() WHERE gateway_id = %s",
                 (config.gateway_id,))  # fmt: skip
        time.sleep(NOTICED_S)
        link.send(link.frame(link.beds(5)))
        link.send(link.frame([link.press()]), alarm=True)
        wait_until(
            lambda: (
                len(_parked(db, config.gateway_id))
                + (stored_readings(db, world) > 5)
                + (scalar(db, _INBOX, (config.button,)) > 1)
                >= 2
            ),
            timeout=15,
            what="both frames stored or quarantined",
        )
        assert _parked(db, config.gateway_id) == ["revoked gateway", "revoked gateway"]
        assert stored_readings(db, world) == 5
        assert scalar(db, _INBOX, (config.button,)) == 1

        _execute(db, "UPDATE gateways SET revoked_at = NULL WHERE gateway_id = %s", (config.gateway_id,))
        link.send(link.frame(link.beds(5)))
        link.send(link.frame([link.press()]), alarm=True)
        wait_until(
            lambda: stored_readings(db, world) == 10 and scalar(db, _INBOX, (config.button,)) == 2,
            timeout=15,
            what="the re-admitted gateway stored again",
        )
        assert len(_parked(db, config.gateway_id)) == 2


def test_a_device_retired_while_cached_is_quarantined_at_once_and_stored_again_when_brought_back(
    stack: StackInfo, db: str, world: LoadWorld, run_ingest: Callable[..., Any]
) -> None:
    config = world.gateways[0]
    retired, other = config.beds[0], config.beds[1]
    retired_id, other_id = _device_id(db, world, retired), _device_id(db, world, other)
    with run_ingest(), gateways(stack, world) as (link,):

        def send_both() -> None:
            ts = now_ms()
            link.send(link.frame([_bed(retired, ts), _bed(other, ts)]))

        send_both()
        wait_until(lambda: _readings_of(db, retired_id) == 1 and _readings_of(db, other_id) == 1, timeout=15,
                   what="both devices stored (and cached)")  # fmt: skip

        _execute(db, "UPDATE devices SET retired_at = now() WHERE id = %s", (retired_id,))
        time.sleep(NOTICED_S)
        send_both()
        wait_until(lambda: _readings_of(db, other_id) == 2, timeout=15, what="the frame stored")
        assert _readings_of(db, retired_id) == 1, "the retired device's reading was stored"
        assert _parked(db, config.gateway_id) == [f"msgs[0]: retired device {retired!r}"]

        # brought back: the code ingest now holds for unknown (for UNKNOWN_RETRY_S, 5 s) is asked again at once
        _execute(db, "UPDATE devices SET retired_at = NULL WHERE id = %s", (retired_id,))
        time.sleep(NOTICED_S)
        send_both()
        wait_until(lambda: _readings_of(db, other_id) == 3, timeout=15, what="the frame stored")
        assert _readings_of(db, retired_id) == 2, "the device brought back was quarantined"
        assert len(_parked(db, config.gateway_id)) == 1


def test_a_device_recoded_or_moved_while_cached_is_known_by_its_new_code_and_institution_at_once(
    stack: StackInfo, db: str, world: LoadWorld, run_ingest: Callable[..., Any]
) -> None:
    elsewhere = new_world(stack, db, beds=1)
    config = world.gateways[0]
    recoded, moved = config.beds[0], config.beds[1]
    new_code = f"{recoded}-new"
    recoded_id, moved_id = _device_id(db, world, recoded), _device_id(db, world, moved)
    with run_ingest(), gateways(stack, world) as (link,):

        def send_all() -> None:
            ts = now_ms()
            link.send(link.frame([_bed(recoded, ts), _bed(moved, ts), _bed(new_code, ts)]))

        send_all()  # the new code is not known yet: held for unknown for 5 s
        wait_until(lambda: len(_parked(db, config.gateway_id)) == 1, timeout=15, what="the frame stored")
        assert (_readings_of(db, recoded_id), _readings_of(db, moved_id)) == (1, 1)

        _execute(db, "UPDATE devices SET code = %s WHERE id = %s", (new_code, recoded_id))
        _execute(db, "UPDATE devices SET institution_id = %s WHERE id = %s", (elsewhere.institution_id, moved_id))
        time.sleep(NOTICED_S)
        send_all()
        wait_until(
            lambda: (
                len(_parked(db, config.gateway_id)) + _readings_of(db, recoded_id) + _readings_of(db, moved_id) >= 6
            ),
            timeout=15,
            what="each of the three readings stored or quarantined",
        )
        assert _readings_of(db, recoded_id) == 2, "the new code was not stored, or the old one was"
        assert _readings_of(db, moved_id) == 1, "the moved device was stored under its old institution"
        assert _parked(db, config.gateway_id)[1:] == [
            f"msgs[0]: unknown device {recoded!r}",
            f"msgs[1]: unknown device {moved!r}",
        ]


def test_a_change_made_while_the_watch_has_lost_its_connection_is_not_missed(
    stack: StackInfo, db: str, world: LoadWorld, run_ingest: Callable[..., Any]
) -> None:
    config = world.gateways[0]
    with run_ingest() as ingest, gateways(stack, world) as (link,):
        link.send(link.frame(link.beds(5)))
        wait_until(lambda: stored_readings(db, world) == 5, timeout=15, what="the gateway stored (and cached)")
        watch: RegistryWatch = ingest.watch
        lost = watch.backend_pid
        with psycopg.connect(db, autocommit=True) as conn:  # the revocation right after the watch lost its connection
            conn.execute("SELECT pg_terminate_backend(%s)", (lost,))
            conn.execute("UPDATE gateways SET revoked_at = now() WHERE gateway_id = %s", (config.gateway_id,))
        wait_until(lambda: watch.listening.is_set() and watch.backend_pid != lost, timeout=10,
                   what="the watch listening again")  # fmt: skip
        time.sleep(NOTICED_S)
        link.send(link.frame(link.beds(5)))
        wait_until(lambda: _parked(db, config.gateway_id) or stored_readings(db, world) > 5, timeout=15,
                   what="the frame stored or quarantined")  # fmt: skip
        assert _parked(db, config.gateway_id) == ["revoked gateway"]
        assert stored_readings(db, world) == 5


def test_the_watch_drops_every_cache_after_listening_again(db: str, world: LoadWorld) -> None:
    """What changed while it was not listening was not notified: every cache is dropped whole, once it listens
    again (and so after any change it missed committed)."""
    watch = RegistryWatch(database_url=db)
    watch.start()
    try:
        assert watch.wait_listening(10)
        seen, _ = watch.changes_since(0)
        code = world.gateways[0].beds[0]
        _execute(db, "UPDATE devices SET retired_at = now() WHERE institution_id = %s AND code = %s",
                 (world.institution_id, code))  # fmt: skip
        wait_until(lambda: watch.generation > seen, timeout=NOTICED_S, what="the retirement notified", every=0.005)
        assert watch.changes_since(seen) == (seen + 1, [(world.institution_id, code)])
        seen = watch.generation
        lost = watch.backend_pid
        _execute(db, "SELECT pg_terminate_backend(%s)", (lost,))
        wait_until(lambda: watch.listening.is_set() and watch.backend_pid != lost, timeout=10, what="listening again")
        generation, keys = watch.changes_since(seen)
        assert generation > seen
        assert keys is None  # everything
    finally:
        watch.stop()


# --- deadlocks between batches ------------------------------------------------------------------------------------


@contextmanager
def _slow_rows(db: str, *, table: str, timing: str, when: str) -> Iterator[None]:
    """Each row of ``table`` matching ``when`` takes 0.3 s to write (a trigger sleeps), so that two concurrent
    transactions interleave as a busy database can make them."""
    name = f"test_slow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$".encode()
        )
        conn.execute(
            f"CREATE TRIGGER {name} {timing} ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}()".encode()
        )
    try:
        yield
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"DROP TRIGGER {name} ON {table}".encode())
            conn.execute(f"DROP FUNCTION {name}()".encode())


def _concurrently(db: str, vault: Vault, batches: Sequence[Sequence[Received]]) -> list[WriteResult]:
    """Write the batches at the same moment, each by a store and an autocommit connection of its own (a lane's)."""
    start = threading.Barrier(len(batches))
    results: list[WriteResult | BaseException | None] = [None] * len(batches)

    def write(index: int) -> None:
        try:
            with psycopg.connect(db, autocommit=True) as conn:
                store = BatchStore(registry=Registry(retry_s=0), vault=vault)
                start.wait(10)
                results[index] = store.write(conn, batches[index])
        except BaseException as exc:  # handed to the test
            results[index] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for result in results:
        if isinstance(result, BaseException):
            raise AssertionError(f"a batch failed: {type(result).__name__}: {result}") from result
    return [r for r in results if isinstance(r, WriteResult)]


def test_batches_updating_the_same_gateways_in_opposite_orders_do_not_deadlock(
    stack: StackInfo, db: str, vault: Vault
) -> None:
    world = new_world(stack, db, gateways=2, beds=2)
    ids = [int(scalar(db, "SELECT id FROM gateways WHERE gateway_id = %s", (g.gateway_id,))) for g in world.gateways]
    ts = now_ms()
    heartbeats = [
        Received(
            topics.uplink(world.institution_code, g.gateway_id, topics.Channel.STATUS),
            m.encode(m.Heartbeat(ts=ts, queue=m.QueueDepth(alarm=0, telemetry=0))),
        )
        for g in world.gateways
    ]
    with _slow_rows(db, table="gateways", timing="AFTER UPDATE", when=f"NEW.id IN ({ids[0]}, {ids[1]})"):
        results = _concurrently(db, vault, [heartbeats, heartbeats[::-1]])
    assert [r.statuses for r in results] == [2, 2]
    assert scalar(db, "SELECT count(*) FROM gateways WHERE id = ANY(%s) AND last_status = 'heartbeat'", (ids,)) == 2


@pytest.mark.parametrize("frames", [2, 20], ids=["few frames (the alarm lane's claim)", "many (claimed by COPY)"])
def test_batches_holding_copies_of_the_same_frames_in_opposite_orders_do_not_deadlock(
    db: str, vault: Vault, world: LoadWorld, frames: int
) -> None:
    """A gateway resends frames it had no acknowledgement for; the broker may share the copies out to two
    processes, whose batches then hold the same frames in another order."""
    config = world.gateways[0]
    pk = int(scalar(db, "SELECT id FROM gateways WHERE gateway_id = %s", (config.gateway_id,)))
    epoch, ts = now_ms(), now_ms()
    alarm = frames <= 2  # alarm-class messages: the pipelined path; bed samples: COPY
    channel = topics.Channel.ALARM if alarm else topics.Channel.TELEMETRY
    topic = topics.uplink(world.institution_code, config.gateway_id, channel)
    batch = []
    for seq in range(frames):
        message: m.DeviceMessage = (
            m.Button(dev=config.button, ts=ts + seq, action=m.ButtonAction.PRESS)
            if alarm
            else _bed(config.beds[0], ts + seq)
        )
        batch.append(Received(topic, m.encode(m.Frame(v=1, epoch=epoch, seq=seq, sent=ts, msgs=[message]))))
    when = f"NEW.gateway_pk = {pk} AND NEW.epoch = {epoch} AND NEW.seq IN (0, {frames - 1})"
    with _slow_rows(db, table="uplink_frames", timing="BEFORE INSERT", when=when):
        results = _concurrently(db, vault, [batch, batch[::-1]])
    assert sum(r.frames_new for r in results) == frames
    assert sum(r.frames_duplicate for r in results) == frames
    if alarm:
        assert scalar(db, _INBOX, (config.button,)) == frames
    else:
        assert stored_readings(db, world) == frames


@pytest.mark.parametrize("frames", [2, 40], ids=["few frames", "many"])
def test_the_first_copy_of_a_frame_in_a_batch_still_wins_when_keys_are_claimed_in_order(
    db: str, vault: Vault, world: LoadWorld, frames: int
) -> None:
    config = world.gateways[0]
    topic = topics.uplink(world.institution_code, config.gateway_id, topics.Channel.TELEMETRY)
    epoch, ts = now_ms(), now_ms() - 60_000

    def frame(seq: int, sent: int) -> Received:
        msgs: list[m.DeviceMessage] = [_bed(config.beds[0], ts + seq)]
        return Received(topic, m.encode(m.Frame(v=1, epoch=epoch, seq=seq, sent=sent, msgs=msgs)))

    # every frame twice, the first copies in descending order, then their copies resent (another `sent`)
    batch = [frame(seq, ts) for seq in reversed(range(frames))] + [frame(seq, ts + 5_000) for seq in range(frames)]
    with psycopg.connect(db, autocommit=True) as conn:
        BatchStore(registry=Registry(retry_s=0), vault=vault).write(conn, batch)
    sent = scalar(
        db,
        "SELECT array_agg(DISTINCT round(extract(epoch FROM sent_at) * 1000)::bigint) FROM uplink_frames"
        " WHERE epoch = %s AND gateway_pk = (SELECT id FROM gateways WHERE gateway_id = %s)",
        (epoch, config.gateway_id),
    )
    assert sent == [ts]
