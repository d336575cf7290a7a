"""Registry changes every ingest process notices at once: a LISTEN on a database connection of its own.

Migration 0022's triggers ``NOTIFY ingest_registry`` when a gateway is revoked, re-admitted, renamed or moved, a
device is retired, brought back, re-coded or moved, or an institution's code changes; 0025's when a gateway or a
device is registered (its code may be held for unknown). The payload names the cache key that changed
(:func:`parse`). PostgreSQL delivers a notification when the changing transaction commits, to every
listening process. The watch numbers the changes it receives (``generation``) and keeps the recent ones; each lane's
:class:`~eldercare.ingest.registry.Registry` compares that integer with the one it saw last, once a batch, and only
when it moved drops the keys changed since (:meth:`RegistryWatch.changes_since`). The hot path pays one integer
comparison a batch and no query; a change reaches every lane within milliseconds of its commit.

Nothing is missed across a lost connection: after (re)connecting, the watch LISTENs first and then records a change
of everything, so every cache is dropped whole and read again after the LISTEN took effect, and whatever commits
later is notified. While it has no connection it records a change of everything every ``poll_s``, so no cache
outlives that.
"""

from __future__ import annotations

import logging
import select
import threading

import psycopg

from eldercare.ingest.mqtt import Backoff

log = logging.getLogger(__name__)

CHANNEL = "ingest_registry"  # migrations 0022, 0025

# a key of the registry's caches: (institution code, gateway id) or (institution id, device code)
Key = tuple[str | int, str]
_KEEP = 10_000  # changes kept for registries that have not caught up yet; one further behind drops everything


def parse(payload: str) -> Key | None:
    """``g <institution code> <gateway id>`` or ``d <institution id> <device code>`` (neither code may hold a
    space: their CHECKs); anything else (``*``: an institution's code changed) is a change of everything."""
    parts = payload.split(" ")
    if len(parts) == 3 and parts[0] == "g":
        return (parts[1], parts[2])
    if len(parts) == 3 and parts[0] == "d" and parts[1].isdigit():
        return (int(parts[1]), parts[2])
    return None


class RegistryWatch:
    def __init__(self, *, database_url: str, poll_s: float = 0.5) -> None:
        self._database_url = database_url
        self._poll_s = poll_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-registry-watch", daemon=True)
        self._lock = threading.Lock()
        self._failures = 0  # connections lost or refused in a row: the backoff
        self._changes: list[Key | None] = []  # the latest changes; the last is number ``generation``
        self.generation = 0  # written under the lock, read without it by the writers (an int)
        self.listening = threading.Event()  # set while a LISTEN is in effect
        self.backend_pid: int | None = None  # of the listening connection

    def start(self) -> None:
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        return self.listening.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def changes_since(self, generation: int) -> tuple[int, list[Key] | None]:
        """The current generation and the keys changed after ``generation``; None: drop everything."""
        with self._lock:
            current, changes = self.generation, self._changes
            behind = current - generation
            if behind > len(changes):
                return current, None
            recent = changes[len(changes) - behind :]
        keys = [key for key in recent if key is not None]
        return current, None if len(keys) < len(recent) else keys

    def _record(self, key: Key | None) -> None:
        with self._lock:
            self._changes.append(key)
            if len(self._changes) > 2 * _KEEP:
                del self._changes[:_KEEP]
            self.generation += 1  # after the change is readable

    def _run(self) -> None:
        backoff = Backoff(first_s=0.25, max_s=5.0)
        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning("registry watch: database unavailable (%s); caches dropped every %.1f s until it is back",
                            exc, self._poll_s)  # fmt: skip
            except Exception:  # a bug: tried again all the same, the caches dropped meanwhile, so nothing stale is used
                log.exception("registry watch failed; caches dropped every %.1f s until it listens again", self._poll_s)
            else:
                continue
            self.listening.clear()
            self._wait_dropping(backoff.delay(self._failures))
            self._failures += 1

    def _listen(self) -> None:
        with psycopg.connect(
            self._database_url,
            autocommit=True,
            connect_timeout=5,
            # a peer gone without a word (a half-open TCP connection) is noticed within about 20 s
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=5,
            keepalives_count=3,
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._record(None)  # what was cached before the LISTEN took effect may be stale
            self.backend_pid = conn.info.backend_pid
            self.listening.set()
            self._failures = 0
            # poll, then take what came: notifies(timeout=...) would wake ten times a second (psycopg's wait
            # interval), 1.4 ms of CPU a second measured; this wakes twice, to see whether ingest is stopping
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            while not self._stopping.is_set():
                if poller.poll(self._poll_s * 1000):  # readable, or closed (then notifies raises)
                    for note in conn.notifies(timeout=0):
                        self._record(parse(note.payload))
        self.listening.clear()

    def _wait_dropping(self, seconds: float) -> None:
        """Wait ``seconds`` (or until stopped), recording a change of everything every ``poll_s`` meanwhile."""
        remaining = seconds
        while remaining > 0 and not self._stopping.wait(min(self._poll_s, remaining)):
            self._record(None)
            remaining -= self._poll_s
        self._record(None)
