"""The message types of contract v1: strict in shape, lenient in extras, errors that name the field."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from typing import Any

import pytest

from eldercare.devices import messages
from eldercare.devices.messages import PayloadError

T0 = 1_763_775_000_000


def _frame(*msgs: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"v": 1, "epoch": 7, "seq": 0, "sent": T0, "msgs": list(msgs)}
    frame.update(envelope)
    return frame


def _button(**fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"t": "button", "dev": "BTN-1", "ts": T0, "action": "press"}
    msg.update(fields)
    return msg


def _fault(fault: str, **fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"t": "fault", "dev": "BTN-1", "ts": T0, "fault": fault, "active": True}
    msg.update(fields)
    return msg


def _bytes(payload: object) -> bytes:
    return json.dumps(payload).encode()


GOOD_MESSAGES: list[dict[str, Any]] = [
    {"t": "bed", "dev": "BED-1", "ts": T0, "presence": True, "hr": 61.0, "rr": 14.5, "move": 0.2},
    {"t": "bed", "dev": "BED-1", "ts": T0, "presence": False},
    {"t": "battery", "dev": "WB-1", "ts": T0, "level": 0},
    {"t": "location", "dev": "WB-1", "ts": T0, "lat": -90, "lon": 180, "acc": 3.5},
    {"t": "env", "dev": "SMK-1", "ts": T0, "kind": "water", "value": 1},
    {"t": "accel", "dev": "WB-1", "ts": T0, "hz": 50, "xyz": [[0, 0, 256], [-3, 4, 250]]},
    {"t": "button", "dev": "BTN-1", "ts": T0, "action": "cancel"},
    {"t": "fall", "dev": "RADAR-1", "ts": T0, "source": "wearable"},
    {"t": "sos", "dev": "WB-1", "ts": T0},
    {"t": "bed_exit", "dev": "BED-1", "ts": T0, "back": True},
    {"t": "env_alarm", "dev": "GAS-1", "ts": T0, "kind": "gas", "active": False},
    {"t": "fault", "dev": "BTN-1", "ts": T0, "fault": "low_battery", "active": True},
    {"t": "fault", "dev": "BTN-1", "ts": T0, "fault": "low_battery", "active": True, "level": 12},
    {"t": "fault", "dev": "BTN-1", "ts": T0, "fault": "low_battery", "active": False, "level": 100},
    {"t": "fault", "dev": "BTN-1", "ts": T0, "fault": "offline", "active": True, "level": None},
]

TYPE_OF_TAG: dict[str, type[Any]] = {
    "bed": messages.BedSample,
    "battery": messages.Battery,
    "location": messages.Location,
    "env": messages.EnvReading,
    "accel": messages.AccelSamples,
    "button": messages.Button,
    "fall": messages.Fall,
    "sos": messages.Sos,
    "bed_exit": messages.BedExit,
    "env_alarm": messages.EnvAlarm,
    "fault": messages.DeviceFault,
}


@pytest.mark.parametrize("msg", GOOD_MESSAGES, ids=lambda msg: str(msg["t"]))
def test_good_messages_decode_to_their_type(msg: dict[str, Any]) -> None:
    frame = messages.decode_frame(_bytes(_frame(msg)))
    (decoded,) = frame.msgs
    assert type(decoded) is TYPE_OF_TAG[msg["t"]]
    for name, value in msg.items():
        if name != "t":
            got = getattr(decoded, name)
            assert (list(map(list, got)) if name == "xyz" else got) == value


def test_frame_envelope_decodes() -> None:
    frame = messages.decode_frame(_bytes(_frame(*GOOD_MESSAGES, epoch=2**53, seq=41)))
    assert (frame.v, frame.epoch, frame.seq, frame.sent) == (1, 2**53, 41, T0)
    assert [m.__struct_config__.tag for m in frame.msgs] == [m["t"] for m in GOOD_MESSAGES]


def test_tags_cover_the_union_once_each() -> None:
    union = typing.get_args(messages.DeviceMessage)
    assert set(union) == set(messages.ALARM_TYPES) | set(messages.TELEMETRY_TYPES)
    assert set(messages.ALARM_TYPES).isdisjoint(messages.TELEMETRY_TYPES)
    assert set(TYPE_OF_TAG.values()) == set(union)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        (_frame(_button(), v=2), "$.v"),
        (_frame(_button(), epoch=-1), "$.epoch"),
        (_frame(_button(), seq="1"), "$.seq"),
        (_frame(_button(), sent=1_000), "$.sent"),
        ({"v": 1, "epoch": 1, "sent": T0, "msgs": [_button()]}, "`seq`"),
        (_frame(), "$.msgs"),
        (_frame(_button(t="buttn")), "$.msgs[0].t"),
        (_frame(_button(), {"dev": "BTN-1", "ts": T0, "action": "press"}), "`t` - at `$.msgs[1]`"),
        (_frame(_button(action="hold")), "$.msgs[0].action"),
        (_frame(_button(dev="")), "$.msgs[0].dev"),
        (_frame(_button(dev="bed 1")), "$.msgs[0].dev"),
        (_frame(_button(dev="BTN-1\n")), "$.msgs[0].dev"),
        (_frame(_button(dev="x" * 65)), "$.msgs[0].dev"),
        (_frame(_button(ts=4_102_444_800_001)), "$.msgs[0].ts"),
        (_frame(_button(ts=1.5e12)), "$.msgs[0].ts"),
        (_frame({"t": "battery", "dev": "WB-1", "ts": T0, "level": 101}), "$.msgs[0].level"),
        (_frame({"t": "bed", "dev": "BED-1", "ts": T0, "presence": True, "hr": 301}), "$.msgs[0].hr"),
        (_frame({"t": "bed", "dev": "BED-1", "ts": T0, "presence": "yes"}), "$.msgs[0].presence"),
        (_frame({"t": "location", "dev": "WB-1", "ts": T0, "lat": 91, "lon": 0}), "$.msgs[0].lat"),
        (_frame({"t": "env", "dev": "SMK-1", "ts": T0, "kind": "fire", "value": 1}), "$.msgs[0].kind"),
        (_frame({"t": "accel", "dev": "WB-1", "ts": T0, "hz": 50, "xyz": []}), "$.msgs[0].xyz"),
        (_frame({"t": "accel", "dev": "WB-1", "ts": T0, "hz": 50, "xyz": [[1, 2]]}), "$.msgs[0].xyz[0]"),
        (_frame({"t": "fall", "dev": "R-1", "ts": T0, "source": "radar", "confidence": 1.5}), "$.msgs[0].confidence"),
        (_frame({"t": "fault", "dev": "B-1", "ts": T0, "fault": "broken", "active": True}), "$.msgs[0].fault"),
        (_frame(_fault("low_battery", level=101)), "$.msgs[0].level"),
        (_frame(_fault("low_battery", level=-1)), "$.msgs[0].level"),
        (_frame(_fault("low_battery", level=12.5)), "$.msgs[0].level"),
        (_frame(_fault("low_battery", level="12")), "$.msgs[0].level"),
        (
            _frame(_button(), _fault("offline", level=12)),
            "`level` is for a low_battery fault only, not offline - at `$.msgs[1]`",
        ),
        (_frame(_fault("tamper", level=0)), "`level` is for a low_battery fault only, not tamper - at `$.msgs[0]`"),
        (_frame(_fault("sensor_error", level=50)), "`level` is for a low_battery fault only"),
    ],
)
def test_bad_frames_are_rejected_naming_the_field(payload: dict[str, Any], where: str) -> None:
    with pytest.raises(PayloadError) as info:
        messages.decode_frame(_bytes(payload))
    assert where in info.value.reason
    assert str(info.value) == info.value.reason


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'{"v": 1', '{"v": 1, "x": "\xff"}'.encode("latin-1")])
def test_garbage_is_a_payload_error(raw: bytes) -> None:
    with pytest.raises(PayloadError):
        messages.decode_frame(raw)
    with pytest.raises(PayloadError):
        messages.decode_status(raw)


def test_unknown_fields_are_ignored_everywhere() -> None:
    payload = _frame(_button(battery_mv=2900, vendor={"fw": "1.2"}), gateway_build="abc")
    frame = messages.decode_frame(_bytes(payload))
    assert frame.msgs == [messages.Button(dev="BTN-1", ts=T0, action=messages.ButtonAction.PRESS)]
    status = messages.decode_status(
        _bytes({"t": "heartbeat", "ts": T0, "queue": {"alarm": 1, "telemetry": 2, "bulk": 3}, "cpu": 0.3})
    )
    assert status == messages.Heartbeat(ts=T0, queue=messages.QueueDepth(alarm=1, telemetry=2))


def test_status_messages_decode_with_defaults() -> None:
    assert messages.decode_status(_bytes({"t": "death", "ts": T0})) == messages.Death(ts=T0, clean=False)
    birth = messages.decode_status(_bytes({"t": "birth", "ts": T0, "epoch": 3}))
    assert birth == messages.Birth(ts=T0, epoch=3, software="", devices=[])


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"t": "hello", "ts": T0}, "$.t"),
        ({"ts": T0}, "`t`"),
        ({"t": "birth", "ts": T0}, "`epoch`"),
        ({"t": "heartbeat", "ts": T0, "queue": {"alarm": -1, "telemetry": 0}}, "$.queue.alarm"),
        ({"t": "birth", "ts": T0, "epoch": 1, "devices": ["ok", "not ok"]}, "$.devices[1]"),
        ({"t": "death", "ts": T0, "clean": "no"}, "$.clean"),
    ],
)
def test_bad_status_is_rejected_naming_the_field(payload: dict[str, Any], where: str) -> None:
    with pytest.raises(PayloadError) as info:
        messages.decode_status(_bytes(payload))
    assert where in info.value.reason


def test_a_frame_is_not_a_status_and_back() -> None:
    with pytest.raises(PayloadError):
        messages.decode_status(_bytes(_frame(_button())))
    with pytest.raises(PayloadError):
        messages.decode_frame(_bytes({"t": "death", "ts": T0}))


def _all_values() -> list[messages.Frame | messages.StatusMessage]:
    frame = messages.decode_frame(_bytes(_frame(*GOOD_MESSAGES)))
    return [
        frame,
        messages.Birth(ts=T0, epoch=9, software="gw 1.0", devices=["A", "B"]),
        messages.Heartbeat(ts=T0, queue=messages.QueueDepth(alarm=0, telemetry=5), dropped=2, last_error="x"),
        messages.Death(ts=T0, clean=True),
    ]


@pytest.mark.parametrize("value", _all_values(), ids=lambda value: type(value).__name__)
def test_round_trip(value: messages.Frame | messages.StatusMessage) -> None:
    decode: Callable[[bytes], object] = (
        messages.decode_frame if isinstance(value, messages.Frame) else messages.decode_status
    )
    encoded = messages.encode(value)
    assert decode(encoded) == value
    assert messages.encode(decode(encoded)) == encoded  # type: ignore[arg-type]


def test_encode_writes_the_tag_and_omits_nothing() -> None:
    encoded = json.loads(messages.encode(messages.Sos(dev="WB-1", ts=T0)))
    assert encoded == {"t": "sos", "dev": "WB-1", "ts": T0, "lat": None, "lon": None}


def test_alarm_classification() -> None:
    frame = messages.decode_frame(_bytes(_frame(*GOOD_MESSAGES)))
    alarms = {m.__struct_config__.tag for m in frame.msgs if messages.is_alarm_class(m)}
    assert alarms == {"button", "fall", "sos", "bed_exit", "env_alarm", "fault"}


def test_messages_are_frozen() -> None:
    button = messages.Button(dev="BTN-1", ts=T0, action=messages.ButtonAction.PRESS)
    with pytest.raises(AttributeError):
        button.dev = "other"  # type: ignore[misc]


def test_a_fault_says_its_battery_level_only_when_it_has_one() -> None:
    """Built in code, a level on another kind of fault is refused as on the wire; without a level a fault is sent
    as before the field was added (what older platforms and tools expect to read)."""
    low = messages.DeviceFault(dev="BTN-1", ts=T0, fault=messages.FaultKind.LOW_BATTERY, active=True, level=12)
    assert json.loads(messages.encode(low))["level"] == 12
    offline = messages.DeviceFault(dev="BTN-1", ts=T0, fault=messages.FaultKind.OFFLINE, active=True)
    assert messages.encode(offline) == b'{"t":"fault","dev":"BTN-1","ts":%d,"fault":"offline","active":true}' % T0
    with pytest.raises(ValueError, match="`level` is for a low_battery fault only, not tamper"):
        messages.DeviceFault(dev="BTN-1", ts=T0, fault=messages.FaultKind.TAMPER, active=True, level=12)
    frame = messages.Frame(v=1, epoch=1, seq=0, sent=T0, msgs=[low, offline])
    assert messages.decode_frame(messages.encode(frame)) == frame
