"""A scenario's expected claim findings, made concrete: which claim lines, which codes, which facts.

A finding that the claims of the run do not bear out (the scenario expects a claim after a death, but none
was made) is an error of the scenario, reported as such: the truth must hold what the scenario declares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eldercare.simulators.errors import ScenarioError
from eldercare.simulators.run.clock import iso
from eldercare.simulators.run.incidents import Happening
from eldercare.simulators.scenario import model as sm
from eldercare.simulators.scenario.claims import Claim, Month, days_between
from eldercare.simulators.world.model import World

Found = list[dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """What a finding is judged on: the world, the injections it is for, registrations, the claim lines of its
    programme and the month."""

    finding: sm.Finding
    world: World
    targets: list[Happening]
    registered: dict[str, dict[str, Any]]
    lines: list[Claim]
    month: Month

    def person_code(self, person: str) -> str:
        return self.world.issued.institutions[person.split("/", maxsplit=1)[0]].persons[person][1]

    def claims_of(self, *codes: str | None) -> list[Claim]:
        return [c for c in self.lines if c.person in codes]


def resolve(
    scenario: sm.Scenario,
    world: World,
    *,
    happenings: list[Happening],
    registered: dict[str, dict[str, Any]],
    claims: list[Claim],
    month: Month,
) -> Found:
    out: Found = []
    for n, finding in enumerate(scenario.expect_claim_findings):
        targets = [h for h in happenings if finding.for_ is not None and finding.for_ in (h.detail.get("id"), h.kind)]
        lines = [c for c in claims if c.programme == finding.programme]
        found = _JUDGES[finding.finding](Case(finding, world, targets, registered, lines, month))
        if not found:
            reason = f"expect_claim_findings[{n}] ({finding.finding}): the run's claims hold no such case"
            raise ScenarioError(scenario.scenario, None, reason)
        out.extend(
            {"finding": finding.finding, "programme": finding.programme, "month": month.label, **f} for f in found
        )
    return out


def _after_death(case: Case) -> Found:
    found: Found = []
    for h in case.targets:
        assert h.person is not None
        code = case.person_code(h.person)
        alive = days_between(case.month.start, h.t, case.month) if h.t > case.month.start else 0
        mine = [c for c in case.claims_of(code) if c.days > alive]
        if mine:
            found.append(
                {
                    "person": code,
                    "claims": [c.claim_id for c in mine],
                    "died_at": iso(h.t),
                    "days_alive_in_month": alive,
                    "days_claimed": max(c.days for c in mine),
                }
            )
    return found


def _empty_beds(case: Case) -> Found:
    assert case.finding.home is not None
    inst = case.world.plan.institutions[case.finding.home - 1]
    mine = [c for c in case.lines if c.institution == inst.code and not c.person]
    return (
        [{"institution": inst.code, "claims": [c.claim_id for c in mine], "beds": [c.bed for c in mine]}]
        if mine
        else []
    )


def _never_present(case: Case) -> Found:
    found: Found = []
    for h in case.targets:
        reg = case.registered.get(str(h.detail.get("id")), {})
        mine = case.claims_of(reg.get("registered_person"))
        if mine:
            found.append(
                {
                    "person": reg["registered_person"],
                    "bed": reg["registered_bed"],
                    "institution": reg["registered_in"],
                    "claims": [c.claim_id for c in mine],
                    "days_present": 0,
                }
            )
    return found


def _two_homes(case: Case) -> Found:
    found: Found = []
    for h in case.targets:
        assert h.person is not None
        reg = case.registered.get(str(h.detail.get("id")), {})
        codes = (case.person_code(h.person), reg.get("registered_person"))
        mine = case.claims_of(*codes)
        if len({c.institution for c in mine}) >= 2:
            home = case.world.institution(h.person.split("/")[0])
            number = next(p.id_number for p in home.persons if p.key == h.person)
            found.append(
                {
                    "persons": sorted(str(c) for c in codes),
                    "institutions": sorted({c.institution for c in mine}),
                    "claims": [c.claim_id for c in mine],
                    "id_number_masked": f"{number[:6]}********{number[14:]}",
                }
            )
    return found


def _hospital(case: Case) -> Found:
    found: Found = []
    for h in case.targets:
        assert h.person is not None and h.until is not None
        mine = case.claims_of(case.person_code(h.person))
        away = days_between(h.t, h.until, case.month)
        if mine and away:
            found.append(
                {
                    "person": case.person_code(h.person),
                    "claims": [c.claim_id for c in mine],
                    "hospital_from": iso(h.t),
                    "hospital_until": iso(h.until),
                    "days_in_hospital": away,
                    "days_claimed": max(c.days for c in mine),
                }
            )
    return found


def _unverifiable(case: Case) -> Found:
    found: Found = []
    for h in case.targets:
        assert h.until is not None and h.device is not None
        inst = case.world.institution(h.institution)
        bed = next((d.bed for d in inst.devices if d.code == h.device), None)
        bed_code = case.world.issued.institutions[inst.key].beds[bed][1] if bed else ""
        mine = [c for c in case.lines if c.bed == bed_code]
        silent = days_between(h.t, h.until, case.month)
        if mine and silent:
            found.append(
                {
                    "device": h.device,
                    "bed": bed_code,
                    "claims": [c.claim_id for c in mine],
                    "silent_from": iso(h.t),
                    "silent_until": iso(h.until),
                    "days_without_data": silent,
                }
            )
    return found


_JUDGES: dict[str, Callable[[Case], Found]] = {
    "claimed_after_death": _after_death,
    "empty_bed_claimed": _empty_beds,
    "never_present": _never_present,
    "claimed_by_two_homes": _two_homes,
    "absent_in_hospital": _hospital,
    "unverifiable_days": _unverifiable,
}
