"""Staff of a home and their shift roster (``POST /api/v1/rosters``).

One head (院长) and about one carer (护理员) per six beds, at least three. Carers work one of three
eight-hour shifts, day 07:00-15:00, evening 15:00-23:00 and night 23:00-07:00, six days a week with a
rotating day off (a shift's only carer works every day), assigned round-robin so every shift is staffed
every day; they answer alarms first
(tier 1). The head is tier 2 around the clock: alarms not acknowledged in time escalate to them.
"""

from __future__ import annotations

import random

from eldercare.devices import codes
from eldercare.simulators.world import people
from eldercare.simulators.world.model import ShiftPlan, StaffPlan

SHIFTS = (("白班", "07:00", "15:00"), ("中班", "15:00", "23:00"), ("夜班", "23:00", "07:00"))


def staff_of(rng: random.Random, *, code: str, beds: int) -> list[StaffPlan]:
    suffix = code[-6:].lower()
    head_sex: codes.Sex = rng.choice(("male", "female"))
    head = StaffPlan(
        username=f"head-{suffix}",
        display_name=people.young_name(rng, head_sex),
        role="head",
        shifts=[ShiftPlan(tier=2, name="院长值守", starts="00:00", ends="00:00", weekdays=[1, 2, 3, 4, 5, 6, 7])],
    )
    carers = max(3, round(beds / 6))
    out = [head]
    for i in range(carers):
        name, starts, ends = SHIFTS[i % 3]
        alone = (carers - 1 - i % 3) // 3 == 0 and i // 3 == 0  # the only carer of the shift works every day
        day_off = 0 if alone else (i // 3) % 7 + 1
        out.append(
            StaffPlan(
                username=f"nurse-{suffix}-{i + 1:02d}",
                display_name=people.young_name(rng, _carer_sex(rng)),
                role="staff",
                shifts=[
                    ShiftPlan(
                        tier=1, name=name, starts=starts, ends=ends, weekdays=[d for d in range(1, 8) if d != day_off]
                    )
                ],
            )
        )
    return out


def _carer_sex(rng: random.Random) -> codes.Sex:
    return "female" if rng.random() < 0.85 else "male"  # most carers are women
