"""A scenario's injections made concrete in a world: who, which device, when (simulated), as happenings.

Targets are chosen in plan order among the elders that fit (a radar fall needs a room with a radar, a
wander a wristband, ...), so the same world and scenario give the same targets; a target that does not
exist is an error at the line of its injection.
"""

from __future__ import annotations

import random
from datetime import date

import msgspec

from eldercare.simulators.errors import ScenarioError, SimError
from eldercare.simulators.run import noise
from eldercare.simulators.run.clock import SECOND, parse_at, parse_duration
from eldercare.simulators.run.incidents import Happening, Incidents
from eldercare.simulators.run.scene import Elder, Scene
from eldercare.simulators.scenario import model as sm
from eldercare.simulators.scenario.marks import Marked
from eldercare.simulators.world import people
from eldercare.simulators.world.model import InstitutionPlan

_NEEDS = {"press": "button", "wander": "wristband", "smoke": "smoke"}


def origin(scenario: sm.Scenario) -> str:
    return f"scenario:{scenario.scenario}"


def injection_id(item: sm.Inject, index: int) -> str:
    return item.id or f"{item.kind}-{index + 1}"


class Resolver:
    def __init__(self, scenario: sm.Scenario, marked: Marked, scene: Scene, incidents: Incidents) -> None:
        self.scenario = scenario
        self.marked = marked
        self.scene = scene
        self.incidents = incidents
        self._claimed_beds: set[str] = set()

    def _error(self, index: int, reason: str) -> ScenarioError:
        return self.marked.error(("inject", index), reason)

    def happenings(self, *, start: int, end: int) -> list[Happening]:
        return [self._one(i, item, start=start, end=end) for i, item in enumerate(self.scenario.inject)]

    # --- targets -------------------------------------------------------------------------------------

    def _institution(self, index: int, item: sm.Inject) -> InstitutionPlan:
        homes = self.scene.world.plan.institutions
        if item.household is not None:
            providers = [h for inst in homes for h in inst.households]
            if item.household > len(providers):
                raise self._error(index, f"household {item.household}: the world has {len(providers)}")
            return self.scene.institution(providers[item.household - 1].key.split("/")[0])
        assert item.home is not None
        if item.home > len(homes):
            raise self._error(index, f"home {item.home}: the world has {len(homes)} institutions")
        return homes[item.home - 1]

    def _elder(self, index: int, item: sm.Inject, *, needs: str | None) -> Elder:
        inst = self._institution(index, item)
        beds = {b.key: b for b in inst.beds}
        candidates = [self.scene.elders[p.key] for p in inst.persons]
        if item.household is not None:
            providers = [h for i in self.scene.world.plan.institutions for h in i.households]
            bed = providers[item.household - 1].bed
            candidates = [e for e in candidates if e.bed == bed]
        if item.room is not None:
            candidates = [e for e in candidates if e.bed and beds[e.bed].room_key == item.room]
        if item.bed is not None:
            candidates = [e for e in candidates if e.bed and beds[e.bed].label == item.bed]
        if item.person is not None:
            candidates = candidates[item.person - 1 : item.person]
        fitting = [e for e in candidates if needs is None or needs in e.devices]
        if needs == "fall_radar":
            fitting.sort(key=lambda e: e.profile.fall_risk != "high")  # stable: plan order within each group
        if not fitting:
            what = f" with a {needs.replace('_', ' ')}" if needs else ""
            raise self._error(index, f"no resident{what} fits this target in {inst.key} ({inst.name})")
        return fitting[0]

    def _empty_bed(self, index: int, inst: InstitutionPlan, label: str | None) -> str:
        taken = {p.bed for p in inst.persons} | self._claimed_beds
        for bed in inst.beds:
            if bed.key not in taken and (label is None or bed.label == label):
                self._claimed_beds.add(bed.key)
                return bed.key
        raise self._error(index, f"{inst.key} ({inst.name}) has no empty bed" + (f" {label}" if label else ""))

    # --- happenings ----------------------------------------------------------------------------------

    def _one(self, index: int, item: sm.Inject, *, start: int, end: int) -> Happening:
        try:
            t = parse_at(item.at, start=start, end=end)
        except SimError as exc:
            raise self.marked.error(("inject", index, "at"), str(exc)) from None
        rng = noise.rng(self.scene.seed, self.scenario.scenario, "inject", index)
        made, extra = self._make(index, item, t=t, start=start, rng=rng)
        detail = {**made.detail, **extra, "id": injection_id(item, index)}
        return msgspec.structs.replace(made, origin=origin(self.scenario), detail=detail)

    def _make(
        self, index: int, item: sm.Inject, *, t: int, start: int, rng: random.Random
    ) -> tuple[Happening, dict[str, object]]:
        match item:
            case sm.Fall():
                return self._fall(index, item, t=t, rng=rng)
            case sm.Press():
                elder = self._elder(index, item, needs="button")
                default = (10 if item.accidental else 180) * SECOND
                wait = parse_duration(item.cancel_after) if item.cancel_after else default
                h = Happening(
                    kind="press",
                    t=t,
                    until=t + wait,
                    institution=elder.institution,
                    person=elder.key,
                    device=elder.devices["button"],
                    detail={"accidental": item.accidental},
                )
                return h, {}
            case sm.Wander():
                elder = self._elder(index, item, needs="wristband")
                h = Incidents.wander(rng, elder, t, length=parse_duration(item.duration), distance_m=item.distance_m)
                return h, {}
            case sm.Smoke():
                elder = self._elder(index, item, needs="smoke")
                return Incidents.smoke(rng, elder, t, length=parse_duration(item.duration)), {"peak_pct": item.peak_pct}
            case sm.Silence():
                elder = self._elder(index, item, needs=item.device)
                until = t + parse_duration(item.duration)
                device = elder.devices[item.device]
                return Happening(kind="silent", t=t, until=until, institution=elder.institution, device=device), {}
            case sm.Outage():
                inst = self._institution(index, item)
                until = t + parse_duration(item.duration)
                return Happening(kind="outage", t=t, until=until, institution=inst.key, gateway=inst.gateway_id), {}
            case sm.Hospital():
                elder = self._elder(index, item, needs=None)
                until = t + parse_duration(item.duration)
                h = Happening(kind="hospital", t=t, until=until, institution=elder.institution, person=elder.key)
                return h, {"hospital": item.hospital}
            case sm.Death():
                return self._death(index, item, t=t)
            case sm.Ghost():
                return self._ghost(index, item, start=start, rng=rng)
            case sm.Twin():
                return self._twin(index, item, start=start)
        raise self._error(index, f"cannot inject {item.kind}")  # pragma: no cover - the model forbids it

    def _fall(self, index: int, item: sm.Fall, *, t: int, rng: random.Random) -> tuple[Happening, dict[str, object]]:
        elder = self._elder(index, item, needs="wearable" if item.source == "wearable" else "fall_radar")
        recordings = self.incidents.recordings
        if item.source == "wearable" and recordings is None:
            raise self._error(index, "a wearable fall replays SisFall, which is not on this machine")
        h = self.incidents.fall(rng, elder, t, source=item.source, origin="scenario")
        extra: dict[str, object] = {}
        if item.trial is not None and recordings is not None:
            if item.trial not in recordings.falls:
                raise self.marked.error(("inject", index, "trial"), f"{item.trial} is not a SisFall fall trial")
            extra = {"trial": item.trial, "stream_start": t - recordings.impact(item.trial) * 20}
        return msgspec.structs.replace(h, until=t + parse_duration(item.lie)), extra

    def _death(self, index: int, item: sm.Death, *, t: int) -> tuple[Happening, dict[str, object]]:
        elder = self._elder(index, item, needs=None)
        detail: dict[str, object] = {
            "place": item.place,
            "source": item.source,
            "claims_continue": item.claims_continue,
        }
        if item.recorded_after is None:
            detail["recorded"] = False
        else:
            detail["recorded_at"] = t + parse_duration(item.recorded_after)
        return Happening(kind="death", t=t, institution=elder.institution, person=elder.key), detail

    def _ghost(
        self, index: int, item: sm.Ghost, *, start: int, rng: random.Random
    ) -> tuple[Happening, dict[str, object]]:
        inst = self._institution(index, item)
        bed = self._empty_bed(index, inst, item.bed)
        as_of = date.fromisoformat(self.scene.world.plan.as_of)
        fake = people.elder(rng, as_of=as_of, region6=inst.region_code, nursing_bed=True)
        admitted = start - parse_duration(item.admitted_before)
        h = Happening(kind="ghost", t=admitted, institution=inst.key)
        return h, {"home": inst.key, "bed": bed, "name": fake.name, "id_number": fake.id_number, "age": fake.age}

    def _twin(self, index: int, item: sm.Twin, *, start: int) -> tuple[Happening, dict[str, object]]:
        elder = self._elder(index, item, needs=None)
        homes = self.scene.world.plan.institutions
        if item.in_home > len(homes) or homes[item.in_home - 1].key == elder.institution:
            raise self.marked.error(("inject", index, "in_home"), "give another institution of the world")
        other = homes[item.in_home - 1]
        bed = self._empty_bed(index, other, None)
        admitted = start - parse_duration(item.admitted_before)
        h = Happening(kind="twin", t=admitted, institution=elder.institution, person=elder.key)
        return h, {"home": other.key, "bed": bed}
