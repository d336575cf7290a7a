"""Subsidy claims of a simulated month, and the findings a verification is expected to make on them.

**The claim file** (CSV, UTF-8, header first) is what the subsidy verification reads, one line per claim:

``claim_id,institution_code,programme,month,person_code,bed_code,days,amount_yuan``

- ``programme``: ``operating_subsidy`` (运营补贴, claimed by a home per occupied bed; 300 yuan a month for a
  nursing-type bed, 200 for an ordinary one, pro rata per day), ``old_age_allowance`` (高龄津贴, per elder from
  80: 100 yuan a month at 80-89, 300 at 90-99, 500 from 100; the whole month once on the month's roll) or
  ``home_care_bed`` (家庭养老床位, claimed by the provider per household bed; 300 yuan a month pro rata);
  amounts are the simulator's, not an official table;
- ``month``: ``YYYY-MM``; ``days``: the days of that month claimed; ``person_code``/``bed_code``: the
  platform's codes (a claim for an empty bed has no person).

Claims follow what the claimant's registry says at the end of the month (an admission, a registration, a
death recorded by then) - that is what honest and dishonest claimants alike put on paper; the truth (who was
really there) is in the ground truth. A scenario adds what it declares: claims for empty beds
(``pad_empty_beds``), a death not taken off the rolls (``claims_continue``). Each expected finding is
written to the ground truth as a line of kind ``expect_claim_finding`` with the claims and facts involved.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from eldercare.simulators.errors import ScenarioError
from eldercare.simulators.run.clock import DAY, day_of_date, day_start, from_iso, iso, local_day, month_end
from eldercare.simulators.run.incidents import FOREVER, Happening
from eldercare.simulators.scenario import model as sm
from eldercare.simulators.world.model import World
from eldercare.simulators.world.people import age_on

HEADER = ["claim_id", "institution_code", "programme", "month", "person_code", "bed_code", "days", "amount_yuan"]
OPERATING = {"nursing": 300.0, "ordinary": 200.0}
HOME_CARE_BED = 300.0
# The same amounts as the platform's schedules (``POST /subsidy/schedules`` rates, by the platform's programme
# codes): a region that pays what the simulated homes claim.
SCHEDULES: dict[str, list[dict[str, Any]]] = {
    "operating_subsidy": [{"bed_kind": "nursing", "monthly_yuan": "300"}, {"monthly_yuan": "200"}],
    "old_age_allowance": [
        {"min_age": 80, "max_age": 89, "monthly_yuan": "100"},
        {"min_age": 90, "max_age": 99, "monthly_yuan": "300"},
        {"min_age": 100, "monthly_yuan": "500"},
    ],
    "home_care_bed_subsidy": [{"monthly_yuan": "300"}],
}


def allowance(age: int) -> float:
    return 500.0 if age >= 100 else 300.0 if age >= 90 else 100.0 if age >= 80 else 0.0


@dataclass
class Claim:
    institution: str
    programme: str
    month: str
    person: str
    bed: str
    days: int
    amount: float
    claim_id: str = ""


@dataclass
class Stay:
    """A registered occupancy: who (codes) in which bed, from when to when, as the claimant's registry says."""

    institution: str  # code
    inst_key: str
    kind: str  # institution kind
    person_key: str | None
    person: str
    bed_key: str
    bed: str
    bed_kind: str
    start: int
    end: int
    birth: date | None
    facts: dict[str, Any] = field(default_factory=dict)


def _days(start: int, end: int, lo: int, hi: int) -> int:
    """Local calendar days of [lo, hi) touched by [start, end)."""
    a, b = max(start, lo), min(end, hi)
    return 0 if b <= a else local_day(b - 1) - local_day(a) + 1


class Month:
    def __init__(self, t: int) -> None:
        self.start = day_start(day_of_date(date.fromisoformat(iso(t)[:10]).replace(day=1)))
        self.end = month_end(t)
        self.days = local_day(self.end - 1) - local_day(self.start) + 1
        self.label = iso(self.start)[:7]


