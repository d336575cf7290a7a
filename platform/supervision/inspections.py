"""Random inspections (双随机一公开): draw homes and inspectors of a region, record the results, publish both."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal

from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel

from eldercare.platform.api.errors import NotFound, Problem, invalid
from eldercare.platform.auth.scope import Principal, Role, check_region, institution_filter
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.supervision import draw as drawing
from eldercare.platform.supervision.access import SUPERVISE, require

Outcome = Literal["pass", "minor_issues", "serious_issues", "fail"]
Kind = Literal["residential_home", "community_centre", "home_care_provider"]


class PublicInspection(BaseModel):
    id: int
    position: int
    institution_code: str
    institution_name: str
    team: list[str]
    inspected_at: datetime | None
    outcome: Outcome | None
    summary: str


class PublicDraw(BaseModel):
    """A draw as the public sees it: everything needed to re-run it, and no personal data."""

    id: int
    region_code: str
    region_name: str
    algorithm: str
    seed: str
    homes_requested: int
    inspectors_requested: int
    team_size: int
    home_candidates: list[str]
    inspector_candidates: list[str]
    home_candidates_sha256: str
    inspector_candidates_sha256: str
    drawn_homes: list[str]
    drawn_inspectors: list[str]
    purpose: str
    drawn_at: datetime
    inspections: list[PublicInspection]


def inspector_key(user_id: int) -> str:
    return f"U{user_id}"


async def create_draw(
    conn: AsyncConn,
    *,
    principal: Principal,
    region: str,
    homes: int,
    inspectors: int,
    team_size: int,
    seed: str | None,
    kinds: list[Kind],
    purpose: str,
) -> PublicDraw:
    require(principal, SUPERVISE, "draw random inspections")
    area = check_region(principal, region)
    if not await (await conn.execute("SELECT 1 FROM regions WHERE code = %s", (area,))).fetchone():
        raise NotFound("region")
    seed = seed if seed is not None else secrets.token_hex(16)
    async with conn.transaction():
        home_rows = await (
            await conn.execute(
                "SELECT code, id FROM institutions WHERE starts_with(region_code, %s) AND kind::text = ANY(%s)",
                (area, list(kinds)),
            )
        ).fetchall()
        inspector_rows = await (
            await conn.execute(
                "SELECT id FROM users WHERE role = 'regulator' AND active AND starts_with(region_code, %s)", (area,)
            )
        ).fetchall()
        home_ids = {str(code): int(i) for code, i in home_rows}
        home_keys = drawing.canonical(list(home_ids))
        inspector_keys = drawing.canonical([inspector_key(int(r[0])) for r in inspector_rows])
        try:
            result = drawing.draw(
                seed=seed,
                homes=home_keys,
                inspectors=inspector_keys,
                k=homes,
                m=inspectors,
                team_size=team_size,
            )
        except drawing.DrawError as exc:
            raise invalid(f"body.{exc.field}", exc.reason) from exc
        row = await (
            await conn.execute(
                "INSERT INTO inspection_draws (region_code, algorithm, seed, homes_requested, inspectors_requested,"
                " team_size, home_candidates, inspector_candidates, home_candidates_sha256,"
                " inspector_candidates_sha256, drawn_homes, drawn_inspectors, purpose, drawn_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    area,
                    drawing.ALGORITHM,
                    seed,
                    homes,
                    inspectors,
                    team_size,
                    home_keys,
                    inspector_keys,
                    result.home_candidates_sha256,
                    result.inspector_candidates_sha256,
                    result.homes,
                    result.inspectors,
                    purpose,
                    principal.user_id,
                ),
            )
        ).fetchone()
        assert row is not None
        draw_id = int(row[0])
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO inspections (draw_id, position, institution_id, inspector_ids) VALUES (%s, %s, %s, %s)",
                [
                    (draw_id, n, home_ids[code], [int(key[1:]) for key in team])
                    for n, (code, team) in enumerate(zip(result.homes, result.teams, strict=True))
                ],
            )
    found = await public_draws(conn, draw_id=draw_id)
    return found[0]


async def record_result(
    conn: AsyncConn,
    *,
    principal: Principal,
    inspection_id: int,
    outcome: Outcome,
    summary: str,
    inspected_at: datetime,
) -> PublicInspection:
    """The result of one inspection, once: the public record is not rewritten."""
    require(principal, SUPERVISE, "record inspection results")
    query = sql.SQL(
        "SELECT x.id, x.draw_id, x.outcome, x.inspector_ids FROM inspections x WHERE x.id = %(id)s AND {scope}"
    ).format(scope=institution_filter(principal, sql.SQL("x.institution_id")))
    row = await (await conn.execute(query, {"id": inspection_id})).fetchone()
    if row is None:
        raise NotFound("inspection")
    if principal.role is Role.REGULATOR and principal.user_id not in row[3]:
        raise Problem(403, "only an inspector of the drawn team records its result")
    if row[2] is not None:
        raise Problem(409, "the result of this inspection is already recorded and published")
    if inspected_at > datetime.now(inspected_at.tzinfo):
        raise invalid("body.inspected_at", "an inspection cannot be recorded before it happened")
    await conn.execute(
        "UPDATE inspections SET outcome = %s, summary = %s, inspected_at = %s, recorded_by = %s,"
        " recorded_at = now() WHERE id = %s",
        (outcome, summary, inspected_at, principal.user_id, inspection_id),
    )
    draws = await public_draws(conn, draw_id=int(row[1]))
    return next(i for i in draws[0].inspections if i.id == inspection_id)


async def public_draws(
    conn: AsyncConn, *, draw_id: int | None = None, region: str = "", limit: int = 50
) -> list[PublicDraw]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT d.id, d.region_code, r.name AS region_name, d.algorithm, d.seed, d.homes_requested,"
            " d.inspectors_requested, d.team_size, d.home_candidates, d.inspector_candidates,"
            " d.home_candidates_sha256, d.inspector_candidates_sha256, d.drawn_homes, d.drawn_inspectors,"
            " d.purpose, d.drawn_at FROM inspection_draws d JOIN regions r ON r.code = d.region_code"
            " WHERE (%(id)s::bigint IS NULL OR d.id = %(id)s) AND starts_with(d.region_code, %(region)s)"
            " ORDER BY d.drawn_at DESC, d.id DESC LIMIT %(limit)s",
            {"id": draw_id, "region": region, "limit": limit},
        )
        draws: list[dict[str, Any]] = await cur.fetchall()
        await cur.execute(
            "SELECT x.id, x.draw_id, x.position, i.code AS institution_code, i.name AS institution_name,"
            " x.inspector_ids, x.inspected_at, x.outcome, x.summary FROM inspections x"
            " JOIN institutions i ON i.id = x.institution_id WHERE x.draw_id = ANY(%s) ORDER BY x.draw_id, x.position",
            ([d["id"] for d in draws],),
        )
        rows = await cur.fetchall()
    by_draw: dict[int, list[PublicInspection]] = {}
    for r in rows:
        team = [inspector_key(u) for u in r.pop("inspector_ids")]
        by_draw.setdefault(r.pop("draw_id"), []).append(PublicInspection(**r, team=team))
    if draw_id is not None and not draws:
        raise NotFound("draw")
    return [PublicDraw(**d, inspections=by_draw.get(d["id"], [])) for d in draws]
