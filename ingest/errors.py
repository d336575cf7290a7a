"""The ingest package's exceptions: few, each carrying the data a caller branches on."""

from __future__ import annotations


class IngestError(Exception):
    """Base of everything ingest raises on purpose."""


class MqttError(IngestError):
    """The MQTT link failed or the broker said no."""


class ConnectRefusedError(MqttError):
    """CONNACK with a failure reason code (bad login, not authorised, server busy, ...)."""

    def __init__(self, *, client_id: str, reason_code: int, reason: str) -> None:
        super().__init__(f"broker refused {client_id!r}: {reason} (reason code {reason_code})")
        self.client_id = client_id
        self.reason_code = reason_code
        self.reason = reason


class ProtocolError(MqttError):
    """The broker sent something this client cannot parse, or nothing in time."""

    def __init__(self, *, client_id: str, detail: str) -> None:
        super().__init__(f"{client_id}: {detail}")
        self.client_id = client_id
        self.detail = detail
