"""Recording and reading visits, the due list and the coverage figures; each takes its connection explicitly and
expects its caller to have checked scope (``router.py``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import sql
from psycopg.rows import dict_row

from eldercare.platform.api.errors import invalid
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Principal, Role, institution_filter, sees_names
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.registry import health_text
from eldercare.platform.registry.types import mask_text
from eldercare.platform.visits.models import Coverage, CoverageReport, Due, Kind, Visit, VisitIn

TIMEZONE = "Asia/Shanghai"
_TZ = ZoneInfo(TIMEZONE)
CLOCK_SKEW = timedelta(minutes=5)  # a visit "now" from a phone whose clock runs a little fast is not refused


def today() -> date:
    return datetime.now(UTC).astimezone(_TZ).date()


async def record(
    conn: AsyncConn, *, principal: Principal, vault: Vault, resident_id: int, institution_id: int, body: VisitIn
) -> Visit:
    """Record a visit inside the caller's transaction: refused (422 on ``body.visited_at``) in the future, before the
    resident was registered or put on the visit list (whichever came first: a home registering an elder it has been
    visiting gives the day they were put on the list, and its earlier visits) or after their death."""
    if body.visited_at > datetime.now(UTC) + CLOCK_SKEW:
        raise invalid("body.visited_at", "a visit cannot be recorded before it took place")
    row = await (
        await conn.execute(
            "SELECT r.created_at, (r.lives_alone_since::timestamp AT TIME ZONE %s), d.died_at"
            " FROM residents r LEFT JOIN deaths d ON d.resident_id = r.id WHERE r.id = %s FOR UPDATE OF r",
            (TIMEZONE, resident_id),
        )
    ).fetchone()
    assert row is not None  # the caller resolved the resident
    registered, listed, died = row
    if body.visited_at < min(registered, listed or registered):
        raise invalid(
            "body.visited_at",
            f"before the resident was registered ({registered.isoformat()})"
            + (f" or put on the visit list ({listed.isoformat()})" if listed is not None else ""),
        )
    if died is not None and body.visited_at > died:
        raise invalid("body.visited_at", "after the resident's recorded death")
    found = await (
        await conn.execute(
            "INSERT INTO resident_visits (resident_id, visited_at, visited_by, mode, outcome, note_enc)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (
                resident_id,
                body.visited_at,
                principal.user_id,
                body.mode.value,
                body.outcome.value,
                vault.encrypt_text(body.note, column=health_text.VISIT_NOTE),
            ),
        )
    ).fetchone()
    assert found is not None
    await audit.record(
        conn,
        principal=principal,
        action="create",
        object_type="resident_visit",
        object_id=found[0],
        institution_id=institution_id,
        # the note is health data: the log says only whether there is one
        detail={"resident_id": resident_id, "mode": body.mode.value, "outcome": body.outcome.value,
                "visited_at": body.visited_at.isoformat(), "note": bool(body.note)},
    )  # fmt: skip
    visits = await _read(conn, principal=principal, vault=vault, resident_id=resident_id, visit_id=found[0])
    return visits[0]


async def list_visits(
    conn: AsyncConn, *, principal: Principal, vault: Vault, resident_id: int, institution_id: int, limit: int
) -> list[Visit]:
    """A resident's visits, newest first, as ``principal`` may see them; a read that shows any is audited."""
    visits = await _read(conn, principal=principal, vault=vault, resident_id=resident_id, limit=limit)
    if visits:
        note_as = "none" if principal.role is Role.FAMILY else "clear" if sees_names(principal) else "masked"
        await audit.read_health(
            conn, principal=principal, object_type="resident_visits", object_id=resident_id,
            institution_id=institution_id,
            detail={"ids": [v.id for v in visits], "fields": ["visited_at", "mode", "outcome", "note"],
                    "notes": sum(1 for v in visits if v.note), "note_as": note_as},
        )  # fmt: skip
    return visits


async def _read(
    conn: AsyncConn,
    *,
    principal: Principal,
    vault: Vault,
    resident_id: int,
    visit_id: int | None = None,
    limit: int = 1,
) -> list[Visit]:
    family = principal.role is Role.FAMILY
    query = sql.SQL(
        "SELECT v.id, v.resident_id, v.visited_at, {visitor} AS visited_by, v.mode::text AS mode,"
        " v.outcome::text AS outcome, visit_counts(v.outcome) AS counts, {note} AS note_enc, v.created_at"
        " FROM resident_visits v JOIN users u ON u.id = v.visited_by"
        " WHERE v.resident_id = %(r)s AND (%(v)s::bigint IS NULL OR v.id = %(v)s)"
        " ORDER BY v.visited_at DESC, v.id DESC LIMIT %(limit)s"
    ).format(
        # a family's answer holds neither the staff's names nor their notes, not even encrypted in memory (as alarms)
        visitor=sql.SQL("NULL::text" if family else "coalesce(nullif(u.display_name, ''), u.username)"),
        note=sql.SQL("NULL::bytea" if family else "v.note_enc"),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, {"r": resident_id, "v": visit_id, "limit": limit})
        rows = await cur.fetchall()
    visits = []
    for row in rows:
        note: str | None = None
        if not family:
            note = vault.decrypt_text(row.pop("note_enc"), column=health_text.VISIT_NOTE)
            note = note if sees_names(principal) else mask_text(note)
        visits.append(Visit.model_validate({**row, "note": note}))
    return visits


