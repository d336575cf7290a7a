"""Registry figures: bulk import against one-by-one registration, and the cost of auditing a read.

Runs a throwaway stack and the platform app (uvicorn in a thread), then in the same run:
  1. N residents registered one by one through POST (the baseline) and N others by one CSV import;
  2. the same CSV imported again (idempotent: nothing changes);
  3. GET of a resident (decrypts the name, appends an audit entry under the chain lock) against GET of a bed
     (no personal data, no audit), sequential and with 8 concurrent clients;
  4. ``audit verify`` over the whole chain.

    .venv/bin/python bench/registry_import.py [--residents 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_stack_ports, remove_stack, short_state_dir
from tests.registry.support import Server, build_world, create_database, data_key, new_id_number

from eldercare.platform.audit.log import verify
from eldercare.platform.crypto import Vault
from eldercare.platform.stack import service


def timed(label: str, seconds: float, n: int) -> None:
    print(f"{label:<48} {seconds:7.2f} s  {n / seconds:8.1f} /s")


def latencies(fn: object, n: int, workers: int) -> list[float]:
    def one(_: int) -> float:
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        return time.perf_counter() - started

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=1000)
    args = parser.parse_args()
    n: int = args.residents
    state_dir = short_state_dir("bench-reg")
    stack = service.up(state_dir, free_stack_ports())
    try:
        db = create_database(stack, "ec_bench")
        with Server(database_url=db.url, key=data_key(stack), state_dir=stack.state_dir) as server:
            world = build_world(server.base, db, Vault(data_key(stack)))
            staff = world.users["staff_a"]
            path = f"/api/v1/institutions/{world.a.id}/residents"
            started = time.perf_counter()
            for k in range(n):
                body = {"name": f"基线{k}", "id_number": new_id_number(born=date(1925, 1, 1) + timedelta(days=k))}
                staff.ok("POST", path, 201, json=body)
            one_by_one = time.perf_counter() - started
            timed(f"{n} residents, one POST each (baseline)", one_by_one, n)

            rows = "".join(
                f"导入{k},{new_id_number(born=date(1925, 1, 1) + timedelta(days=k + n))}\n" for k in range(n)
            )
            csv = ("name,id_number\n" + rows).encode()
            url = f"/api/v1/institutions/{world.a.id}/imports/residents"
            started = time.perf_counter()
            report = staff.ok("POST", url, files={"file": ("r.csv", csv)})
            bulk = time.perf_counter() - started
            assert len(report["created"]) == n
            timed(f"{n} residents, one CSV import", bulk, n)
            started = time.perf_counter()
            report = staff.ok("POST", url, files={"file": ("r.csv", csv)})
            again = time.perf_counter() - started
            assert report["unchanged"] == n
            timed("the same CSV again (changes nothing)", again, n)
            print(f"{'import / one-by-one time ratio':<48} {bulk / one_by_one:7.3f}")

            resident, bed = world.a.residents[0]["id"], world.a.beds[0]["id"]
            for workers in (1, 8):
                reads = 400
                audited = latencies(lambda: staff.ok("GET", f"/api/v1/residents/{resident}"), reads, workers)
                plain = latencies(lambda: staff.ok("GET", f"/api/v1/beds/{bed}"), reads, workers)
                a50, p50 = statistics.median(audited), statistics.median(plain)
                print(
                    f"GET resident (audited) vs bed, {workers} client(s): p50 {a50 * 1000:6.1f} ms vs "
                    f"{p50 * 1000:6.1f} ms, ratio {a50 / p50:5.2f}"
                )

            async def check() -> tuple[int, float]:
                async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
                    started = time.perf_counter()
                    verdict = await verify(conn)
                    assert verdict.ok
                    return verdict.checked, time.perf_counter() - started

            checked, seconds = asyncio.run(check())
            timed(f"audit verify over {checked} entries", seconds, checked)
    finally:
        remove_stack(state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
