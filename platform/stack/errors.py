"""The one exception of the stack package: which part failed, and why (with its log tail when it has one)."""

from __future__ import annotations


class StackError(Exception):
    """A part of the local stack (``postgres``, ``mosquitto``, ``tls``, ``state``) could not do its job."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason
