"""The payloads of contract v1: frozen message types, decoded strictly in shape and leniently in extras.

Devices and gateways may add fields of their own (they are ignored, as Home Assistant does with device
payloads); a missing or mistyped field of ours is an error that names the field.

Every uplink message is a :class:`Frame`: the gateway's stream ``epoch`` (fixed for the life of its store),
a ``seq`` that increases by one per frame and per epoch, and the device messages it carries. The platform
stores a frame once per ``(gateway, epoch, seq)`` and detects gaps in ``seq``.

Times are integers: milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

import msgspec

CONTRACT_VERSION: Final = 1

# "(?!\n)" because msgspec and jsonschema match with Python's re, whose "$" also matches before a final
# newline; in ECMA-262 (JSON Schema's regex dialect) it is a no-op after "$".
DeviceCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$(?!\n)", max_length=64)]
Millis = Annotated[int, msgspec.Meta(ge=946_684_800_000, le=4_102_444_800_000)]  # 2000-01-01 .. 2100-01-01
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
HeartRate = Annotated[float, msgspec.Meta(ge=0, le=300)]
RespRate = Annotated[float, msgspec.Meta(ge=0, le=100)]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]


class _Msg(msgspec.Struct, frozen=True, tag_field="t", forbid_unknown_fields=False, kw_only=True):
    dev: DeviceCode
    ts: Millis


# --- telemetry lane -------------------------------------------------------------------------------


class BedSample(_Msg, tag="bed", frozen=True, kw_only=True):
    """A bed sensor's periodic sample. ``hr``/``rr`` are absent when nobody is in bed or no lock."""

    presence: bool
    hr: HeartRate | None = None
    rr: RespRate | None = None
    move: Unit | None = None


class Battery(_Msg, tag="battery", frozen=True, kw_only=True):
    level: Percent


class Location(_Msg, tag="location", frozen=True, kw_only=True):
    """A wristband's position (WGS-84), with the fix's accuracy in metres."""

    lat: Latitude
    lon: Longitude
    acc: Annotated[float, msgspec.Meta(ge=0, le=100_000)] | None = None


class EnvReading(_Msg, tag="env", frozen=True, kw_only=True):
    """A home-care environment sensor's reading (smoke obscuration %, gas %LEL, water leak 0/1)."""

    kind: Literal["smoke", "gas", "water"]
    value: Annotated[float, msgspec.Meta(ge=0, le=100_000)]


class AccelSamples(_Msg, tag="accel", frozen=True, kw_only=True):
    """A wearable's raw accelerometer stream: ``ts`` is the first sample's time; counts are 1/256 g."""

    hz: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    xyz: Annotated[list[tuple[int, int, int]], msgspec.Meta(min_length=1, max_length=5000)]


# --- alarm lane -----------------------------------------------------------------------------------


class ButtonAction(StrEnum):
    PRESS = "press"
    CANCEL = "cancel"


class Button(_Msg, tag="button", frozen=True, kw_only=True):
    """An emergency button: a press, or the cancel key pressed at the bedside."""

    action: ButtonAction


class Fall(_Msg, tag="fall", frozen=True, kw_only=True):
    """A detected fall: by a radar, or by the gateway's detector on a wearable's stream."""

    source: Literal["radar", "wearable"]
    confidence: Unit | None = None


class Sos(_Msg, tag="sos", frozen=True, kw_only=True):
    """A wristband's SOS key."""

    lat: Latitude | None = None
    lon: Longitude | None = None


class BedExit(_Msg, tag="bed_exit", frozen=True, kw_only=True):
    """Presence changed on a bed sensor: the resident left (``back`` false) or returned (``back`` true)."""

    back: bool


class EnvAlarm(_Msg, tag="env_alarm", frozen=True, kw_only=True):
    """A home-care environment sensor's own alarm (smoke, gas, water leak) raised or cleared."""

    kind: Literal["smoke", "gas", "water"]
    active: bool


class FaultKind(StrEnum):
    OFFLINE = "offline"
    LOW_BATTERY = "low_battery"
    SENSOR_ERROR = "sensor_error"
    TAMPER = "tamper"


