"""Helpers of the simulator tests: a world whose platform-issued values are made up (for tests that do not
touch the platform), a world built through a real platform, SisFall's location, the scenario world's options,
and registrations as the registry would answer them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from tests.registry.support import ADMIN_PASSWORD, Database, Server, data_key, make_admin

from eldercare.devices import codes
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.run.incidents import Happening
from eldercare.simulators.world.build import build
from eldercare.simulators.world.model import FORMAT, Issued, IssuedInstitution, World, WorldPlan
from eldercare.simulators.world.plan import PlanOptions, make_plan

SISFALL = Path(__file__).resolve().parents[3] / "shared" / "data" / "sisfall" / "sisfall_50hz.npz"


@contextmanager
def built_world(stack: StackInfo, db: Database, options: PlanOptions) -> Iterator[tuple[World, Server]]:
    """The world of ``options`` built through a platform served on ``db`` (by its admin ``sim-admin``), and the
    server, which stops when the block ends."""
    make_admin(db, "sim-admin")
    with Server(database_url=db.url, key=data_key(stack), state_dir=stack.state_dir) as server:
        plan = make_plan(options)
        yield (
            asyncio.run(build(plan, base=server.base, admin_username="sim-admin", admin_password=ADMIN_PASSWORD)),
            server,
        )


def offline_world(plan: WorldPlan) -> World:
    """The plan with ids and codes invented here (as if registered), for tests of the run alone."""
    rng = random.Random(1)
    issued: dict[str, IssuedInstitution] = {}
    next_id = 1
    for inst in plan.institutions:
        beds = {b.key: (next_id + n, codes.new_bed_code(rng)) for n, b in enumerate(inst.beds)}
        persons = {p.key: (next_id + n, codes.new_person_code(rng)) for n, p in enumerate(inst.persons)}
        devices = {d.code: next_id + n for n, d in enumerate(inst.devices)}
        users = {s.username: (next_id + n, "password-123") for n, s in enumerate(inst.staff)}
        issued[inst.key] = IssuedInstitution(
            id=len(issued) + 1, gateway_password="gw-password", beds=beds, persons=persons, devices=devices, users=users
        )
        next_id += 1000
    return World(format=FORMAT, plan=plan, issued=Issued(api="http://127.0.0.1:9", institutions=issued))


def small_plan(*, seed: int = 38, as_of: date = date(2026, 3, 15)) -> WorldPlan:
    return make_plan(
        PlanOptions(region="4205", institutions=2, households=2, seed=seed, as_of=as_of, beds_min=5, beds_max=7)
    )


def registered_as_if(world: World, happenings: list[Happening]) -> dict[str, dict[str, str]]:
    """What the registry would have answered for each ghost's and twin's registration (by injection id), with
    person codes invented here: what claims are made from, offline."""
    return {
        str(h.detail["id"]): {
            "registered_person": f"PGHOST{n:05d}",
            "registered_bed": world.issued.institutions[str(h.detail["home"])].beds[str(h.detail["bed"])][1],
            "registered_in": "X",
        }
        for n, h in enumerate(happenings)
        if h.kind in ("twin", "ghost")
    }
