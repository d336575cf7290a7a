"""From MQTT bytes to contract messages, one message at a time, so one bad message spoils nothing else.

A frame's envelope is decoded first with its messages left raw; each message is then decoded on its own.
A frame whose envelope is bad is a dead letter as a whole; a bad message inside a good frame is a dead
letter alone, and its neighbours are stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

import msgspec

from eldercare.devices import messages as m
from eldercare.devices.topics import Channel, Topic, TopicError, parse_topic


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=False, kw_only=True):
    v: Literal[1]
    epoch: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    sent: m.Millis
    msgs: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=10_000)]


_envelope: Final = msgspec.json.Decoder(Envelope)
_message: Final = msgspec.json.Decoder(m.DeviceMessage)


@dataclass(frozen=True, slots=True)
class Received:
    """An MQTT message as the broker delivered it; ``mid`` and ``qos`` are needed to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    arrived: float  # time.time() on arrival


@dataclass(frozen=True, slots=True)
class BadMessage:
    raw: bytes
    reason: str
    index: int | None  # position in the frame; None for the whole payload


@dataclass(slots=True)
class DecodedFrame:
    topic: Topic
    envelope: Envelope
    messages: list[tuple[int, m.DeviceMessage]] = field(default_factory=list)
    bad: list[BadMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DecodedStatus:
    topic: Topic
    status: m.StatusMessage


@dataclass(frozen=True, slots=True)
class Undecodable:
    topic: Topic | None
    bad: BadMessage


Decoded = DecodedFrame | DecodedStatus | Undecodable


def decode(item: Received) -> Decoded:
    try:
        topic = parse_topic(item.topic)
    except TopicError as exc:
        return Undecodable(None, BadMessage(item.payload, str(exc), None))
    if topic.channel is Channel.STATUS:
        try:
            return DecodedStatus(topic, m.decode_status(item.payload))
        except m.PayloadError as exc:
            return Undecodable(topic, BadMessage(item.payload, f"status: {exc.reason}", None))
    if topic.channel is Channel.COMMAND:
        return Undecodable(topic, BadMessage(item.payload, "command topics are downlink only", None))
    try:
        envelope = _envelope.decode(item.payload)
    except msgspec.DecodeError as exc:
        return Undecodable(topic, BadMessage(item.payload, f"frame: {exc}", None))
    frame = DecodedFrame(topic, envelope)
    for index, raw in enumerate(envelope.msgs):
        try:
            frame.messages.append((index, _message.decode(raw)))
        except msgspec.DecodeError as exc:
            frame.bad.append(BadMessage(bytes(raw), f"msgs[{index}]: {exc}", index))
    return frame
