"""The devices of a planned home and their models: what watches each bed and who wears what.

A bed sensor and a call button at every bed; a fall radar in each room with a walking elder at high fall risk;
a waist accelerometer for most of those; a GPS wristband for those who may wander. Heartbeats: the seconds
within which a healthy device is heard from (it reports at 0.8 of this).
"""

from __future__ import annotations

import random
from datetime import date, datetime

from eldercare.simulators.world.model import BedPlan, DevicePlan, PersonPlan
from eldercare.simulators.world.residents import at

_MODELS = {
    ("acme", "bed_sensor"): "ACME SleepPad 2",
    ("acme", "button"): "ACME CallKey C1",
    ("acme", "fall_radar"): "ACME FallRadar R60",
    ("acme", "wearable"): "ACME MoveTag W3",
    ("acme", "wristband"): "ACME GeoBand G2",
    ("lianke", "bed_sensor"): "Lianke LK-BS100",
    ("lianke", "button"): "Lianke LK-SOS1",
    ("lianke", "wearable"): "Lianke LK-ACC50",
    ("lianke", "smoke"): "Lianke LK-SD3",
}
# Seconds within which a healthy device is heard from (it reports at 0.8 of this): bed sensors sample all the
# time; battery devices check in every 20 min (button), 5 min (wearable, radar), 10 min (wristband, which also
# sends positions) and 1 h (smoke), as low-power radio devices do.
HEARTBEAT = {"bed_sensor": 60, "button": 1200, "fall_radar": 300, "wearable": 300, "wristband": 600, "smoke": 3600}
_BATTERY = {"button", "wearable", "wristband", "smoke"}


def device_plan(kind: str, code: str, vendor: str, *, bed: str | None, person: str | None, since: str) -> DevicePlan:
    return DevicePlan(
        code=code,
        kind=kind,
        vendor=vendor,
        model=_MODELS[(vendor, kind)],
        heartbeat_s=HEARTBEAT[kind],
        bed=bed,
        person=person,
        bound_at=since,
        battery=kind in _BATTERY,
    )


def devices_of(
    rng: random.Random, *, key: str, code: str, vendor: str, beds: list[BedPlan], persons: list[PersonPlan], since: date
) -> list[DevicePlan]:
    """A bed sensor and a call button at every bed; a fall radar in each room with a resident at high fall
    risk who walks; a waist-worn accelerometer for most of those; a GPS wristband for those who may wander."""
    suffix = code[-6:]
    installed = at(since, 10)
    out: list[DevicePlan] = []
    for n, bed in enumerate(beds, start=1):
        out.append(device_plan("bed_sensor", f"BS-{suffix}-{n:03d}", vendor, bed=bed.key, person=None, since=installed))
        out.append(device_plan("button", f"BT-{suffix}-{n:03d}", vendor, bed=bed.key, person=None, since=installed))
    radar_rooms: set[str] = set()
    by_key = {b.key: b for b in beds}
    for n, person in enumerate(persons, start=1):
        walks = person.capability != "disabled"
        worn_since = max(installed, person.admitted_at or installed, key=datetime.fromisoformat)
        own_bed = by_key[person.bed] if person.bed is not None else None
        if own_bed and walks and person.fall_risk == "high" and own_bed.room_key not in radar_rooms and own_bed.room:
            radar_rooms.add(own_bed.room_key)
            out.append(
                device_plan(
                    "fall_radar",
                    f"FR-{suffix}-{own_bed.room_key}",
                    "acme",
                    bed=own_bed.key,
                    person=None,
                    since=installed,
                )
            )
        first_at_risk = walks and person.fall_risk == "high" and not any(d.kind == "wearable" for d in out)
        if walks and person.fall_risk == "high" and (rng.random() < 0.7 or first_at_risk):
            out.append(
                device_plan("wearable", f"WR-{suffix}-{n:03d}", vendor, bed=None, person=person.key, since=worn_since)
            )
        if person.wander_risk:
            out.append(
                device_plan("wristband", f"WB-{suffix}-{n:03d}", "acme", bed=None, person=person.key, since=worn_since)
            )
    return out
