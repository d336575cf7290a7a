"""Simulated vendor devices: contract messages written in vendor A's or vendor B's own format.

The inverse of ``gateway/mappings/acme.toml`` and ``lianke.toml``, for the tests, the benchmarks and the
simulators: ``encode("acme", message)`` is a payload the gateway maps back to ``message`` (a test checks
the round trip for every supported type). Times survive the round trip only to what the vendor sends:
vendor A sends seconds with three decimals, so milliseconds are kept.
"""

from __future__ import annotations

import json
from typing import Any, Final

from eldercare.devices import messages as m

VENDORS: Final = ("acme", "lianke", "contract")


class NotSupported(ValueError):  # noqa: N818 - reads as what it says
    def __init__(self, vendor: str, message: m.DeviceMessage) -> None:
        super().__init__(f"vendor {vendor} has no format for {type(message).__name__}")


def topic(vendor: str, device: str) -> str:
    """The topic a device of ``vendor`` publishes to on the home's broker."""
    return {"acme": f"acme/{device}/up", "lianke": f"lianke/up/{device}", "contract": f"contract/{device}"}[vendor]


def encode(vendor: str, message: m.DeviceMessage) -> bytes:
    if vendor == "acme":
        return json.dumps(_acme(message), separators=(",", ":")).encode()
    if vendor == "lianke":
        return ";".join(f"{k}={v}" for k, v in _lianke(message).items()).encode()
    if vendor == "contract":
        return m.encode(message)
    raise ValueError(f"unknown vendor {vendor!r}")


def _acme(message: m.DeviceMessage) -> dict[str, Any]:  # noqa: PLR0912 - one case per type
    base: dict[str, Any] = {"deviceId": message.dev, "time": round(message.ts / 1000, 3)}
    match message:
        case m.BedSample():
            doc = base | {"type": "vitals", "inBed": int(message.presence)}
            if message.hr is not None:
                doc["heartRate"] = message.hr
            if message.rr is not None:
                doc["breath"] = message.rr
            if message.move is not None:
                doc["motion"] = round(message.move * 100, 6)
            return doc
        case m.Battery():
            return base | {"type": "status", "battery": message.level}
        case m.BedExit():
            return base | {"type": "back" if message.back else "leave"}
        case m.Button():
            return base | {
                "type": "call",
                "state": "pressed" if message.action is m.ButtonAction.PRESS else "cancelled",
            }
        case m.Fall(source="radar"):
            doc = base | {"type": "fall"}
            if message.confidence is not None:
                doc["confidence"] = round(message.confidence * 100, 6)
            return doc
        case m.Location():
            doc = base | {"type": "gps", "lat": message.lat, "lng": message.lon}
            if message.acc is not None:
                doc["accuracy"] = message.acc
            return doc
        case m.Sos():
            return base | {"type": "sos", "lat": message.lat, "lng": message.lon}
        case m.AccelSamples():
            return base | {"type": "accel", "rate": message.hz, "mg": [[v / 0.256 for v in s] for s in message.xyz]}
    raise NotSupported("acme", message)


def _lianke(message: m.DeviceMessage) -> dict[str, Any]:
    base: dict[str, Any] = {"id": message.dev, "ts": message.ts}
    match message:
        case m.Button():
            return base | {"ev": "key", "act": 1 if message.action is m.ButtonAction.PRESS else 0}
        case m.BedSample():
            doc = base | {"ev": "bed", "p": int(message.presence)}
            if message.hr is not None:
                doc["hr"] = message.hr
            if message.rr is not None:
                doc["rr"] = message.rr
            return doc
        case m.BedExit():
            return base | {"ev": "in" if message.back else "out"}
        case m.Battery():
            return base | {"ev": "hb", "bat": message.level}
        case m.EnvReading(kind="smoke"):
            return base | {"ev": "smoke", "val": message.value}
        case m.EnvAlarm(kind="smoke"):
            return base | {"ev": "smoke_alarm", "on": int(message.active)}
        case m.AccelSamples():
            return base | {"ev": "acc", "hz": message.hz, "d": "|".join(",".join(map(str, s)) for s in message.xyz)}
    raise NotSupported("lianke", message)
