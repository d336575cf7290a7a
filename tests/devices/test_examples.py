"""Every example payload in devices/examples/ is valid by the JSON Schema and by the decoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from eldercare.devices import asyncapi, messages

EXAMPLES = sorted(asyncapi.EXAMPLES_DIR.glob("*.json"))

DEVICE_EXAMPLES = {
    "button_press": "button",
    "button_cancel": "button",
    "bed_sample": "bed",
    "battery": "battery",
    "location": "location",
    "env_reading": "env",
    "accel_samples": "accel",
    "fall": "fall",
    "sos": "sos",
    "bed_exit": "bed_exit",
    "env_alarm": "env_alarm",
    "fault": "fault",
}
STATUS_EXAMPLES = {"birth": messages.Birth, "heartbeat": messages.Heartbeat, "death": messages.Death}


def _validator(which: str) -> jsonschema.Draft202012Validator:
    schemas = messages.json_schemas()
    root = schemas[which]
    assert isinstance(root, dict)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": schemas["$defs"]}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _load(path: Path) -> dict[str, Any]:
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(payload, dict)
    return payload


def test_there_is_one_example_per_message_type_and_no_other() -> None:
    assert {path.stem for path in EXAMPLES} == set(DEVICE_EXAMPLES) | set(STATUS_EXAMPLES)
    assert set(DEVICE_EXAMPLES.values()) == {
        tag for cls in (*messages.ALARM_TYPES, *messages.TELEMETRY_TYPES) if (tag := cls.__struct_config__.tag)
    }


@pytest.mark.parametrize("name", sorted(DEVICE_EXAMPLES))
def test_device_examples_are_valid_frames(name: str) -> None:
    path = asyncapi.EXAMPLES_DIR / f"{name}.json"
    payload = _load(path)
    _validator("frame").validate(payload)
    frame = messages.decode_frame(path.read_bytes())
    assert frame.msgs
    assert {msg.__struct_config__.tag for msg in frame.msgs} == {DEVICE_EXAMPLES[name]}
    # one lane per frame: all alarm-class or all telemetry
    assert len({messages.is_alarm_class(msg) for msg in frame.msgs}) == 1
    assert all(frame.sent >= msg.ts for msg in frame.msgs)


def test_button_examples_press_and_cancel() -> None:
    press = messages.decode_frame((asyncapi.EXAMPLES_DIR / "button_press.json").read_bytes()).msgs[0]
    cancel = messages.decode_frame((asyncapi.EXAMPLES_DIR / "button_cancel.json").read_bytes()).msgs[0]
    assert isinstance(press, messages.Button)
    assert isinstance(cancel, messages.Button)
    assert (press.action, cancel.action) == (messages.ButtonAction.PRESS, messages.ButtonAction.CANCEL)
    assert press.dev == cancel.dev


@pytest.mark.parametrize("name", sorted(STATUS_EXAMPLES))
def test_status_examples_are_valid(name: str) -> None:
    path = asyncapi.EXAMPLES_DIR / f"{name}.json"
    _validator("status").validate(_load(path))
    assert type(messages.decode_status(path.read_bytes())) is STATUS_EXAMPLES[name]


def test_the_schema_rejects_what_the_decoder_rejects() -> None:
    """The validator used above is not a pushover: broken copies of the examples fail both ways."""
    frame = _load(asyncapi.EXAMPLES_DIR / "battery.json")
    broken = [
        {**frame, "v": 2},
        {**frame, "msgs": []},
        {**frame, "msgs": [{**frame["msgs"][0], "level": 101}]},
        {**frame, "msgs": [{**frame["msgs"][0], "t": "batt"}]},
        {**frame, "msgs": [{**frame["msgs"][0], "dev": "WB-7A21C3\n"}]},
    ]
    for payload in broken:
        with pytest.raises(jsonschema.ValidationError):
            _validator("frame").validate(payload)
        with pytest.raises(messages.PayloadError):
            messages.decode_frame(json.dumps(payload).encode())


def test_accel_example_schema_checks_the_triples() -> None:
    frame = _load(asyncapi.EXAMPLES_DIR / "accel_samples.json")
    msg = frame["msgs"][0]
    bad = {**frame, "msgs": [{**msg, "xyz": [*msg["xyz"], [1, 2, 3, 4]]}]}
    with pytest.raises(jsonschema.ValidationError):
        _validator("frame").validate(bad)
    with pytest.raises(messages.PayloadError):
        messages.decode_frame(json.dumps(bad).encode())


def test_the_schema_and_the_decoder_agree_on_a_fault_level() -> None:
    """A battery level on a low_battery fault only (what msgspec's own schema cannot say), 0 to 100, and optional."""
    frame = _load(asyncapi.EXAMPLES_DIR / "fault.json")
    msg = {**frame["msgs"][0], "fault": "low_battery"}
    good = [
        msg,
        {**msg, "level": 0},
        {**msg, "level": 100, "active": False},
        {**msg, "fault": "offline", "level": None},
    ]
    bad = [
        {**msg, "fault": "offline", "level": 12},
        {**msg, "fault": "tamper", "level": 0},
        {**msg, "level": 101},
        {**msg, "level": -1},
        {**msg, "level": "12"},
    ]
    for one in good:
        payload = {**frame, "msgs": [one]}
        _validator("frame").validate(payload)
        messages.decode_frame(json.dumps(payload).encode())
    for one in bad:
        payload = {**frame, "msgs": [one]}
        with pytest.raises(jsonschema.ValidationError):
            _validator("frame").validate(payload)
        with pytest.raises(messages.PayloadError):
            messages.decode_frame(json.dumps(payload).encode())
