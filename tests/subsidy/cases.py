"""The cases of a scenario: each takes a resident admitted before the month and makes their month (and the
home's claim lines for it) one of the honest edge cases or one of the five kinds of fraud."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from tests.subsidy.world import Person, Planner, local


def _on(pl: Planner, day: int) -> date:
    return pl.month + timedelta(days=day - 1)


# --- honest edge cases -----------------------------------------------------------------------------------


def offline_nights(pl: Planner, p: Person) -> None:
    """The bed sensor sends nothing (or too little) for 1-6 nights in a row: not an absence."""
    start, n = pl.day(1, pl.dim - 6), pl.rng.randint(1, 6)
    p.offline_nights = set(range(start, start + n))
    pl.claim(p, truth="honest", case="offline_nights")


def admitted_mid_month(pl: Planner, p: Person) -> None:
    k = pl.day(3, pl.dim - 2)
    p.admitted = local(_on(pl, k), 10)
    p.registered = min(p.registered, p.admitted - timedelta(days=2))
    pl.claim(p, truth="honest", case="admitted_mid_month", days=pl.dim - k + 1)


def discharged_mid_month(pl: Planner, p: Person) -> None:
    k = pl.day(3, pl.dim - 1)
    p.left, p.left_reason = local(_on(pl, k), 10), "discharge"
    pl.claim(p, truth="honest", case="discharged_mid_month", days=k - 1)


def hospital_not_claimed(pl: Planner, p: Person) -> None:
    """A recorded hospital stay; the home claims only the nights the resident was home."""
    a, n = pl.day(2, pl.dim - 10), pl.rng.randint(3, 9)
    p.hospital.append((local(_on(pl, a), 9), local(_on(pl, a + n), 15), True))
    pl.claim(p, truth="honest", case="hospital_not_claimed", days=pl.dim - n)


def died_mid_month(pl: Planner, p: Person) -> None:
    """Died in the month, recorded by the home and in the funeral data; claimed up to the death."""
    k = pl.day(3, pl.dim)
    p.died = p.left = local(_on(pl, k), 14)
    p.left_reason, p.death_recorded, p.death_registered = "death", True, True
    pl.claim(p, truth="honest", case="died_mid_month", days=k - 1, allowance_days=k - 1)


def away_a_night(pl: Planner, p: Person) -> None:
    """Spent one or two nights with the family: those days are withheld, the line is not a fraud."""
    p.absent_nights = set(pl.rng.sample(range(1, pl.dim + 1), pl.rng.randint(1, 2)))
    pl.claim(p, truth="honest", case="away_a_night")


def no_vital_signs(pl: Planner, p: Person) -> None:
    """A pressure mat without heart or respiration, no wristband: allowances paid, liveness follow-up."""
    p.vitals, p.wristband = False, False
    pl.claim(p, truth="honest", case="no_vital_signs")


def wristband_only(pl: Planner, p: Person) -> None:
    p.vitals, p.wristband = False, True
    pl.claim(p, truth="honest", case="wristband_only")


def turned_80(pl: Planner, p: Person) -> None:
    pl.rebirth(p, date(pl.month.year - 80, pl.month.month, pl.day(1, 28)))
    pl.claim(p, truth="honest", case="turned_80")


def moved_between_homes(pl: Planner, p: Person) -> None:
    """Discharged from one home and admitted to another the same day: each claims its nights."""
    other = next((h for h in range(len(pl.homes)) if h != p.home and pl.free_bed(h, home_care=False) is not None), None)
    if other is None:
        pl.claim(p, truth="honest", case="plain")
        return
    k = pl.day(4, pl.dim - 3)
    p.left, p.left_reason = local(_on(pl, k), 10), "discharge"
    q = pl.person(other, region=pl.homes[other].region, birth=p.birth, id_number=p.id_number)
    q.capability, q.hardship, q.registered = p.capability, p.hardship, local(_on(pl, k), 11)
    bed = pl.free_bed(other, home_care=False)
    assert bed is not None
    pl.admit(q, bed, local(_on(pl, k), 15))
    pl.claim(p, truth="honest", case="moved_out", days=k - 1, allowance_truth="skip")
    pl.claim(q, truth="honest", case="moved_in", days=pl.dim - k + 1)


# --- fraud ---------------------------------------------------------------------------------------------------


def dead_before_month(pl: Planner, p: Person) -> None:
    """Died weeks ago; the funeral data knows, the home does not say so and claims the whole month."""
    p.died = local(pl.month - timedelta(days=pl.rng.randint(5, 60)), 8)
    p.death_registered, p.away_from = True, p.died
    pl.claim(p, truth="after_death", case="dead_before_month")


def dead_mid_month(pl: Planner, p: Person) -> None:
    """Died in the month (funeral data only); the bed and the allowances are claimed for the whole month."""
    k = pl.day(3, pl.dim - 5)
    p.died = local(_on(pl, k), 14)
    p.death_registered, p.away_from = True, p.died
    pl.claim(p, truth="after_death", case="dead_mid_month")


def dead_recorded(pl: Planner, p: Person) -> None:
    """The home recorded the death before the month and still claims."""
    p.died = p.left = local(pl.month - timedelta(days=pl.rng.randint(3, 40)), 6)
    p.left_reason, p.death_recorded, p.death_registered = "death", True, True
    pl.claim(p, truth="after_death", case="dead_recorded")


def empty_on_paper(pl: Planner, p: Person) -> None:
    """Admitted on paper, never there this month: the bed sensor sees an empty bed every night."""
    p.away_from = local(pl.month - timedelta(days=pl.rng.randint(1, 90)), 12)
    pl.claim(p, truth="empty_bed", case="empty_on_paper")


def left_without_discharge(pl: Planner, p: Person) -> None:
    """Left in the month without a discharge; the bed is claimed for the whole month."""
    p.away_from = local(_on(pl, pl.day(5, pl.dim - 8)), 12)
    pl.claim(p, truth="empty_bed", case="left_without_discharge", allowance_truth="honest")


def empty_bed_claimed(pl: Planner, p: Person) -> None:
    """Discharged a month ago; the home still claims the person in the now empty bed."""
    p.left, p.left_reason = local(pl.month - timedelta(days=pl.rng.randint(10, 40)), 10), "discharge"
    assert p.bed is not None
    pl.homes[p.home].beds[p.bed].occupied = False
    pl.homes[p.home].beds[p.bed].free_from = p.left
    pl.claim(p, truth="empty_bed", case="empty_bed_claimed")


def claimed_by_two_homes(pl: Planner, p: Person) -> None:
    """Another home registers the same person (same ID number), admits them on paper to an empty bed and
    claims them; they live here (honest lines)."""
    other = next((h for h in range(len(pl.homes)) if h != p.home and pl.free_bed(h) is not None), None)
    pl.claim(p, truth="honest", case="claimed_elsewhere_too")
    if other is None:
        return
    q = pl.person(other, region=pl.homes[other].region, birth=p.birth, id_number=p.id_number)
    q.capability, q.hardship = p.capability, p.hardship
    bed = pl.free_bed(other)
    assert bed is not None
    pl.admit(q, bed, local(pl.month - timedelta(days=pl.rng.randint(5, 60)), 10))
    q.away_from = q.admitted
    pl.claim(q, truth="duplicate", case="claimed_by_two_homes")


def registered_twice_not_admitted(pl: Planner, p: Person) -> None:
    other = (p.home + 1) % len(pl.homes)
    pl.claim(p, truth="honest", case="claimed_elsewhere_too")
    if other == p.home:
        return
    q = pl.person(other, region=pl.homes[other].region, birth=p.birth, id_number=p.id_number)
    q.capability, q.hardship = p.capability, p.hardship
    bed = pl.free_bed(other) if pl.free_bed(other) is not None else 0
    q.bed = bed
    pl.claim(q, truth="duplicate", case="registered_twice_not_admitted")
    q.bed = None  # never admitted: the claim names a bed the person never had


def ghost_unknown(pl: Planner, p: Person) -> None:
    """A person code the registry never issued, in an empty (or someone else's) bed."""
    pl.claim(p, truth="honest", case="plain")
    bed = pl.free_bed(p.home)
    home = pl.homes[p.home]
    bed_code = home.beds[bed if bed is not None else 0].code
    programme = "home_care_bed_subsidy" if home.beds[0].home_care else "operating_subsidy"
    code = pl.code("person")
    from tests.subsidy.world import Claim

    pl.claims.append(Claim(p.home, code, bed_code, programme, pl.dim, None, "ghost", "ghost_unknown"))


def ghost_registered(pl: Planner, p: Person) -> None:
    """Registered at the home, never admitted, claimed in a bed."""
    pl.claim(p, truth="honest", case="plain")
    g = pl.person(p.home, region=pl.homes[p.home].region)
    bed = pl.free_bed(p.home)
    g.bed = bed if bed is not None else p.bed
    pl.claim(g, truth="ghost", case="ghost_registered")
    g.bed = None


def hospital_claimed(pl: Planner, p: Person) -> None:
    """A recorded hospital stay, and the whole month claimed."""
    a, n = pl.day(2, pl.dim - 13), pl.rng.randint(5, 12)
    p.hospital.append((local(_on(pl, a), 9), local(_on(pl, a + n), 15), True))
    pl.claim(p, truth="hospital", case="hospital_claimed", allowance_truth="honest")


def hospital_hidden(pl: Planner, p: Person) -> None:
    """A hospital stay the home did not record, and the whole month claimed: the bed was empty."""
    a, n = pl.day(2, pl.dim - 13), pl.rng.randint(5, 12)
    p.hospital.append((local(_on(pl, a), 9), local(_on(pl, a + n), 15), False))
    pl.claim(p, truth="hospital", case="hospital_hidden", allowance_truth="honest")


Case = Callable[[Planner, Person], None]
EDGE_CASES: tuple[Case, ...] = (
    offline_nights, admitted_mid_month, discharged_mid_month, hospital_not_claimed, died_mid_month, away_a_night,
    no_vital_signs, wristband_only, turned_80, moved_between_homes,
)  # fmt: skip
FRAUD_CASES: tuple[Case, ...] = (
    dead_before_month, dead_mid_month, dead_recorded, empty_on_paper, left_without_discharge, empty_bed_claimed,
    claimed_by_two_homes, registered_twice_not_admitted, ghost_unknown, ghost_registered, hospital_claimed,
    hospital_hidden,
)  # fmt: skip
