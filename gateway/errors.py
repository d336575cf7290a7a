"""The gateway's exceptions: few, each carrying what an operator needs to act on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class GatewayError(Exception):
    """Base of the gateway's own errors."""


class ConfigError(GatewayError):
    """A configuration file that cannot be used; ``problems`` are ``(key, reason)`` pairs."""

    def __init__(self, path: Path, problems: Sequence[tuple[str, str]]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  {key}: {reason}" for key, reason in self.problems)
        super().__init__(f"{path}: {len(self.problems)} problem(s)\n{lines}")


class MappingError(GatewayError):
    """A device payload that a vendor mapping cannot turn into contract messages."""

    def __init__(self, vendor: str, reason: str, *, device: str | None = None) -> None:
        self.vendor = vendor
        self.reason = reason
        self.device = device
        where = f" from {device!r}" if device else ""
        super().__init__(f"{vendor}{where}: {reason}")


class MappingFileError(GatewayError):
    """A vendor mapping file that is not valid; ``key`` names the entry."""

    def __init__(self, path: Path, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(f"{path}: {key}: {reason}")


class UnknownDeviceError(GatewayError):
    """A message from a device that is not in the gateway's list (and auto-discovery is off)."""

    def __init__(self, device: str) -> None:
        self.device = device
        super().__init__(f"unknown device {device!r}")


class ModelError(GatewayError):
    """A fall model file that cannot be used."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"fall model {path}: {reason}")


class DataError(GatewayError):
    """A recordings file (``.npz`` with its ``.csv`` index) that cannot be read."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class StoreError(GatewayError):
    """The gateway's store cannot be opened or written."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"store {path}: {reason}")