async def due_list(conn: AsyncConn, *, principal: Principal, vault: Vault, within_days: int, limit: int) -> list[Due]:
    """Residents of the caller's homes on the visit list whose next visit is due within ``within_days`` days or is
    overdue, most overdue first. Names are personal data: the read is audited."""
    day = today()
    query = sql.SQL(
        "SELECT s.id AS resident_id, s.person_code, s.name_enc, s.institution_id, s.kind, s.since AS lives_alone_since,"
        " s.last_visit, visit_due(s.kind, s.since, s.last_visit) AS due FROM ("
        "  SELECT r.id, r.person_code, r.name_enc, r.institution_id, r.lives_alone_since AS since,"
        "   visit_kind(r.birth_date, r.capability, %(day)s) AS kind,"
        "   ((SELECT max(v.visited_at) FROM resident_visits v WHERE v.resident_id = r.id AND visit_counts(v.outcome))"
        "     AT TIME ZONE %(tz)s)::date AS last_visit"
        "  FROM residents r WHERE on_visit_list(r.lives_alone, r.lives_alone_since, r.status, %(day)s) AND {scope}"
        " ) s WHERE visit_due(s.kind, s.since, s.last_visit) <= %(horizon)s"
        " ORDER BY due, s.id LIMIT %(limit)s"
    ).format(scope=institution_filter(principal, sql.SQL("r.institution_id")))
    params = {"day": day, "tz": TIMEZONE, "horizon": day + timedelta(days=within_days), "limit": limit}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    found: list[Due] = []
    homes: dict[int, list[int]] = {}
    for row in rows:
        name = vault.decrypt(bytes(row.pop("name_enc")), column="residents.name")
        homes.setdefault(row["institution_id"], []).append(row["resident_id"])
        due: date = row["due"]
        found.append(Due.model_validate({**row, "name": name, "days_overdue": max((day - due).days, 0)}))
    for home, ids in homes.items():
        await audit.record(
            conn, principal=principal, action="read_personal", object_type="resident", object_id=None,
            institution_id=home, detail={"ids": ids, "fields": ["name"], "as": "visits_due"},
        )  # fmt: skip
    return found


_COVERAGE = """
SELECT s.id, s.institution_id, s.kind,
    CASE s.kind
    WHEN 'key' THEN NOT EXISTS (
        SELECT 1 FROM generate_series(date_trunc('month', greatest(s.since, %(start)s)::timestamp),
                                      date_trunc('month', %(end)s::timestamp), interval '1 month') AS m (first)
        WHERE NOT EXISTS (
            SELECT 1 FROM resident_visits v WHERE v.resident_id = s.id AND visit_counts(v.outcome)
            AND (v.visited_at AT TIME ZONE %(tz)s)::date BETWEEN m.first::date
                AND least((m.first + interval '1 month - 1 day')::date, %(end)s)))
    ELSE EXISTS (
        SELECT 1 FROM resident_visits v WHERE v.resident_id = s.id AND visit_counts(v.outcome)
        AND (v.visited_at AT TIME ZONE %(tz)s)::date BETWEEN date_trunc('year', %(end)s::timestamp)::date AND %(end)s)
    END AS covered
FROM (
    SELECT r.id, r.institution_id, r.lives_alone_since AS since, visit_kind(r.birth_date, r.capability, %(end)s) AS kind
    FROM residents r
    WHERE r.institution_id = ANY(%(homes)s::bigint[])
      AND on_visit_list(r.lives_alone, r.lives_alone_since, r.status, %(end)s)
) s
"""


async def coverage(conn: AsyncConn, *, homes: list[int], start: date, end: date) -> CoverageReport:
    """Visit coverage of ``homes`` (ids already checked against the caller's scope) over local days [start, end]:
    the list and the kinds as they stand on ``end``; a key subject is covered when visited in every calendar month
    of the period from the month they were put on the list, a general one when visited in ``end``'s year up to
    ``end``. Counts only: nobody is named, so the read is not a read of personal data."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT id, code, name FROM institutions WHERE id = ANY(%s::bigint[]) ORDER BY id", (homes,))
        institutions = await cur.fetchall()
        await cur.execute(_COVERAGE, {"homes": homes, "start": start, "end": end, "tz": TIMEZONE})
        subjects = await cur.fetchall()
    counts: dict[int, dict[str, int]] = {row["id"]: _zero() for row in institutions}
    region = _zero()
    for subject in subjects:
        for tally in (counts[subject["institution_id"]], region):
            tally[subject["kind"]] += 1
            tally[f"{subject['kind']}_covered"] += int(subject["covered"])
    return CoverageReport(
        start=start,
        end=end,
        timezone=TIMEZONE,
        region=_coverage(0, None, None, region),
        homes=[_coverage(row["id"], row["code"], row["name"], counts[row["id"]]) for row in institutions],
    )


def _zero() -> dict[str, int]:
    return {Kind.KEY: 0, Kind.GENERAL: 0, "key_covered": 0, "general_covered": 0}


def _coverage(institution_id: int, code: str | None, name: str | None, tally: dict[str, Any]) -> Coverage:
    key, general = tally[Kind.KEY], tally[Kind.GENERAL]
    return Coverage(
        institution_id=institution_id,
        institution_code=code,
        institution_name=name,
        living_alone=key + general,
        key_subjects=key,
        general_subjects=general,
        key_visited_monthly=tally["key_covered"],
        general_visited_yearly=tally["general_covered"],
        key_coverage=tally["key_covered"] / key if key else None,
        general_coverage=tally["general_covered"] / general if general else None,
    )