class DeviceFault(_Msg, tag="fault", frozen=True, kw_only=True, omit_defaults=True):
    """A device fault raised (``active`` true) or cleared (false), mostly by the gateway's supervision."""

    fault: FaultKind
    active: bool
    # A low_battery fault's battery level (%), as the reading that raised or cleared it said; optional (faults
    # from before it stay valid) and on no other kind of fault. Left out when absent (``omit_defaults``), so a
    # fault without it is sent exactly as before.
    level: Annotated[Percent, msgspec.Meta(description="low_battery only: the battery level, %")] | None = None

    def __post_init__(self) -> None:
        if self.level is not None and self.fault is not FaultKind.LOW_BATTERY:
            # msgspec turns this into a ValidationError naming the message's path in a frame
            raise ValueError(f"`level` is for a low_battery fault only, not {self.fault.value}")


TelemetryMessage = BedSample | Battery | Location | EnvReading | AccelSamples
AlarmMessage = Button | Fall | Sos | BedExit | EnvAlarm | DeviceFault
DeviceMessage = TelemetryMessage | AlarmMessage

ALARM_TYPES: Final = (Button, Fall, Sos, BedExit, EnvAlarm, DeviceFault)
TELEMETRY_TYPES: Final = (BedSample, Battery, Location, EnvReading, AccelSamples)


class Frame(msgspec.Struct, frozen=True, forbid_unknown_fields=False, kw_only=True):
    """One uplink MQTT message: a gateway's numbered frame of device messages."""

    v: Literal[1]
    epoch: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    sent: Millis
    msgs: Annotated[list[DeviceMessage], msgspec.Meta(min_length=1, max_length=10_000)]


# --- gateway status -------------------------------------------------------------------------------


class _Status(msgspec.Struct, frozen=True, tag_field="t", forbid_unknown_fields=False, kw_only=True):
    ts: Millis


class Birth(_Status, tag="birth", frozen=True, kw_only=True):
    epoch: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    software: Annotated[str, msgspec.Meta(max_length=64)] = ""
    devices: Annotated[list[DeviceCode], msgspec.Meta(max_length=10_000)] = []


class QueueDepth(msgspec.Struct, frozen=True, forbid_unknown_fields=False, kw_only=True):
    alarm: Annotated[int, msgspec.Meta(ge=0)]
    telemetry: Annotated[int, msgspec.Meta(ge=0)]


class Heartbeat(_Status, tag="heartbeat", frozen=True, kw_only=True):
    queue: QueueDepth
    dropped: Annotated[int, msgspec.Meta(ge=0)] = 0
    unmapped: Annotated[int, msgspec.Meta(ge=0)] = 0
    devices_seen: Annotated[int, msgspec.Meta(ge=0)] = 0
    last_error: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class Death(_Status, tag="death", frozen=True, kw_only=True):
    """The gateway's last will (``ts`` is when the will was registered) or its clean goodbye."""

    clean: bool = False


StatusMessage = Birth | Heartbeat | Death


# --- codecs ---------------------------------------------------------------------------------------

_frame_decoder: Final = msgspec.json.Decoder(Frame)
_status_decoder: Final[msgspec.json.Decoder[StatusMessage]] = msgspec.json.Decoder(StatusMessage)
_encoder: Final = msgspec.json.Encoder()


class PayloadError(ValueError):
    """A payload that is not valid under the contract; ``reason`` names the field and what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# msgspec raises RecursionError (not a DecodeError) for JSON nested deeper than Python's recursion limit allows
TOO_DEEP: Final = "JSON nested too deeply"


def decode_frame(payload: bytes) -> Frame:
    try:
        return _frame_decoder.decode(payload)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise PayloadError(str(exc)) from exc
    except RecursionError:
        raise PayloadError(TOO_DEEP) from None


def decode_status(payload: bytes) -> StatusMessage:
    try:
        return _status_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise PayloadError(str(exc)) from exc
    except RecursionError:
        raise PayloadError(TOO_DEEP) from None


def encode(message: Frame | StatusMessage | DeviceMessage) -> bytes:
    return _encoder.encode(message)


def is_alarm_class(message: DeviceMessage) -> bool:
    return isinstance(message, ALARM_TYPES)


def json_schemas() -> dict[str, object]:
    """JSON Schemas (draft 2020-12) of the frame and the status message, with shared ``$defs``."""
    schemas, components = msgspec.json.schema_components((Frame, StatusMessage), ref_template="#/$defs/{name}")
    fault = components["DeviceFault"]
    # What DeviceFault.__post_init__ checks, which msgspec's schema cannot say: a level is for low_battery only.
    fault["if"] = {"required": ["level"], "properties": {"level": {"type": "integer"}}}
    fault["then"] = {"properties": {"fault": {"const": FaultKind.LOW_BATTERY.value}}}
    return {"frame": schemas[0], "status": schemas[1], "$defs": components}
