"""A parked message's reason is kept in clear (operators list and search by it) while its payload is sealed, so
the reason must never carry what a device said about a person: a vital sign, a position, a movement. Every
field of every message kind of the contract (``devices/examples``) is given hostile values in turn (out of range,
of the wrong type, a text carrying a marker), in a frame and in a message alone, and no reason ingest writes
repeats the value. The field's name and the rule it broke are what the reason says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eldercare.ingest.decode import DecodedFrame, Received, Undecodable, decode

TOPIC = "eldercare/v1/91420502MA4K8L2X3Q/GW-1/up/telemetry"
EXAMPLES = Path(__file__).resolve().parents[2] / "devices" / "examples"
# Fields whose values are the device's own words, not a person's: the kind tag and the enumerations (a button's
# action, a fault's kind) are named back when unknown, which tells an operator what the device sent wrong.
NOT_PERSONAL = {"t", "action", "fault", "kind", "source"}
MARKER = 987654.321
TEXT = "MARKER-73bpm-31.2N"


def _message_examples() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        example = json.loads(path.read_text())
        if "msgs" in example:  # a frame's example: its messages
            for msg in example["msgs"]:
                out.setdefault(f"{path.stem}:{msg['t']}", msg)
        elif "dev" in example:
            out[path.stem] = example
    return out


def _hostile(value: Any) -> list[Any]:
    """Values a field must refuse, each carrying a marker a reason could echo."""
    if isinstance(value, list):
        return [[[MARKER, MARKER, MARKER]], [TEXT], TEXT]
    return [MARKER, -MARKER, TEXT, [TEXT], {"v": TEXT}, MARKER * 1e300 if isinstance(value, float) else True]


def _reasons(msg: dict[str, Any]) -> list[str]:
    raw = json.dumps(msg).encode()
    frame = b'{"v":1,"epoch":3,"seq":4,"sent":1763775000180,"msgs":[%s]}' % raw
    decoded = decode(Received(TOPIC, frame))
    if isinstance(decoded, Undecodable):
        return [decoded.bad.reason]
    assert isinstance(decoded, DecodedFrame)
    return [bad.reason for bad in decoded.bad]


EXAMPLE_MESSAGES = _message_examples()


def test_the_examples_cover_every_message_kind() -> None:
    kinds = {msg["t"] for msg in EXAMPLE_MESSAGES.values()}
    assert kinds >= {"bed", "battery", "location", "env", "accel", "button", "fall", "sos", "bed_exit", "fault"}


@pytest.mark.parametrize("name", sorted(EXAMPLE_MESSAGES))
def test_no_reason_repeats_a_value_a_device_sent(name: str) -> None:
    example = EXAMPLE_MESSAGES[name]
    assert _reasons(example) == []  # the example itself is good
    checked = 0
    for field, value in example.items():
        if field in NOT_PERSONAL:
            continue
        for bad in _hostile(value):
            reasons = _reasons({**example, field: bad})
            if not reasons:
                continue  # a value the field takes (a float where an int would do)
            checked += 1
            (reason,) = reasons
            assert field in reason, (field, bad, reason)
            for echo in (str(MARKER), "987654", TEXT, "MARKER"):
                assert echo not in reason, (field, bad, reason)
    assert checked > 0
