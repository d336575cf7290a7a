"""Every database connection of an ingest process says which data key the process seals with
(``application_name`` ``<part> key=<tag>``), so that ``eldercare db rekey`` finds a process left on a key being rotated
away from (``tests/test_rekey.py``): the lanes, the registry's watch and the maintenance alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eldercare.platform.crypto import Vault
from eldercare.platform.db.keycheck import key_tag
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .helpers import Gateway, scalar, stored_frames, wait_until


def _names(db: str, tag: str) -> set[str]:
    rows = scalar(
        db,
        "SELECT coalesce(array_agg(DISTINCT application_name), '{}') FROM pg_stat_activity"
        " WHERE application_name LIKE 'ingest-%%' AND application_name LIKE %s",
        ("% " + tag,),
    )
    return set(rows)


def test_each_ingest_connection_carries_its_key_tag(
    stack: StackInfo, world: LoadWorld, db: str, vault: Vault, run_ingest: Callable[..., Any]
) -> None:
    tag = key_tag(vault.key_check())
    gateway = Gateway(stack, world)
    with run_ingest(ingest_maintain=True):
        gateway.send(gateway.frame(gateway.beds(2)))
        gateway.flush()
        wait_until(lambda: stored_frames(db, world) == 1, timeout=20, what="a frame")
        expected = {f"ingest-{part} {tag}" for part in ("telemetry", "registry-watch", "maintenance")}
        wait_until(lambda: expected <= _names(db, tag), timeout=20, what="the tagged connections")
    gateway.close()
