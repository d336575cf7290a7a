"""How fast the alarm engine drains a backlog in its inbox, and how long a press waits behind it.

A backlog forms when the engine was down (a platform restart) or when gateways deliver what they stored
during an outage all at once. The mix is what a home sends: bed exits and returns (by day: watched by no
rule), device faults (one technical alarm each, then repeats), button presses (an alarm each, repeats within
the window) and falls. Each event is handled in the engine's own transactions (``process_pending``).

Baseline, same run and same data: the engine with its per-event look-ups (placement, then rule) as it was
before they were made one statement per batch. Then a backlog with one press at its end: the time until the
press's alarm exists, with and without urgent kinds first.

    .venv/bin/python bench/alarm_inbox.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ingest_support import throwaway_stack

from eldercare.platform.alarms import engine
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.config import SecuritySettings
from eldercare.platform.crypto import Vault
from eldercare.platform.registry.broker import LocalBroker
from eldercare.simulators.seed import SeededHome, seed_home


async def _per_event_context(
    conn: AsyncConn, events: list[engine.InboxEvent]
) -> list[tuple[engine.Placement, dict[str, Any] | None]]:
    """The baseline: a placement query and a rule query for every event."""
    out: list[tuple[engine.Placement, dict[str, Any] | None]] = []
    for e in events:
        rule = engine._RULE_OF_EVENT.get(e.kind)
        if rule is None or e.device_id is None:
            out.append((engine.Placement(None, None, None), None))
            continue
        row = await (
            await conn.execute(
                "SELECT db.bed_id, r.id, r.fall_risk::text FROM device_bindings db"
                " LEFT JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> %(t)s::timestamptz"
                " LEFT JOIN residents r ON r.id = coalesce(db.resident_id, ba.resident_id)"
                " WHERE db.device_id = %(d)s AND db.during @> %(t)s::timestamptz",
                {"d": e.device_id, "t": e.event_time},
            )
        ).fetchone()
        place = engine.Placement(*row) if row is not None else engine.Placement(None, None, None)
        found = await (
            await conn.execute("SELECT rule_params(%s, %s, %s)", (rule, e.institution_id, place.resident_id))
        ).fetchone()
        out.append((place, found[0] if found else None))
    return out


def _events(home: SeededHome, ids: dict[str, int], n: int, rng: random.Random, at: datetime) -> list[tuple[Any, ...]]:
    sensors = [ids[d.code] for d in home.devices if d.kind == "bed_sensor"]
    buttons = [ids[d.code] for d in home.devices if d.kind == "button"]
    rows: list[tuple[Any, ...]] = []
    for k in range(n):
        t = at + timedelta(milliseconds=k)
        roll = rng.random()
        if roll < 0.70:
            rows.append((t, rng.choice(sensors), "bed_exit", {"back": rng.random() < 0.5}))
        elif roll < 0.85:
            rows.append((t, rng.choice(sensors), "fault", {"fault": "offline", "active": rng.random() < 0.8}))
        elif roll < 0.97:
            rows.append((t, rng.choice(buttons), "button", {"action": "press"}))
        else:
            rows.append((t, rng.choice(buttons), "fall", {"confidence": 0.9}))
    return [(t, d, home.institution_id, k, json.dumps(x), t) for t, d, k, x in rows]


def _fill(url: str, rows: list[tuple[Any, ...]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE alarm_inbox, alarms CASCADE")  # and what refers to alarms
        with cur.copy(
            "COPY alarm_inbox (event_time, device_id, institution_id, kind, detail, published_at) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)


async def _drain(url: str, vault: Vault, *, watch: int | None = None) -> tuple[float, float | None]:
    """Seconds to empty the inbox; and, if ``watch`` is a device, seconds until its first alarm existed."""
    seen: float | None = None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        while await engine.process_pending(conn, vault=vault):
            if watch is not None and seen is None:
                row = await (await conn.execute("SELECT 1 FROM alarms WHERE device_id = %s", (watch,))).fetchone()
                if row is not None:
                    seen = time.perf_counter() - started
        return time.perf_counter() - started, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with throwaway_stack() as info:
        state = info.state_dir
        vault = Vault(SecuritySettings(_env_file=state / "eldercare.env").key_bytes())

        async def seed() -> SeededHome:
            async with await psycopg.AsyncConnection.connect(info.database_url, autocommit=True) as conn:
                return await seed_home(
                    conn,
                    vault=vault,
                    broker=LocalBroker(state),
                    rng=random.Random(5),
                    rooms=25,
                    beds_per_room=2,
                    staff_password="staff-password-1",
                )

        home = asyncio.run(seed())
        with psycopg.connect(info.database_url) as conn:
            ids: dict[str, int] = dict(conn.execute("SELECT code, id FROM devices").fetchall())
        noon = datetime.now(UTC).replace(hour=4, minute=0, second=0, microsecond=0)  # noon in Shanghai
        rows = _events(home, ids, args.events, random.Random(11), noon)
        batched = engine._context

        figures: dict[str, float] = {}
        for name, context in (("per-event look-ups (baseline)", _per_event_context), ("batched look-ups", batched)):
            engine._context = context
            _fill(info.database_url, rows)
            seconds, _ = asyncio.run(_drain(info.database_url, vault))
            figures[name] = args.events / seconds
            print(f"{name:32} {args.events:,} events in {seconds:6.2f} s = {args.events / seconds:8,.0f} events/s")
        engine._context = batched
        ratio = figures["batched look-ups"] / figures["per-event look-ups (baseline)"]
        print(f"{'ratio':32} {ratio:.2f}x")

        button = next(ids[d.code] for d in home.devices if d.kind == "button")
        press = (noon + timedelta(hours=1), button, home.institution_id, "button", '{"action": "press"}', noon)
        quiet = [r for r in rows if r[1] != button]
        for name, urgent in (("oldest first (baseline)", []), ("urgent kinds first", engine._URGENT)):
            engine._URGENT = urgent
            _fill(info.database_url, [*quiet, press])
            seconds, seen = asyncio.run(_drain(info.database_url, vault, watch=button))
            print(
                f"press behind {len(quiet):,} events, {name:24} alarm after {seen or float('nan'):6.3f} s"
                f" (inbox empty after {seconds:.2f} s)"
            )


if __name__ == "__main__":
    main()
