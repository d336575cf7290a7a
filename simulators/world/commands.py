"""``eldercare simulate world``."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

from eldercare.simulators.errors import SimError
from eldercare.simulators.world import model
from eldercare.simulators.world.build import build
from eldercare.simulators.world.plan import PlanOptions, make_plan
from eldercare.simulators.world.residents import CHINA


def bed_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        return (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise SimError(f"--beds {text!r}: give LO-HI, e.g. 30-120") from None


def options(
    *,
    region: str,
    institutions: int,
    households: int | None,
    seed: int,
    beds: str,
    as_of: str | None,
    anchors: str | None,
) -> PlanOptions:
    low, high = bed_range(beds)
    try:
        day = date.fromisoformat(as_of) if as_of else datetime.now(CHINA).date()
    except ValueError:
        raise SimError(f"--as-of {as_of!r} is not a date YYYY-MM-DD") from None
    return PlanOptions(
        region=region,
        institutions=institutions,
        households=institutions if households is None else households,
        seed=seed,
        as_of=day,
        beds_min=low,
        beds_max=high,
        anchors=Path(anchors) if anchors else None,
    )


def make_world(
    plan_options: PlanOptions,
    *,
    api: str,
    admin: str,
    password: str,
    out: Path,
    progress: Callable[[str], None] = print,
) -> model.World:
    """Plan and register a world; write it to ``out``."""
    plan = make_plan(plan_options)
    started = time.monotonic()
    world = asyncio.run(build(plan, base=api, admin_username=admin, admin_password=password, progress=progress))
    model.save(world, out)
    beds = sum(len(i.beds) for i in plan.institutions)
    persons = sum(len(i.persons) for i in plan.institutions)
    devices = sum(len(i.devices) for i in plan.institutions)
    progress(
        f"wrote {out}: {len(plan.institutions)} institutions, {beds} beds, {persons} residents, {devices} devices"
        f" registered through {api} in {time.monotonic() - started:.1f} s"
    )
    return world


def world(args: argparse.Namespace, *, api: str, password: Callable[[], str]) -> int:
    plan_options = options(
        region=args.region,
        institutions=args.institutions,
        households=args.households,
        seed=args.seed,
        beds=args.beds,
        as_of=args.as_of,
        anchors=args.anchors,
    )
    out = Path(args.out)
    if args.plan_only:
        plan = make_plan(plan_options)
        out.write_bytes(model.plan_json(plan))
        print(f"wrote the plan to {out} (nothing registered)")
        return 0
    make_world(plan_options, api=api, admin=args.admin, password=password(), out=out)
    return 0
