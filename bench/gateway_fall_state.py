"""What keeping the fall detectors in the store costs: CPU per accelerometer chunk and bytes kept per wearable.

    .venv/bin/python bench/gateway_fall_state.py [--wearables 50 --seconds 60]

Wearables replay SisFall recordings (walking, jogging, falls) in 0.5 s chunks at 50 Hz through the gateway's
``FallService``; each chunk's falls and detector checkpoint are committed to a real store (WAL, fsync), in
one commit per half second. The same run without checkpoints is the baseline (same falls, or it stops).
``tests/gateway/test_fall_restart.py`` checks that a restart changes no decision.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np

from eldercare.devices import messages as m
from eldercare.gateway.fall import data, model
from eldercare.gateway.pipeline import FallService
from eldercare.gateway.store import Batch, Item, Lane, Store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sisfall" / "sisfall_50hz.npz"
T0 = 1_763_775_000_000
CHUNK = 25


def streams(dataset: data.Dataset, wearables: int, seconds: int) -> list[list[m.AccelSamples]]:
    """Per wearable, ``seconds`` of recordings one after the other, in chunks of 0.5 s."""
    rng = np.random.default_rng(0)
    trials = [t for t in dataset.trials if t.activity in {"D01", "D03", "D05", "F01", "F05", "F10"}]
    out = []
    for w in range(wearables):
        parts, total = [], 0
        while total < seconds * 50:
            trial = trials[int(rng.integers(len(trials)))]
            parts.append(trial.counts)
            total += len(trial.counts)
        counts = np.concatenate(parts)[: seconds * 50]
        out.append(
            [
                m.AccelSamples(
                    dev=f"WR-{w:04d}",
                    ts=T0 + begin * 20,
                    hz=50,
                    xyz=[(int(x), int(y), int(z)) for x, y, z in counts[begin : begin + CHUNK]],
                )
                for begin in range(0, len(counts), CHUNK)
            ]
        )
    return out


def run(chunks: list[list[m.AccelSamples]], shipped: model.FallModel, folder: Path, *, keep: bool) -> dict[str, float]:
    store = Store(folder / f"store-{keep}.db", max_bytes=256 * 1024 * 1024)
    service = FallService(shipped, suppress_s=10)
    falls = 0
    cpu_detect = cpu_commit = 0.0
    for step in range(len(chunks[0])):  # one commit per step: every wearable's chunk of that half second
        started = time.process_time()
        batch = Batch()
        for stream in chunks:
            message = stream[step]
            found = service.feed(message)
            falls += len(found)
            batch.items.extend(Item(Lane.ALARM, m.encode(f), f) for f in found)
            state = service.checkpoint(message.dev) if keep else None
            if state is not None:
                batch.detectors.append(state)
        middle = time.process_time()
        store.commit([batch])
        cpu_detect += middle - started
        cpu_commit += time.process_time() - middle
    counted = store.data_bytes
    store.close()
    with sqlite3.connect(folder / f"store-{keep}.db") as db:
        kept = db.execute(
            "SELECT coalesce(sum(length(samples)), 0), (SELECT coalesce(sum(length(state)), 0) FROM fall_state)"
            " FROM fall_samples"
        ).fetchone()
    n_chunks = len(chunks) * len(chunks[0])
    return {
        "falls": falls,
        "detect_ms_per_chunk": cpu_detect / n_chunks * 1000,
        "commit_ms_per_chunk": cpu_commit / n_chunks * 1000,
        "bytes_per_wearable": (kept[0] + kept[1]) / len(chunks),
        "counted_bytes": counted,  # the store's byte budget: the falls (alarms) and, kept, the detectors' rows
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wearables", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    shipped = model.load()
    chunks = streams(data.load(DATA), args.wearables, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        base = run(chunks, shipped, Path(tmp), keep=False)
        kept = run(chunks, shipped, Path(tmp), keep=True)
    assert base["falls"] == kept["falls"]
    n = args.wearables * len(chunks[0])
    print(f"{args.wearables} wearables x {args.seconds} s at 50 Hz in 0.5 s chunks: {n} chunks, {kept['falls']} falls")
    for name, r in (("without detector state", base), ("with detector state", kept)):
        print(
            f"  {name:24s} CPU per chunk: detect {r['detect_ms_per_chunk']:.3f} ms,"
            f" commit {r['commit_ms_per_chunk']:.3f} ms; kept per wearable {r['bytes_per_wearable'] / 1024:.1f} KiB"
        )
    extra = (
        kept["detect_ms_per_chunk"]
        + kept["commit_ms_per_chunk"]
        - base["detect_ms_per_chunk"]
        - base["commit_ms_per_chunk"]
    )
    share = extra * 2 * args.wearables / 10  # ms per chunk x chunks per second -> % of one core
    print(f"  cost of keeping the state: {extra:.3f} ms CPU per chunk, {share:.1f} % of a core for {args.wearables}")
    counted = (kept["counted_bytes"] - base["counted_bytes"]) / args.wearables
    print(f"  counted in the store's byte budget (max_bytes' data share): {counted / 1024:.1f} KiB per wearable")


if __name__ == "__main__":
    main()
