"""What the stack needs from the host: service users, private files, subprocesses and pid files.

PostgreSQL refuses to run as root, and a broker has no business running as root either. When the stack is
started by root, each service runs as its Debian system user (``postgres``, ``mosquitto``) through
``runuser``, and the files it must read or write are handed to that user. Started by anyone else, the
services run as that same user and ownership is left alone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eldercare.platform.stack.errors import StackError

LOG_TAIL_LINES = 30


@dataclass(frozen=True, slots=True)
class RunAs:
    """The system user a service runs as when the stack is started by root."""

    name: str
    uid: int
    gid: int


def service_user(name: str, *, part: str) -> RunAs | None:
    """``None`` when not root (the service runs as the caller); else the system user ``name``."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise StackError(
            part,
            f"started as root, the service must run as the system user {name!r}, "
            "which does not exist (install the Debian package, or start the stack as "
            "an ordinary user)",
        ) from None
    return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def ensure_dir(path: Path, *, mode: int, owner: RunAs | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)


def write_private(path: Path, data: str | bytes, *, mode: int = 0o600, owner: RunAs | None = None) -> None:
    """Write ``path`` atomically (temporary file in the same folder, then rename) with ``mode``."""
    raw = data.encode() if isinstance(data, str) else data
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                os.fchown(handle.fileno(), owner.uid, owner.gid)
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def check_reachable(path: Path, *, user: RunAs | None, part: str) -> None:
    """Fail early, and clearly, when ``user`` cannot walk down to ``path`` (say a 0700 home folder)."""
    if user is None:
        return
    groups = set(os.getgrouplist(user.name, user.gid))
    for folder in reversed(path.resolve().parents):
        info = folder.stat()
        if info.st_uid == user.uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            raise StackError(
                part,
                f"the {user.name!r} user cannot enter {folder}, so it cannot reach "
                f"{path}; put the state directory elsewhere or run `chmod o+x {folder}`",
            )


def log_tail(path: Path, *, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return f"last lines of {path}:\n" + "\n".join(tail)


def run(
    argv: Sequence[str],
    *,
    part: str,
    user: RunAs | None,
    log: Path | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> str:
    """Run a service tool (as ``user`` when given); on failure raise with its output and the log tail."""
    command = [*argv] if user is None else ["runuser", "-u", user.name, "--", *argv]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(part, f"{Path(argv[0]).name} failed: {exc}\n{_tail_of(log)}") from exc
    if done.returncode != 0:
        output = "\n".join(line for line in (done.stdout.strip(), done.stderr.strip()) if line)
        raise StackError(part, f"{Path(argv[0]).name} exited with status {done.returncode}:\n{output}\n{_tail_of(log)}")
    return done.stdout


def _tail_of(log: Path | None) -> str:
    return "" if log is None else log_tail(log)


def read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    return int(first) if first.isdigit() else None


def process_alive(pid: int, *, marker: str) -> bool:
    """Whether ``pid`` is a live (not zombie) process whose command line contains ``marker``.

    The marker (a path of this state directory) guards against a stale pid file whose number now
    belongs to some other process.
    """
    proc = Path("/proc") / str(pid)
    try:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and marker in cmdline


def terminate(pid: int, *, marker: str, timeout: float) -> bool:
    """SIGTERM ``pid`` and wait until it is gone; ``False`` if it is still there after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid, marker=marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
