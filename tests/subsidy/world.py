"""A month of homes with the truth written down: honest residents (with the honest edge cases) and the five
kinds of fraud the issue names, each claim line labelled. A stand-in for the simulators' fraud scenarios
(issue 5), shaped so theirs can replace it: what a test needs is :class:`Scenario` - the claim files in the
simulators' format (CSV: person_code, bed_code, programme, days, amount, month), the death register file,
and the truth per line - plus the registry and the bed-sensor roll-ups in the database (``world_db.py``).

Everything is a pure function of the seed. Times are local (Asia/Shanghai); a night is 22:00-06:00 and
belongs to the date it begins on; a stay's "days" are its nights (the admission day counts, the discharge
day does not).

Fraud kinds (``truth``): ``after_death``, ``empty_bed``, ``duplicate``, ``ghost``, ``hospital``.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from eldercare.devices import codes
from eldercare.platform.subsidy.rules import month_days

TZ = ZoneInfo("Asia/Shanghai")
DISTRICTS = ("420502", "420503", "420504", "420505", "420506")
FRAUD_KINDS = ("after_death", "empty_bed", "duplicate", "ghost", "hospital")

# The amounts the test region pays (monthly yuan); the first matching row wins, as in the platform.
SCHEDULES: dict[str, list[dict[str, object]]] = {
    "operating_subsidy": [
        {"bed_kind": "nursing", "capability": "disabled", "monthly_yuan": "800"},
        {"bed_kind": "nursing", "capability": "partly_disabled", "monthly_yuan": "600"},
        {"bed_kind": "nursing", "monthly_yuan": "400"},
        {"monthly_yuan": "300"},
    ],
    "old_age_allowance": [
        {"min_age": 80, "max_age": 89, "monthly_yuan": "100"},
        {"min_age": 90, "max_age": 99, "monthly_yuan": "200"},
        {"min_age": 100, "monthly_yuan": "500"},
    ],
    "hardship_disability_subsidy": [
        {"capability": "disabled", "monthly_yuan": "300"},
        {"capability": "partly_disabled", "monthly_yuan": "150"},
        {"hardship": True, "monthly_yuan": "200"},
    ],
    "home_care_bed_subsidy": [{"monthly_yuan": "500"}],
}


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), TZ)


@dataclass
class Bed:
    code: str
    kind: str  # nursing | ordinary
    home_care: bool
    occupied: bool = False
    free_from: datetime | None = None  # the last occupant left then


@dataclass
class Person:
    key: str
    home: int
    person_code: str
    id_number: str
    birth: date
    sex: str
    capability: str
    hardship: bool
    registered: datetime
    bed: int | None = None  # index into the home's beds (on paper: the assignment)
    admitted: datetime | None = None
    left: datetime | None = None
    left_reason: str | None = None  # discharge | death
    died: datetime | None = None
    death_recorded: bool = False  # in the registry's deaths (the home recorded it)
    death_registered: bool = False  # in the civil-affairs death register
    hospital: list[tuple[datetime, datetime, bool]] = field(default_factory=list)  # (from, to, recorded)
    away_from: datetime | None = None  # physically gone from here on (the paper says otherwise)
    absent_nights: set[int] = field(default_factory=set)  # days of the month the bed stays empty
    offline_nights: set[int] = field(default_factory=set)  # days of the month the sensor sends nothing
    vitals: bool = True  # the bed sensor measures heart and respiration
    wristband: bool = False
    case: str = "plain"


@dataclass
class Home:
    code: str
    name: str
    region: str
    kind: str  # residential_home | home_care_provider
    beds: list[Bed] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Claim:
    home: int
    person_code: str
    bed_code: str | None
    programme: str
    days: int | None
    amount: Decimal | None
    truth: str  # honest, or a fraud kind
    case: str


@dataclass
class Scenario:
    month: date
    homes: list[Home]
    people: list[Person]
    claims: list[Claim]

    def claim_file(self, home: int) -> bytes:
        """The home's claim in the simulators' file format (UTF-8 CSV)."""
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["person_code", "bed_code", "programme", "days", "amount", "month"])
        for c in self.claims:
            if c.home == home:
                writer.writerow([c.person_code, c.bed_code or "", c.programme, c.days or "", c.amount or "",
                                 f"{self.month:%Y-%m}"])  # fmt: skip
        return out.getvalue().encode()

    def death_register(self) -> bytes:
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["id_number", "died_on", "source"])
        seen = set()
        for p in self.people:
            if p.death_registered and p.died is not None and p.id_number not in seen:
                seen.add(p.id_number)
                writer.writerow([p.id_number, p.died.astimezone(TZ).date().isoformat(), "funeral"])
        return out.getvalue().encode()

    def hardship_register(self) -> bytes:
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["id_number", "category", "valid_from", "valid_to"])
        for number in sorted({p.id_number for p in self.people if p.hardship}):
            writer.writerow([number, "dibao", "2020-01-01", ""])
        return out.getvalue().encode()


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - int((day.month, day.day) < (birth.month, birth.day))


def rate(programme: str, *, bed_kind: str | None, capability: str, age: int, hardship: bool) -> Decimal | None:
    for row in SCHEDULES[programme]:
        if row.get("bed_kind") not in (None, bed_kind) or row.get("capability") not in (None, capability):
            continue
        low, high = row.get("min_age"), row.get("max_age")
        if (isinstance(low, int) and age < low) or (isinstance(high, int) and age > high):
            continue
        if row.get("hardship") not in (None, hardship):
            continue
        return Decimal(str(row["monthly_yuan"]))
    return None


class Planner:
    def __init__(self, *, seed: int, month: date) -> None:
        self.rng = random.Random(seed)
        self.month, self.last, self.dim = month_days(month)
        self.used: set[str] = set()
        self.homes: list[Home] = []
        self.people: list[Person] = []
        self.claims: list[Claim] = []

    def code(self, make: str) -> str:
        while True:
            value = codes.new_bed_code(self.rng) if make == "bed" else codes.new_person_code(self.rng)
            if value not in self.used:
                self.used.add(value)
                return value

    def person(self, home: int, *, region: str, birth: date | None = None, id_number: str | None = None) -> Person:
        rng = self.rng
        if birth is None:
            age = min(101, max(60, int(rng.triangular(60, 102, 84))))
            birth = self.last - timedelta(days=age * 365 + rng.randrange(365))
        sex = rng.choice(("male", "female"))
        while id_number is None:
            candidate = codes.generate_id_number(rng, region6=region, birth_date=birth, sex=sex)  # type: ignore[arg-type]
            if candidate not in self.used:
                self.used.add(candidate)
                id_number = candidate
        sex = "male" if int(id_number[16]) % 2 else "female"
        capability = rng.choices(("self_care", "partly_disabled", "disabled"), (0.45, 0.3, 0.25))[0]
        registered = local(self.month - timedelta(days=rng.randrange(60, 700)), 9)
        p = Person(f"{home}/{len(self.people)}", home, self.code("person"), id_number, birth, sex, capability,
                   rng.random() < 0.08, registered)  # fmt: skip
        self.people.append(p)
        return p

    def rebirth(self, p: Person, birth: date) -> None:
        """A new birth date, and an ID number that carries it."""
        region = self.homes[p.home].region
        while True:
            number = codes.generate_id_number(self.rng, region6=region, birth_date=birth, sex=p.sex)  # type: ignore[arg-type]
            if number not in self.used:
                self.used.add(number)
                p.birth, p.id_number = birth, number
                p.sex = "male" if int(number[16]) % 2 else "female"
                return

    def admit(self, p: Person, bed: int, at: datetime) -> None:
        place = self.homes[p.home].beds[bed]
        if place.free_from is not None:
            at = max(at, place.free_from + timedelta(hours=1))
        p.bed, p.admitted = bed, at
        place.occupied = True

    def free_bed(self, home: int, *, home_care: bool | None = None) -> int | None:
        beds = self.homes[home].beds
        free = [i for i, b in enumerate(beds) if not b.occupied and (home_care is None or b.home_care == home_care)]
        return self.rng.choice(free) if free else None

    def day(self, low: int, high: int) -> int:
        return self.rng.randint(low, min(high, self.dim))

    def claim(self, p: Person, *, truth: str, case: str, days: int | None = None, bed_line: bool = True,
              allowance_truth: str | None = None, allowance_days: int | None = None) -> None:  # fmt: skip
        """The lines a home writes for a person: its bed (days), and the allowances the person is due."""
        home = self.homes[p.home]
        bed = home.beds[p.bed] if p.bed is not None else None
        if bed_line and bed is not None:
            programme = "home_care_bed_subsidy" if bed.home_care else "operating_subsidy"
            self.claims.append(Claim(p.home, p.person_code, bed.code, programme, days or self.dim, None, truth, case))
        if allowance_truth == "skip":
            return
        age = age_on(p.birth, self.last)
        for programme in ("old_age_allowance", "hardship_disability_subsidy"):
            amount = rate(programme, bed_kind=None, capability=p.capability, age=age, hardship=p.hardship)
            if amount is not None and allowance_days is not None:  # pro rata: the month of death
                amount = (amount * allowance_days / self.dim).quantize(Decimal("0.01"))
            if amount is not None:
                self.claims.append(Claim(p.home, p.person_code, None, programme, None, amount,
                                         allowance_truth or truth, case))  # fmt: skip


def plan(
    *,
    seed: int,
    homes: int,
    beds: int,
    month: date,
    fraud_share: float = 0.12,
    edge_share: float = 0.16,
    providers: int = 1,
    bad_homes: tuple[int, ...] = (),
    bad_share: float = 0.5,
    occupancy: float = 0.9,
) -> Scenario:
    """A scenario of ``homes`` homes of ``beds`` beds each (the first ``providers`` run home-care beds)."""
    pl = Planner(seed=seed, month=month)
    rng = pl.rng
    for h in range(homes):
        kind = "home_care_provider" if h < providers else "residential_home"
        region = DISTRICTS[h % len(DISTRICTS)]
        home = Home(codes.generate_uscc(rng, region6=region), f"测试养老院{h:03d}", region, kind)
        for _ in range(beds):
            home.beds.append(Bed(pl.code("bed"), rng.choice(("nursing", "ordinary")), kind == "home_care_provider"))
        pl.homes.append(home)
    # Residents in ``occupancy`` of the beds, admitted before the month.
    residents: list[Person] = []
    for h, home in enumerate(pl.homes):
        for b in range(len(home.beds)):
            if rng.random() < occupancy:
                p = pl.person(h, region=home.region)
                pl.admit(p, b, p.registered + timedelta(days=rng.randrange(0, 20)))
                p.wristband = rng.random() < 0.2
                residents.append(p)
    rng.shuffle(residents)
    # A few homes cheat a lot (the anomaly ranking should find them); the rest of the fraud is spread thinly.
    fraud = [p for p in residents if p.home in bad_homes and rng.random() < bad_share]
    chosen = {p.key for p in fraud}
    others = [p for p in residents if p.key not in chosen]
    n_more = max(0, int(len(residents) * fraud_share) - len(fraud))
    fraud += others[:n_more]
    edge = others[n_more : n_more + int(len(residents) * edge_share)]
    honest = others[n_more + len(edge) :]
    from tests.subsidy.cases import EDGE_CASES, FRAUD_CASES

    for i, p in enumerate(fraud):
        FRAUD_CASES[i % len(FRAUD_CASES)](pl, p)
    for i, p in enumerate(edge):
        EDGE_CASES[i % len(EDGE_CASES)](pl, p)
    for p in honest:
        pl.claim(p, truth="honest", case="plain")
    return Scenario(pl.month, pl.homes, pl.people, pl.claims)
