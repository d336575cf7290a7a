"""The messages the gateway made in refused commits, kept on disk beside the store while they wait.

A refused commit (the store full of unsent alarms, or failing) leaves what the gateway made from it (a fall,
a device fault) with :class:`~eldercare.gateway.pipeline.Pipeline`, which offers it again until the store
takes it. Held in memory only, a fall was lost when the gateway was killed or lost power in that time: no
device sends it again. So the pipeline also writes what it carries to this file: the messages in the
contract's encoding, one per line, the whole file replaced (written, fsynced, renamed, the folder fsynced)
each time what is carried changes, and removed when nothing is. At start the pipeline takes the file's
messages back and stores them first. A refusal is rare and carries a few messages: the normal path never
touches the file.

A store refuses when it is full; the file is a few hundred bytes beside it, and is written when the store
cannot be. When the disk itself fails, writing the file fails too: that is logged, and the messages are still
carried in memory as before.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec

from eldercare.devices import messages as m

log = logging.getLogger(__name__)

_decoder: Final[msgspec.json.Decoder[m.DeviceMessage]] = msgspec.json.Decoder(m.DeviceMessage)


def path_for(store: Path) -> Path:
    """The carried file of the store at ``store``: ``store.db`` -> ``store.db.carried``."""
    return store.with_name(store.name + ".carried")


class CarriedFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[m.DeviceMessage]:
        """The messages carried when the gateway last stopped, oldest first; a line that does not decode (a torn
        write cannot leave one, but a hand may) is logged and skipped."""
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out: list[m.DeviceMessage] = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(_decoder.decode(line))
            except msgspec.DecodeError as exc:
                log.warning("%s:%d: not a device message, skipped: %s", self.path, n, exc)
        if out:
            log.warning("%d message(s) of refused commits carried from before the restart: storing them", len(out))
        return out

    def save(self, messages: Sequence[m.DeviceMessage]) -> None:
        """Make the file hold exactly ``messages`` (none: no file), durably. Raises OSError."""
        if not messages:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"".join(m.encode(x) + b"\n" for x in messages))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
