"""From MQTT bytes to contract messages, so that one bad message spoils nothing else.

Three ways, fastest first, each falling back to the next when it fails:

1. a frame of bed samples only (most of the telemetry) is decoded in one call into :class:`FastBed`
   structs: the contract's ``BedSample`` with every limit except the device code's pattern, which is
   checked once per distinct code instead of once per message (measured: the pattern is 1.1 µs of the
   1.5 µs msgspec spends per reading), and without garbage-collector tracking;
2. any other frame is decoded strictly in one call into the contract's structs;
3. only when that fails is the frame decoded the careful way: the envelope first with its messages left
   raw, then each message on its own. A frame whose envelope is bad is a dead letter as a whole; a bad
   message inside a good frame is a dead letter alone, and its neighbours are stored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal, Protocol

import msgspec

from eldercare.devices import messages as m
from eldercare.devices.topics import Channel, Topic, TopicError, parse_topic

log = logging.getLogger(__name__)


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=False, kw_only=True):
    v: Literal[1]
    epoch: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    sent: m.Millis
    msgs: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=10_000)]


class FastBed(
    msgspec.Struct, tag="bed", tag_field="t", frozen=True, forbid_unknown_fields=False, kw_only=True, gc=False
):
    """``messages.BedSample`` but for the pattern of ``dev`` (checked per distinct code, see ``_codes_valid``).

    ``tests/ingest/test_decode.py`` holds it to the contract: same fields, types, limits and defaults."""

    dev: Annotated[str, msgspec.Meta(max_length=64)]
    ts: m.Millis
    presence: bool
    hr: m.HeartRate | None = None
    rr: m.RespRate | None = None
    move: m.Unit | None = None


class _BedFrame(msgspec.Struct, frozen=True, forbid_unknown_fields=False, kw_only=True, gc=False):
    v: Literal[1]
    epoch: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    sent: m.Millis
    msgs: Annotated[list[FastBed], msgspec.Meta(min_length=1, max_length=10_000)]


_bed_frame: Final = msgspec.json.Decoder(_BedFrame)
_frame: Final = msgspec.json.Decoder(m.Frame)
_envelope: Final = msgspec.json.Decoder(Envelope)
_message: Final = msgspec.json.Decoder(m.DeviceMessage)


class Incoming(Protocol):
    """What the store needs of a received MQTT message."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Received:
    """An MQTT message outside a live connection (a replay of a parked message, a test)."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class BadMessage:
    raw: bytes
    reason: str
    cause: str  # reason class, for metrics: bad_topic, bad_frame, bad_message, bad_status
    index: int | None  # position in the frame; None for the whole payload


@dataclass(slots=True)
class DecodedFrame:
    topic: Topic
    epoch: int
    seq: int
    sent: int  # ms
    n_msgs: int
    messages: list[m.DeviceMessage]
    indexes: list[int] | None = None  # positions of ``messages`` in the frame; None: 0, 1, 2, ...
    bad: list[BadMessage] = field(default_factory=list)
    beds: list[FastBed] = field(default_factory=list)  # the fast path: then ``messages`` is empty

    def index(self, position: int) -> int:
        return position if self.indexes is None else self.indexes[position]


@dataclass(frozen=True, slots=True)
class DecodedStatus:
    topic: Topic
    status: m.StatusMessage


@dataclass(frozen=True, slots=True)
class Undecodable:
    topic: Topic | None
    bad: BadMessage


Decoded = DecodedFrame | DecodedStatus | Undecodable


_topics: dict[str, Topic] = {}


def _topic(text: str) -> Topic:
    """``parse_topic``, remembered: a process sees a few topics per gateway, millions of times."""
    topic = _topics.get(text)
    if topic is None:
        topic = parse_topic(text)
        if len(_topics) > 200_000:
            _topics.clear()
        _topics[text] = topic
    return topic


def decode(item: Incoming) -> Decoded:
    """What ``item`` holds; never raises. A payload no path foresaw is a dead letter, not a dead lane."""
    try:
        return _decode(item)
    except Exception as exc:
        log.exception("ingest: a message on %r could not be decoded", item.topic)
        return Undecodable(None, BadMessage(item.payload, f"cannot be decoded: {type(exc).__name__}: {exc}",
                                            "bad_frame", None))  # fmt: skip


def _decode(item: Incoming) -> Decoded:
    try:
        topic = _topic(item.topic)
    except TopicError as exc:
        return Undecodable(None, BadMessage(item.payload, str(exc), "bad_topic", None))
    channel = topic.channel
    if channel is Channel.STATUS:
        try:
            return DecodedStatus(topic, m.decode_status(item.payload))
        except m.PayloadError as exc:
            return Undecodable(topic, BadMessage(item.payload, f"status: {exc.reason}", "bad_status", None))
    if channel is Channel.COMMAND:
        return Undecodable(topic, BadMessage(item.payload, "command topics are downlink only", "bad_topic", None))
    try:
        beds = _bed_frame.decode(item.payload)
    except (msgspec.DecodeError, RecursionError):
        pass
    else:
        if _codes_valid(beds.msgs):
            return DecodedFrame(topic, beds.epoch, beds.seq, beds.sent, len(beds.msgs), [], beds=beds.msgs)
    try:
        frame = _frame.decode(item.payload)
    except (msgspec.DecodeError, RecursionError):
        return _decode_carefully(topic, item.payload)
    return DecodedFrame(topic, frame.epoch, frame.seq, frame.sent, len(frame.msgs), frame.msgs)


_CODE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$(?!\n)")  # messages.DeviceCode's pattern
_valid_codes: set[str] = set()


def _codes_valid(beds: list[FastBed]) -> bool:
    """Every device code matches the contract's pattern; codes seen valid before are not matched again."""
    known = _valid_codes
    for bed in beds:
        code = bed.dev
        if code not in known:
            if _CODE.match(code) is None:
                return False
            if len(known) > 1_000_000:  # bounded: a flood of made-up codes cannot grow it for ever
                known.clear()
            known.add(code)
    return True


