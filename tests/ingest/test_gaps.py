"""Gaps in a gateway's (epoch, seq) sequence: found by the scan, filled by late frames, shown by the CLI."""

from __future__ import annotations

import psycopg

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest import gaps
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.store import BatchStore
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .helpers import ingest_cli, now_ms


def _write(
    db: str, vault: Vault, world: LoadWorld, epoch: int, seqs: list[int], *, alarm_seqs: tuple[int, ...] = ()
) -> None:
    """Frames with these seqs, as ingest stores them; ``alarm_seqs`` come on the alarm lane (one counter)."""
    gateway = world.gateways[0]
    items = []
    for seq in seqs:
        alarm = seq in alarm_seqs
        channel = topics.Channel.ALARM if alarm else topics.Channel.TELEMETRY
        ts = now_ms() - 1000 + seq
        msg: m.DeviceMessage = (
            m.Button(dev=gateway.button, ts=ts, action=m.ButtonAction.PRESS)
            if alarm
            else m.BedSample(dev=gateway.beds[0], ts=ts, presence=True)
        )
        frame = m.Frame(v=1, epoch=epoch, seq=seq, sent=ts, msgs=[msg])
        items.append(Received(topics.uplink(world.institution_code, gateway.gateway_id, channel), m.encode(frame)))
    with psycopg.connect(db, autocommit=True) as conn:
        BatchStore(registry=Registry(retry_s=0), vault=vault).write(conn, items)


def _gaps(db: str, world: LoadWorld, *, grace_s: float = 0) -> list[tuple[int, int, int, int, bool]]:
    with psycopg.connect(db, autocommit=True) as conn:
        gaps.scan(conn, grace_s=grace_s, lookback_s=3600)
        found = gaps.list_gaps(conn, open_only=False, gateway=world.gateways[0].gateway_id)
    return sorted((g.epoch, g.first_seq, g.last_seq, g.missing, g.filled_at is not None) for g in found)


def test_missing_frames_become_gaps_and_late_frames_fill_them(db: str, vault: Vault, world: LoadWorld) -> None:
    _write(db, vault, world, 100, [0, 1, 2, 5, 6, 9])
    _write(db, vault, world, 200, [2, 3])  # a new epoch starts at seq 0: 0 and 1 are missing
    assert _gaps(db, world) == [
        (100, 3, 4, 2, False),
        (100, 7, 8, 2, False),
        (200, 0, 1, 2, False),
    ]
    _write(db, vault, world, 100, [3])
    assert _gaps(db, world)[0] == (100, 3, 4, 1, False)
    _write(db, vault, world, 100, [4, 7, 10, 12])
    assert _gaps(db, world) == [
        (100, 3, 4, 0, True),  # filled: late, not lost
        (100, 7, 8, 1, False),
        (100, 11, 11, 1, False),
        (200, 0, 1, 2, False),
    ]


def test_frames_out_of_order_across_the_lanes_within_the_grace_are_no_gap(
    db: str, vault: Vault, world: LoadWorld
) -> None:
    # seq is one counter for both lanes: the alarm frames 1 and 4 overtook the telemetry frames 0, 2 and 3
    _write(db, vault, world, 300, [1, 4], alarm_seqs=(1, 4))
    assert _gaps(db, world, grace_s=60) == []  # seq 4 arrived less than a minute ago: 0, 2, 3 may come
    _write(db, vault, world, 300, [0, 2, 3])
    assert _gaps(db, world, grace_s=0) == []
    _write(db, vault, world, 300, [6], alarm_seqs=(6,))
    assert _gaps(db, world, grace_s=0) == [(300, 5, 5, 1, False)]


def test_the_cli_scans_and_lists_gaps(stack: StackInfo, db: str, vault: Vault, world: LoadWorld) -> None:
    _write(db, vault, world, 400, [0, 3])
    result = ingest_cli(
        stack, "gaps", "--scan", "--all", "--gateway", world.gateways[0].gateway_id, ELDERCARE_INGEST_GAP_GRACE_S="0"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:6] == ["institution", "gateway", "epoch", "first_seq", "last_seq", "missing"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[:6] for r in rows] == [[world.institution_code, world.gateways[0].gateway_id, "400", "1", "2", "2"]]
    assert rows[0][7] == "open"
    assert '"gaps_found"' in result.stderr
