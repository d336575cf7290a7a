"""Child processes that end with the process that started them.

The demo and the simulator's gateway mode start platform processes (ingest, the API, gateways, a home
broker). Stopped with Ctrl-C they stop them in turn; killed (SIGKILL, the out-of-memory killer, a closed
terminal before its handler is in place) they would leave them running: gateways publishing under the same
login and store as the next start's, ingest's retention job running over a month cut short. Linux sends a
child a signal of the parent's choosing when the parent dies (``PR_SET_PDEATHSIG``); each child here gets
SIGTERM, which every one of them handles as a stop.

The signal is tied to the *thread* that started the child, so start children from a thread that lives as
long as they should (the main thread, here).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import IO

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def _tied_to(parent: int) -> Callable[[], None]:
    def arm() -> None:  # runs in the child between fork and exec: nothing here may take a lock
        if _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def start(args: Sequence[str], *, log: IO[bytes], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child writing its output to ``log`` that gets SIGTERM when this process dies."""
    arm = _tied_to(os.getpid())  # it imports nothing and logs nothing, so other threads' locks cannot hold it
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=arm)  # noqa: PLW1509