def _decode_carefully(topic: Topic, payload: bytes) -> Decoded:
    try:
        envelope = _envelope.decode(payload)
        msgs: list[msgspec.Raw] | list[bytes] = envelope.msgs
    except msgspec.DecodeError as exc:
        return Undecodable(topic, BadMessage(payload, f"frame: {exc}", "bad_frame", None))
    except RecursionError:  # somewhere too deep: the envelope's own fields may still be read, and each message
        shallow = _shallow_envelope(payload)
        if shallow is None:
            return Undecodable(topic, BadMessage(payload, f"frame: {m.TOO_DEEP}", "bad_frame", None))
        envelope, msgs = shallow
    frame = DecodedFrame(topic, envelope.epoch, envelope.seq, envelope.sent, len(msgs), [], [])
    assert frame.indexes is not None
    for index, raw in enumerate(msgs):
        try:
            frame.messages.append(_message.decode(raw))
            frame.indexes.append(index)
        except msgspec.DecodeError as exc:
            frame.bad.append(BadMessage(bytes(raw), f"msgs[{index}]: {exc}", "bad_message", index))
        except RecursionError:
            frame.bad.append(BadMessage(bytes(raw), f"msgs[{index}]: {m.TOO_DEEP}", "bad_message", index))
    return frame


# --- a frame nested too deeply for the parser somewhere ------------------------------------------------------
# A hostile message nested thousands deep must not take the good messages of its frame down with it. The
# envelope is cut into its members and its messages by a scan that follows nesting with a counter, not
# recursion; each piece is then decoded as usual, and only the pieces still too deep are bad.

_WS: Final = frozenset(b" \t\r\n")
_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")
_SCALAR_END: Final = frozenset(b",]} \t\r\n")
_HEAD: Final = frozenset({b"v", b"epoch", b"seq", b"sent"})  # what the envelope reads (others are ignored)


def _shallow_envelope(payload: bytes) -> tuple[Envelope, list[bytes]] | None:
    """The envelope (its fields decoded from their own bytes) and its messages' raw bytes; ``None`` when the
    payload is not an object with a ``msgs`` array or its shallow fields cannot be decoded."""
    try:
        members = dict(_members(payload, 0, b"{", b"}"))  # the last of a repeated key, as msgspec takes it
        items = [payload[a:b] for _, (a, b) in _members(payload, members[b"msgs"][0], b"[", b"]")]
        head = b",".join(b'"%s":%s' % (key, payload[a:b]) for key, (a, b) in members.items() if key in _HEAD)
        envelope = _envelope.decode(b'{%s%s"msgs":[0]}' % (head, b"," if head else b""))
    except (ValueError, IndexError, KeyError, msgspec.DecodeError, RecursionError):
        return None
    if not 1 <= len(items) <= 10_000:
        return None
    return envelope, items


def _members(buf: bytes, at: int, opening: bytes, closing: bytes) -> list[tuple[bytes, tuple[int, int]]]:
    """The members of the object (``{``, with their keys) or the items of the array (``[``, keys empty)
    starting at ``at``, each as the span of its value's bytes. ValueError/IndexError when malformed."""
    i = _skip_ws(buf, at)
    if buf[i : i + 1] != opening:
        raise ValueError("not the expected container")
    i = _skip_ws(buf, i + 1)
    out: list[tuple[bytes, tuple[int, int]]] = []
    if buf[i : i + 1] == closing:
        return out
    while True:
        key = b""
        if opening == b"{":
            if buf[i] != 0x22:
                raise ValueError("a key is not a string")
            end = _string_end(buf, i)
            key, i = buf[i + 1 : end - 1], _skip_ws(buf, end)
            if buf[i] != 0x3A:
                raise ValueError("no colon after a key")
            i = _skip_ws(buf, i + 1)
        end = _value_end(buf, i)
        out.append((key, (i, end)))
        i = _skip_ws(buf, end)
        if buf[i : i + 1] == closing:
            return out
        if buf[i] != 0x2C:
            raise ValueError("no comma between members")
        i = _skip_ws(buf, i + 1)


def _skip_ws(buf: bytes, i: int) -> int:
    while i < len(buf) and buf[i] in _WS:
        i += 1
    return i


def _string_end(buf: bytes, i: int) -> int:
    """Just past the string whose opening quote is at ``i``."""
    i += 1
    while True:
        j = buf.index(b'"', i)
        slashes = 0
        while buf[j - 1 - slashes] == 0x5C:
            slashes += 1
        if slashes % 2 == 0:
            return j + 1
        i = j + 1


def _value_end(buf: bytes, i: int) -> int:
    """Just past the JSON value starting at ``i``, nesting followed by a counter."""
    if buf[i] == 0x22:
        return _string_end(buf, i)
    if buf[i] not in _OPEN:
        start = i
        while i < len(buf) and buf[i] not in _SCALAR_END:
            i += 1
        if i == start:
            raise ValueError("no value")
        return i
    depth = 0
    while True:
        c = buf[i]
        if c == 0x22:
            i = _string_end(buf, i)
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
