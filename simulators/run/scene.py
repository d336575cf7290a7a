"""The world as the run needs it: elders with their bodies and devices, devices with their gateway, and the
codes the platform issued (for the ground truth)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eldercare.simulators.errors import SimError
from eldercare.simulators.run.life import Profile
from eldercare.simulators.world.model import DevicePlan, InstitutionPlan, World


@dataclass(slots=True)
class Elder:
    key: str
    institution: str
    profile: Profile
    bed: str | None
    home: tuple[float, float]  # lon, lat of where they live (the home, or their household)
    household: str | None
    devices: dict[str, str] = field(default_factory=dict)  # kind -> code (bed_sensor, button, fall_radar, ...)


@dataclass(frozen=True, slots=True)
class Device:
    code: str
    kind: str
    vendor: str
    institution: str
    gateway: str
    bed: str | None
    person: str | None
    heartbeat_s: int
    battery: bool


@dataclass(slots=True)
class Scene:
    world: World
    seed: int
    elders: dict[str, Elder]
    devices: dict[str, Device]
    gateways: dict[str, InstitutionPlan]  # gateway id -> institution

    @classmethod
    def of(cls, world: World) -> Scene:
        elders: dict[str, Elder] = {}
        devices: dict[str, Device] = {}
        gateways: dict[str, InstitutionPlan] = {}
        for inst in world.plan.institutions:
            gateways[inst.gateway_id] = inst
            homes = {h.bed: (h.lon, h.lat, h.key) for h in inst.households}
            for p in inst.persons:
                lon, lat, household = homes.get(p.bed or "", (inst.lon, inst.lat, None))
                profile = Profile(p.key, p.age, p.capability, p.fall_risk, p.heart_rate, p.resp_rate)
                elders[p.key] = Elder(p.key, inst.key, profile, p.bed, (lon, lat), household)
            by_bed = {p.bed: p.key for p in inst.persons if p.bed is not None}
            for d in inst.devices:
                devices[d.code] = _device(d, inst)
                owner = d.person or by_bed.get(d.bed or "")
                if owner is not None:
                    elders[owner].devices.setdefault(d.kind, d.code)
            # A radar watches its whole room, whichever bed it is bound to.
            room_of = {b.key: b.room_key for b in inst.beds}
            radars = {room_of[d.bed]: d.code for d in inst.devices if d.kind == "fall_radar" and d.bed}
            for p in inst.persons:
                radar = radars.get(room_of.get(p.bed or "", ""))
                if radar is not None:
                    elders[p.key].devices.setdefault("fall_radar", radar)
        return cls(world, world.plan.seed, elders, devices, gateways)

    def institution(self, key: str) -> InstitutionPlan:
        return self.world.institution(key)

    def codes(self, *, person: str | None = None, device: str | None = None, bed: str | None = None) -> dict[str, str]:
        """The platform's codes of what a record is about (institution, gateway, device, bed, room, person)."""
        out: dict[str, str] = {}
        dev = self.devices.get(device) if device else None
        if dev is not None:
            out["device"] = dev.code
            out["device_kind"] = dev.kind
            bed = bed or dev.bed
            person = person or dev.person
        elder = self.elders.get(person) if person else None
        if elder is not None:
            bed = bed or elder.bed
        inst_key = (elder.institution if elder else None) or (dev.institution if dev else None)
        if inst_key is None and bed is not None:
            inst_key = bed.split("/")[0]
        if inst_key is None:
            return out
        inst = self.institution(inst_key)
        issued = self.world.issued.institutions[inst_key]
        out["institution"] = inst.code
        out["gateway"] = inst.gateway_id
        if bed is not None and bed in issued.beds:
            out["bed"] = issued.beds[bed][1]
            label = next(b for b in inst.beds if b.key == bed)
            out["bed_label"] = label.label
            if label.room_key:
                out["room"] = label.room_key
        if elder is not None:
            out["person"] = issued.persons[elder.key][1]
            if elder.household:
                out["household"] = elder.household
        return out

    def find(self, inst_index: int) -> InstitutionPlan:
        homes = self.world.plan.institutions
        if not 1 <= inst_index <= len(homes):
            raise SimError(f"the world has institutions 1 to {len(homes)}, not {inst_index}")
        return homes[inst_index - 1]


def _device(plan: DevicePlan, inst: InstitutionPlan) -> Device:
    return Device(
        code=plan.code,
        kind=plan.kind,
        vendor=plan.vendor,
        institution=inst.key,
        gateway=inst.gateway_id,
        bed=plan.bed,
        person=plan.person,
        heartbeat_s=plan.heartbeat_s,
        battery=plan.battery,
    )
