"""The world file: what the simulator planned (the same for the same seed and day) and what the platform
issued when the plan was registered through its API (ids, bed and person codes, passwords).

``plan`` is a pure function of (region, institutions, households, seed, as-of date, bed range); ``issued``
holds values the platform draws itself (bed and person codes come from its own random source, database ids
from its sequences) and the secrets created for the run (gateway and user passwords). The file is written
with mode 0600 because of those secrets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import msgspec

from eldercare.simulators.errors import SimError

FORMAT: Final = "eldercare-world/1"


class _Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ContactPlan(_Struct, frozen=True, kw_only=True):
    name: str
    phone: str
    relation: str  # 儿子, 女儿, 配偶, ...
    kind: str  # family | emergency
    priority: int


class FamilyUserPlan(_Struct, frozen=True, kw_only=True):
    username: str
    display_name: str
    relation: str


class VisitPlan(_Struct, frozen=True, kw_only=True):
    visited_at: str  # ISO instant with zone
    mode: str  # in_person | phone | video
    outcome: str  # well | needs_follow_up | not_found_home (tried, nobody home: not counted)
    note: str = ""


class PersonPlan(_Struct, frozen=True, kw_only=True):
    key: str  # "H01/R007": institution key, resident number
    name: str
    id_number: str
    sex: str
    birth_date: str  # ISO date
    age: int  # on the world's as-of date
    capability: str
    fall_risk: str
    wander_risk: bool
    heart_rate: float  # resting baseline, beats per minute (the simulated body)
    resp_rate: float  # resting baseline, breaths per minute
    heart_rate_min: float = 50  # the alarm range a nurse set (lower for a low resting rate)
    resp_rate_min: float = 10
    bed: str | None  # bed key
    admitted_at: str | None  # ISO instant with zone
    contacts: list[ContactPlan] = []
    family_user: FamilyUserPlan | None = None
    lives_alone_since: str | None = None  # ISO date: lives alone at home, on the visit list since that day
    visits: list[VisitPlan] = []  # the visits the home's staff made, oldest first


class BedPlan(_Struct, frozen=True, kw_only=True):
    key: str  # "H01/1-305-2": building-room-bed within the institution
    building: str  # 1号楼
    floor: str  # 3层
    room: str  # 305 (None-like "" for a home-care bed)
    room_key: str  # 1-305
    label: str  # 305-2
    kind: str  # nursing | ordinary


class DevicePlan(_Struct, frozen=True, kw_only=True):
    code: str
    kind: str  # bed_sensor | button | fall_radar | wearable | wristband | smoke
    vendor: str  # acme | lianke: the format it speaks to its gateway
    model: str
    heartbeat_s: int
    bed: str | None  # bed key it watches
    person: str | None  # person key who wears it
    bound_at: str  # ISO instant with zone
    battery: bool  # runs on a battery (reports its level)


class ShiftPlan(_Struct, frozen=True, kw_only=True):
    tier: int
    name: str
    starts: str  # HH:MM
    ends: str
    weekdays: list[int]


class StaffPlan(_Struct, frozen=True, kw_only=True):
    username: str
    display_name: str
    role: str  # head | staff
    shifts: list[ShiftPlan] = []


class HouseholdPlan(_Struct, frozen=True, kw_only=True):
    key: str  # "H04/F01"
    address: str
    lon: float
    lat: float
    bed: str  # its home-care bed


class InstitutionPlan(_Struct, frozen=True, kw_only=True):
    key: str  # H01
    code: str  # unified social credit code
    name: str
    kind: str  # residential_home | home_care_provider
    region_code: str  # county
    county: str
    address: str
    lon: float
    lat: float
    star_grade: int
    price_min: int
    price_max: int
    services: list[str]
    contact_name: str
    contact_phone: str
    gateway_id: str
    devices_since: str  # ISO instant: when the devices were installed and bound
    beds: list[BedPlan]
    persons: list[PersonPlan]
    devices: list[DevicePlan]
    staff: list[StaffPlan]
    households: list[HouseholdPlan] = []


class WorldPlan(_Struct, frozen=True, kw_only=True):
    region: str
    institutions_asked: int
    households_asked: int
    seed: int
    as_of: str  # ISO date the ages refer to
    beds_min: int
    beds_max: int
    institutions: list[InstitutionPlan]


class IssuedInstitution(_Struct, frozen=True, kw_only=True):
    id: int
    gateway_password: str
    beds: dict[str, tuple[int, str]]  # bed key -> (id, bed code)
    persons: dict[str, tuple[int, str]]  # person key -> (id, person code)
    devices: dict[str, int]  # device code -> id
    users: dict[str, tuple[int, str]]  # username -> (id, password)


class Issued(_Struct, frozen=True, kw_only=True):
    api: str
    institutions: dict[str, IssuedInstitution]  # institution key -> issued values


class World(_Struct, frozen=True, kw_only=True):
    format: str
    plan: WorldPlan
    issued: Issued

    def institution(self, key: str) -> InstitutionPlan:
        for inst in self.plan.institutions:
            if inst.key == key:
                return inst
        raise SimError(f"the world has no institution {key}")


def save(world: World, path: Path) -> None:
    data = msgspec.json.format(msgspec.json.encode(world), indent=1)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data + b"\n")
    tmp.replace(path)


def load(path: Path) -> World:
    try:
        world = msgspec.json.decode(path.read_bytes(), type=World)
    except OSError as exc:
        raise SimError(f"cannot read the world file {path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise SimError(f"{path} is not a world file of this version: {exc}") from exc
    if world.format != FORMAT:
        raise SimError(f"{path}: format {world.format!r}, this simulator reads {FORMAT!r}")
    return world


def plan_json(plan: WorldPlan) -> bytes:
    """The plan as canonical JSON (for comparing two worlds)."""
    return msgspec.json.encode(plan)