def stays(
    world: World, happenings: Iterable[Happening], registered: dict[str, dict[str, Any]], month: Month
) -> list[Stay]:
    """Occupancies as the registries know them at the month's end."""
    deaths = {h.person: h for h in happenings if h.kind == "death"}
    out: list[Stay] = []
    for inst in world.plan.institutions:
        issued = world.issued.institutions[inst.key]
        beds = {b.key: b for b in inst.beds}
        for p in inst.persons:
            if p.bed is None or p.admitted_at is None:
                continue
            end = FOREVER
            death = deaths.get(p.key)
            if death is not None and int(death.detail.get("recorded_at", FOREVER)) < month.end:
                end = death.t  # the registry closed the stay at the death
            out.append(
                Stay(
                    inst.code,
                    inst.key,
                    inst.kind,
                    p.key,
                    issued.persons[p.key][1],
                    p.bed,
                    issued.beds[p.bed][1],
                    beds[p.bed].kind,
                    from_iso(p.admitted_at),
                    end,
                    date.fromisoformat(p.birth_date),
                )
            )
    for h in happenings:
        if h.kind not in ("twin", "ghost"):
            continue
        reg = registered.get(str(h.detail["id"]))
        if reg is None:
            continue
        inst = world.institution(str(h.detail["home"]))
        bed = next(b for b in inst.beds if b.key == h.detail["bed"])
        birth = None
        if h.kind == "twin" and h.person is not None:
            source = world.institution(h.person.split("/")[0])
            birth = date.fromisoformat(next(p.birth_date for p in source.persons if p.key == h.person))
        out.append(
            Stay(
                inst.code,
                inst.key,
                inst.kind,
                h.person if h.kind == "twin" else None,
                str(reg["registered_person"]),
                bed.key,
                str(reg["registered_bed"]),
                bed.kind,
                h.t,
                FOREVER,
                birth,
                {"registration": h.kind},
            )
        )
    return out


def make_claims(
    world: World,
    scenario: sm.Scenario,
    happenings: list[Happening],
    registered: dict[str, dict[str, Any]],
    month: Month,
) -> list[Claim]:
    spec = scenario.claims or sm.ClaimsSpec()
    deaths = {h.person: h for h in happenings if h.kind == "death"}
    claims: list[Claim] = []
    for stay in stays(world, happenings, registered, month):
        days = _days(stay.start, stay.end, month.start, month.end)
        if days == 0:
            continue
        death = deaths.get(stay.person_key) if stay.person_key else None
        continuing = death is not None and bool(death.detail.get("claims_continue"))
        if continuing:
            days = _days(stay.start, FOREVER, month.start, month.end)
        if stay.kind == "residential_home" and "operating_subsidy" in spec.programmes:
            amount = round(OPERATING[stay.bed_kind] * days / month.days, 2)
            claims.append(
                Claim(stay.institution, "operating_subsidy", month.label, stay.person, stay.bed, days, amount)
            )
        if stay.kind == "home_care_provider" and "home_care_bed" in spec.programmes:
            amount = round(HOME_CARE_BED * days / month.days, 2)
            claims.append(Claim(stay.institution, "home_care_bed", month.label, stay.person, stay.bed, days, amount))
        if "old_age_allowance" in spec.programmes and stay.birth is not None:
            years = age_on(stay.birth, date.fromisoformat(iso(month.start)[:10]))
            alive_at_start = stay.end > month.start
            if allowance(years) > 0 and alive_at_start:
                full = continuing or stay.end >= month.end
                paid = month.days if full else days
                amount = round(allowance(years) * paid / month.days, 2)
                claims.append(
                    Claim(stay.institution, "old_age_allowance", month.label, stay.person, stay.bed, paid, amount)
                )
    for pad in spec.pad_empty_beds:
        homes = world.plan.institutions
        if pad.home > len(homes):
            raise ScenarioError(scenario.scenario, None, f"pad_empty_beds: home {pad.home} is not in the world")
        inst = homes[pad.home - 1]
        taken = {
            s.bed_key
            for s in stays(world, happenings, registered, month)
            if _days(s.start, s.end, month.start, month.end)
        }
        empty = [b for b in inst.beds if b.key not in taken][: pad.beds]
        if len(empty) < pad.beds:
            raise ScenarioError(scenario.scenario, None, f"pad_empty_beds: {inst.key} has {len(empty)} empty beds")
        issued = world.issued.institutions[inst.key]
        for bed in empty:
            amount = round(OPERATING[bed.kind], 2)
            claims.append(
                Claim(inst.code, "operating_subsidy", month.label, "", issued.beds[bed.key][1], month.days, amount)
            )
    claims.sort(key=lambda c: (c.institution, c.programme, c.bed, c.person))
    for n, claim in enumerate(claims, start=1):
        claim.claim_id = f"{month.label}-{n:05d}"
    return claims


def write(claims: list[Claim], path: Path) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for c in claims:
        writer.writerow([c.claim_id, c.institution, c.programme, c.month, c.person, c.bed, c.days, f"{c.amount:.2f}"])
    path.write_text(out.getvalue(), encoding="utf-8")


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def days_between(start: int, end: int, month: Month) -> int:
    return _days(start, end, month.start, month.end)


def whole_days(ms: int) -> int:
    return ms // DAY
