"""Pieces of ``bench/ingest_throughput.py``: a throwaway stack, processes and their CPU, metrics, quantiles."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from tests.conftest import free_stack_ports

from eldercare.platform.db.migrate import migrate
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack import service
from eldercare.platform.stack.layout import broker_paths, postgres_paths
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld, create_world

TICK = os.sysconf("SC_CLK_TCK")
EXE = str(Path(sys.executable).with_name("eldercare"))


@contextmanager
def throwaway_stack() -> Iterator[StackInfo]:
    """A migrated TimescaleDB and Mosquitto on free ports in a temporary state folder, removed afterwards."""
    state = Path(tempfile.mkdtemp(prefix="ec-bench-", dir="/tmp"))
    state.chmod(0o711)
    try:
        info = service.up(state, free_stack_ports())
        migrate(info.database_url)
        yield info
    finally:
        service.down(state)
        shutil.rmtree(state, ignore_errors=True)


def env_for(stack: StackInfo, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ELDERCARE_STATE_DIR"] = str(stack.state_dir)
    env["ELDERCARE_ENV_FILE"] = str(stack.state_dir / "eldercare.env")
    env.update(extra)
    return env


def make_world(stack: StackInfo, path: Path, *, gateways: int, beds: int, seed: int) -> LoadWorld:
    async def make() -> LoadWorld:
        async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
            return await create_world(
                conn,
                broker=LocalBroker(stack.state_dir),
                gateways=gateways,
                beds=beds,
                rng=random.Random(seed),
            )

    world = asyncio.run(make())
    world.save(path)
    return world


def cpu_ticks(pid: int, *, children: bool = False) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks + (int(fields[13]) + int(fields[14]) if children else 0)  # + reaped children


def postgres_ticks(stack: StackInfo) -> int:
    """The postmaster, the children it reaped, and every live child (backends, WAL writer, workers)."""
    postmaster = int((postgres_paths(stack.state_dir).data / "postmaster.pid").read_text().split()[0])
    total = cpu_ticks(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                total += cpu_ticks(int(entry.name))
    return total


def broker_pid(stack: StackInfo) -> int:
    return int(broker_paths(stack.state_dir).pid.read_text().split()[0])


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def ticks(self) -> int:
        return cpu_ticks(self.popen.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(
    name: str, args: list[str], env: dict[str, str], *, wait_for: str | None = None, timeout: float = 60
) -> Process:
    popen = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process = Process(name, popen)
    if wait_for is not None:
        deadline = time.monotonic() + timeout
        assert popen.stdout is not None
        for line in popen.stdout:
            process.lines.append(line.rstrip())
            if wait_for in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not say {wait_for!r}:\n" + "\n".join(process.lines[-30:]))
        else:
            raise RuntimeError(f"{name} exited:\n" + "\n".join(process.lines[-30:]))
    # keep draining its output so it never blocks on a full pipe
    import threading

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            process.lines.append(line.rstrip())

    threading.Thread(target=pump, daemon=True).start()
    return process


def run_and_measure(args: list[str], env: dict[str, str]) -> tuple[str, float]:
    """Run to the end; return its stdout and the CPU seconds it used (from wait4)."""
    popen = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert popen.stdout is not None
    out = popen.stdout.read()
    _, status, usage = os.wait4(popen.pid, 0)
    popen.returncode = os.waitstatus_to_exitcode(status)
    return out, usage.ru_utime + usage.ru_stime


def scrape(port: int) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if k.startswith(prefix + "{") and all(w in k for w in wanted))


def histogram_quantile(before: dict[str, float], after: dict[str, float], name: str, lane: str, q: float) -> float:
    """The bucket bound under which a fraction ``q`` of the observations between the two scrapes fall."""
    buckets: list[tuple[float, float]] = []
    for key, value in after.items():
        if key.startswith(f"{name}_bucket{{") and f'lane="{lane}"' in key:
            le = key.split('le="')[1].split('"')[0]
            buckets.append((math.inf if le == "+Inf" else float(le), value - before.get(key, 0.0)))
    buckets.sort()
    count = buckets[-1][1] if buckets else 0
    if not count:
        return math.nan
    for bound, cumulative in buckets:
        if cumulative >= q * count:
            return bound
    return math.inf


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def load_args(world: Path, *, rate: float, duration: float, readings: int, alarm_rate: float = 0.0) -> list[str]:
    args = [EXE, "simulate", "load", "--world", str(world), "--rate", str(rate), "--duration", str(duration)]
    return [*args, "--readings", str(readings), "--alarm-rate", str(alarm_rate), "--json"]


def parse_report(out: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report
