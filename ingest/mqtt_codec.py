"""MQTT 5 packets, encoded and decoded: only what ingest and the load generator use.

Covered: CONNECT/CONNACK, SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PUBLISH at QoS 0 and 1, PUBACK,
PINGREQ/PINGRESP and DISCONNECT. QoS 2 is never requested (subscriptions ask for QoS 1 at most, so the
broker downgrades), and no topic aliases are allowed (Topic Alias Maximum is left at 0).

:class:`PacketReader` takes bytes as they come off the socket and yields whole packets, many per read,
which is most of why this is faster than paho-mqtt (which reads a packet's header byte by byte).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82
SUBACK: Final = 0x90
UNSUBSCRIBE: Final = 0xA2
UNSUBACK: Final = 0xB0
PINGREQ: Final = 0xC0
PINGRESP: Final = 0xD0
DISCONNECT: Final = 0xE0

SESSION_TAKEN_OVER: Final = 0x8E

REASONS: Final = {
    0x00: "success",
    0x04: "disconnect with will message",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x93: "receive maximum exceeded",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
}

# Property identifier -> wire type, for the packets whose properties are read (CONNACK, DISCONNECT, ...).
_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES: Final = {
    0x01: _BYTE, 0x02: _U32, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT, 0x11: _U32,
    0x12: _UTF8, 0x13: _U16, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE, 0x18: _U32, 0x19: _BYTE,
    0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16, 0x22: _U16, 0x23: _U16, 0x24: _BYTE,
    0x25: _BYTE, 0x26: _PAIR, 0x27: _U32, 0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
PROP_SESSION_EXPIRY: Final = 0x11
PROP_RECEIVE_MAXIMUM: Final = 0x21
PROP_SERVER_KEEP_ALIVE: Final = 0x13
PROP_REASON_STRING: Final = 0x1F

_U16_STRUCT: Final = struct.Struct("!H")
_U32_STRUCT: Final = struct.Struct("!I")


class MalformedPacketError(ValueError):
    """Bytes from the broker that are not a packet this client understands."""


def reason_text(code: int) -> str:
    return REASONS.get(code, f"reason 0x{code:02x}")


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return _U16_STRUCT.pack(len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + varint(len(body)) + body


def _properties(props: dict[int, int]) -> bytes:
    out = bytearray()
    for ident, value in props.items():
        kind = _PROPERTY_TYPES[ident]
        out.append(ident)
        out += _U16_STRUCT.pack(value) if kind == _U16 else _U32_STRUCT.pack(value)
    return varint(len(out)) + bytes(out)


def connect(
    *, client_id: str, username: str, password: str, keepalive_s: int, clean_start: bool, props: dict[int, int]
) -> bytes:
    flags = 0xC0 | (0x02 if clean_start else 0)  # user name and password present
    body = (
        _string("MQTT")
        + bytes((5, flags))
        + _U16_STRUCT.pack(keepalive_s)
        + _properties(props)
        + _string(client_id)
        + _string(username)
        + _string(password)
    )
    return _packet(CONNECT, body)


def subscribe(packet_id: int, topics: Sequence[str], qos: int = 1) -> bytes:
    body = _U16_STRUCT.pack(packet_id) + b"\x00" + b"".join(_string(t) + bytes((qos,)) for t in topics)
    return _packet(SUBSCRIBE, body)


def unsubscribe(packet_id: int, topics: Sequence[str]) -> bytes:
    return _packet(UNSUBSCRIBE, _U16_STRUCT.pack(packet_id) + b"\x00" + b"".join(_string(t) for t in topics))


def publish(topic: str, payload: bytes, *, packet_id: int, qos: int = 1, retain: bool = False) -> bytes:
    head = _string(topic) + (_U16_STRUCT.pack(packet_id) if qos else b"") + b"\x00"
    return bytes((PUBLISH | (qos << 1) | int(retain),)) + varint(len(head) + len(payload)) + head + payload


def puback(packet_id: int) -> bytes:
    """A PUBACK with reason 'success' and no properties: four bytes."""
    return b"\x40\x02" + _U16_STRUCT.pack(packet_id)


def pubacks(packet_ids: Sequence[int]) -> bytes:
    return b"".join(b"\x40\x02" + _U16_STRUCT.pack(pid) for pid in packet_ids)


PINGREQ_PACKET: Final = b"\xc0\x00"


def disconnect(*, reason_code: int = 0, session_expiry_s: int | None = None) -> bytes:
    props = {} if session_expiry_s is None else {PROP_SESSION_EXPIRY: session_expiry_s}
    return _packet(DISCONNECT, bytes((reason_code,)) + _properties(props))


# --- decoding ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packet:
    first_byte: int
    body: bytes

    @property
    def kind(self) -> int:
        return self.first_byte & 0xF0


def read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None if ``data`` ends inside it."""
    value, shift = 0, 0
    for index in range(pos, min(pos + 4, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    if len(data) >= pos + 4:
        raise MalformedPacketError("remaining length longer than four bytes")
    return None


class PacketReader:
    """Accumulates socket bytes; :meth:`packets` yields every complete packet received so far."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def packets(self) -> Iterator[Packet]:
        buf = self._buffer
        pos = 0
        try:
            while len(buf) - pos >= 2:
                length = read_varint(buf, pos + 1)
                if length is None:
                    break
                size, start = length
                end = start + size
                if end > len(buf):
                    break
                packet = Packet(buf[pos], bytes(buf[start:end]))
                pos = end
                yield packet
        finally:
            del buf[:pos]


def read_properties(body: bytes, pos: int) -> tuple[dict[int, object], int]:
    """The properties at ``pos`` (user properties dropped) and the position after them."""
    decoded = read_varint(body, pos)
    if decoded is None:
        raise MalformedPacketError("properties cut short")
    length, pos = decoded
    end = pos + length
    props: dict[int, object] = {}
    while pos < end:
        ident = body[pos]
        kind = _PROPERTY_TYPES.get(ident)
        pos += 1
        if kind in (_BYTE,):
            props[ident], pos = body[pos], pos + 1
        elif kind == _U16:
            props[ident], pos = _U16_STRUCT.unpack_from(body, pos)[0], pos + 2
        elif kind == _U32:
            props[ident], pos = _U32_STRUCT.unpack_from(body, pos)[0], pos + 4
        elif kind == _VARINT:
            value = read_varint(body, pos)
            if value is None:
                raise MalformedPacketError("property cut short")
            props[ident], pos = value
        elif kind in (_UTF8, _BINARY):
            size = _U16_STRUCT.unpack_from(body, pos)[0]
            raw = body[pos + 2 : pos + 2 + size]
            props[ident] = raw.decode(errors="replace") if kind == _UTF8 else raw
            pos += 2 + size
        elif kind == _PAIR:
            for _ in range(2):
                pos += 2 + _U16_STRUCT.unpack_from(body, pos)[0]
        else:
            raise MalformedPacketError(f"unknown property 0x{ident:02x}")
    if pos != end:
        raise MalformedPacketError("properties overrun their length")
    return props, end


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason_code: int
    properties: dict[int, object]


def parse_connack(body: bytes) -> ConnAck:
    if len(body) < 2:
        raise MalformedPacketError("CONNACK too short")
    props = read_properties(body, 2)[0] if len(body) > 2 else {}
    return ConnAck(bool(body[0] & 1), body[1], props)


def parse_ack_reasons(body: bytes) -> tuple[int, list[int]]:
    """SUBACK / UNSUBACK: the packet id and one reason code per topic."""
    packet_id = _U16_STRUCT.unpack_from(body, 0)[0]
    _, pos = read_properties(body, 2)
    return packet_id, list(body[pos:])


def parse_disconnect(body: bytes) -> tuple[int, str]:
    """A server's DISCONNECT: reason code and reason string (may be empty)."""
    if not body:
        return 0, ""
    reason = body[0]
    text = ""
    if len(body) > 1:
        props, _ = read_properties(body, 1)
        text = str(props.get(PROP_REASON_STRING, ""))
    return reason, text


def parse_publish(first_byte: int, body: bytes) -> tuple[str, bytes, int, int, bool]:
    """(topic, payload, packet id (0 at QoS 0), qos, dup). Properties are skipped, not decoded."""
    qos = (first_byte >> 1) & 3
    topic_len = (body[0] << 8) | body[1]
    pos = 2 + topic_len
    topic = body[2:pos].decode()
    packet_id = 0
    if qos:
        packet_id = (body[pos] << 8) | body[pos + 1]
        pos += 2
    props_len = body[pos]
    if props_len < 0x80:
        pos += 1 + props_len
    else:
        decoded = read_varint(body, pos)
        if decoded is None:
            raise MalformedPacketError("PUBLISH properties cut short")
        pos = decoded[1] + decoded[0]
    return topic, body[pos:], packet_id, qos, bool(first_byte & 0x08)
