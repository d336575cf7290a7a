"""Running the platform's own processes (``eldercare ingest``, ``eldercare serve``) against a test stack."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from eldercare.platform.stack.model import StackInfo

# A test's ingest sessions end a minute after it stops (the setting's least), not after production's 7 days:
# each test has a shared-subscription group of its own, and every group's session left on the broker is handed
# a copy of every later message. Over a whole run, 72 such sessions held 3.2 million queued messages, and the
# broker's persistence save, every 60 s and blocking the broker, took over 2 s and kept growing, until a gateway
# provisioning waited past the 5 s reload timeout (a CI failure in test_end_to_end).
TEST_SESSION_EXPIRY_S = 60


def stack_env(stack: StackInfo, **extra: str) -> dict[str, str]:
    """The environment of a child process on the test stack. Each call gets its own shared-subscription
    group: a stopped ingest's persistent session stays a member of its group at the broker and would be
    handed a share of the next test's messages; it expires :data:`TEST_SESSION_EXPIRY_S` after it stops."""
    env = dict(os.environ)
    env["ELDERCARE_STATE_DIR"] = str(stack.state_dir)
    env["ELDERCARE_ENV_FILE"] = str(stack.state_dir / "eldercare.env")
    env["ELDERCARE_INGEST_GROUP"] = f"test-{uuid.uuid4().hex[:12]}"
    env["ELDERCARE_INGEST_SESSION_EXPIRY_S"] = str(TEST_SESSION_EXPIRY_S)
    env.update(extra)
    return env


@dataclass
class Proc:
    """A child process whose output is collected, so a test can wait for a line and show the log."""

    name: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _seen: threading.Condition = field(default_factory=threading.Condition)

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._seen:
            while not any(text in line for line in self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.popen.poll() is not None:
                    raise AssertionError(f"{self.name} did not log {text!r}:\n" + "\n".join(self.lines[-40:]))
                self._seen.wait(min(remaining, 0.2))

    def log(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def run_eldercare(name: str, args: list[str], env: dict[str, str]) -> Iterator[Proc]:
    exe = Path(sys.executable).with_name("eldercare")
    popen = subprocess.Popen([str(exe), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = Proc(name, popen)
    threading.Thread(target=proc._pump, daemon=True).start()
    try:
        yield proc
    finally:
        popen.terminate()
        try:
            popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout} s")
        time.sleep(0.1)


def migrate_command(url: str, key: bytes | None) -> subprocess.CompletedProcess[str]:
    """``eldercare db migrate`` as an operator runs it, with the data key in the environment or without one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env["ELDERCARE_ENV_FILE"] = "/nonexistent/eldercare.env"
    if key is not None:
        env["ELDERCARE_DATA_KEY"] = base64.b64encode(key).decode()
    exe = Path(sys.executable).with_name("eldercare")
    return subprocess.run(
        [str(exe), "db", "migrate", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def scrub_command(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``eldercare db scrub`` as an operator runs it."""
    exe = Path(sys.executable).with_name("eldercare")
    return subprocess.run(
        [str(exe), "db", "scrub", "--database-url", url, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
