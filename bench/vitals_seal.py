"""What sealing the heart and breathing rates costs ingest, and what opening them costs their readers.

    .venv/bin/python bench/vitals_seal.py [--readings 500000 --rounds 5]

1. Ingest: the bed rows of 50-reading frames built by ``rows.add_beds`` (the rates sealed, one AES block a row)
   against the same rows built as before migration 0028 (the rates as two ``real`` columns, packed by the same
   ``struct`` code, kept below as the baseline), in the same process, alternated, best of ``--rounds``. The
   difference is the CPU that sealing adds per reading; the README compares it with ingest's whole CPU per reading
   measured by ``bench/ingest_throughput.py``.
2. Readers: ``Vault.open_vitals`` on an hour of a 1,000-bed home at one reading every 10 s (360,000 blocks, what the
   roll-up job opens an hour), against ``bytes.join`` of the same blobs (the least any reader of them does).

No database: this is the CPU on the hot path only; the COPY carries 17 bytes a row where it carried 8.
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eldercare.ingest.decode import FastBed
from eldercare.ingest.rows import PG_EPOCH_MS, Rows, add_beds
from eldercare.platform.crypto import Vault

_OLD_FULL = struct.Struct("!hiqiqi?ififif")  # before 0028: hr, rr and move in clear
_OLD_HEAD = struct.Struct("!hiqiqi?")
_F4 = struct.Struct("!if")
_NULL = b"\xff\xff\xff\xff"
HOUR_MS = 3_600_000


def old_add_beds(out: list[bytes], touched: set[tuple[int, int]], beds: list[FastBed], ids: list[int]) -> None:
    """``rows.add_beds`` as it was before the rates were sealed (the unknown-device branch left out: none here)."""
    full, head = _OLD_FULL.pack, _OLD_HEAD.pack
    for msg, device_id in zip(beds, ids, strict=True):
        ts, hr, rr, move = msg.ts, msg.hr, msg.rr, msg.move
        micros = (ts - PG_EPOCH_MS) * 1000
        if hr is not None and rr is not None and move is not None:
            out.append(full(6, 8, micros, 8, device_id, 1, msg.presence, 4, hr, 4, rr, 4, move))
        else:
            out.append(
                head(6, 8, micros, 8, device_id, 1, msg.presence)
                + (_NULL if hr is None else _F4.pack(4, hr))
                + (_NULL if rr is None else _F4.pack(4, rr))
                + (_NULL if move is None else _F4.pack(4, move))
            )
        touched.add((ts // HOUR_MS, device_id))


def frames(readings: int) -> list[tuple[list[FastBed], list[int]]]:
    """50-reading frames of a home's mix: 85 % in bed with both rates, 15 % out of bed without."""
    rng = random.Random(7)
    t0 = 1_795_000_000_000
    out: list[tuple[list[FastBed], list[int]]] = []
    for f in range(readings // 50):
        beds, ids = [], []
        for i in range(50):
            device = f % 20 * 50 + i + 1
            if rng.random() < 0.85:
                bed = FastBed(dev="x", ts=t0 + f * 1000 + i, presence=True, hr=round(rng.gauss(70, 6), 1),
                              rr=round(rng.gauss(16, 2), 1), move=round(rng.random(), 2))  # fmt: skip
            else:
                bed = FastBed(dev="x", ts=t0 + f * 1000 + i, presence=False, move=0.0)
            beds.append(bed)
            ids.append(device)
        out.append((beds, ids))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    vault = Vault(os.urandom(32))
    work = frames(args.readings)
    n = len(work) * 50
    sealed_s, clear_s = [], []
    for _ in range(args.rounds):
        start = time.process_time()
        rows = Rows(vault)
        for beds, ids in work:
            add_beds(rows, beds, ids)
        sealed_s.append(time.process_time() - start)
        start = time.process_time()
        out: list[bytes] = []
        touched: set[tuple[int, int]] = set()
        for beds, ids in work:
            old_add_beds(out, touched, beds, ids)
        clear_s.append(time.process_time() - start)
    assert len(rows.bed) == len(out) == n
    sealed, clear = min(sealed_s) / n * 1e6, min(clear_s) / n * 1e6
    print(f"ingest rows, {n:,} readings in 50-reading frames, best of {args.rounds} (CPU):")
    print(f"  rates in clear (before 0028): {clear:.3f} us a reading")
    print(
        f"  rates sealed (now):           {sealed:.3f} us a reading  ({sealed / clear:.2f}x; +{sealed - clear:.3f} us)"
    )

    sealer = vault.vitals_sealer()
    hour = 360_000
    micros = [(1_795_000_000_000 - PG_EPOCH_MS) * 1000 + i * 10_000 for i in range(hour)]
    devices = [i % 1000 + 1 for i in range(hour)]
    blobs = [
        sealer.seal(t, d, 70.0 + i % 30, 16.0) or b"" for i, (t, d) in enumerate(zip(micros, devices, strict=True))
    ]
    open_s, join_s = [], []
    for _ in range(args.rounds):
        start = time.process_time()
        opened = vault.open_vitals(micros, devices, blobs)
        open_s.append(time.process_time() - start)
        start = time.process_time()
        joined = b"".join(blobs)
        join_s.append(time.process_time() - start)
    assert bool(opened.ok.all()) and len(joined) == 16 * hour
    print(
        f"readers, {hour:,} sealed readings (an hour of 1,000 beds at one reading every 10 s), best of {args.rounds}:"
    )
    print(f"  open_vitals: {min(open_s) * 1e3:.1f} ms ({min(open_s) / hour * 1e6:.3f} us a reading);"
          f" bytes.join alone {min(join_s) * 1e3:.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
