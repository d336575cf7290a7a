"""Lists about people: the liveness follow-up list (无感认证), the newly eligible (政策找人, 免申即享) and their
enrolment, and a person's decision on a line sent to a manual check. Every list of people is an audited read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from psycopg.rows import dict_row

from eldercare.platform.api.errors import invalid
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.subsidy.errors import conflict
from eldercare.platform.subsidy.models import DecisionIn, Enrolment, Liveness, NewlyEligible
from eldercare.platform.subsidy.rules import Rules, month_days
from eldercare.platform.subsidy.verify import params


async def _audit_read(conn: AsyncConn, principal: Principal, what: str, ids: list[int]) -> None:
    if ids:
        await audit.record(
            conn,
            principal=principal,
            action="read_personal",
            object_type="resident",
            object_id=None,
            institution_id=None,
            detail={"list": what, "ids": ids[:1000], "count": len(ids), "fields": ["person_code", "id_number_masked"]},
        )


async def liveness(
    conn: AsyncConn, *, principal: Principal, homes: Sequence[int], month: date, everyone: bool
) -> list[Liveness]:
    """Allowance receivers of the month (as of the last run) without liveness evidence, or all of them."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT lv.resident_id, r.person_code, r.id_number_masked, i.id AS institution_id,"
            " i.code AS institution_code, i.name AS institution_name, i.contact_phone AS institution_phone,"
            " lv.programmes, lv.vital_nights, lv.worn_days, lv.last_evidence, lv.follow_up,"
            " EXISTS (SELECT 1 FROM death_register dr WHERE dr.id_number_hash = r.id_number_hash) AS in_death_register"
            " FROM subsidy_liveness lv JOIN residents r ON r.id = lv.resident_id"
            " JOIN institutions i ON i.id = lv.institution_id"
            " WHERE lv.month = %s AND lv.institution_id = ANY(%s) AND (%s OR lv.follow_up)"
            " ORDER BY i.code, r.person_code",
            (month, list(homes), everyone),
        )
        rows = [Liveness.model_validate(r) for r in await cur.fetchall()]
    await _audit_read(conn, principal, "subsidy_liveness", [r.resident_id for r in rows])
    return rows


# A person is eligible on a day when the programme's schedule in force has a row for them (age, capability,
# hardship register); newly eligible in a month when they are at its end and were not the day before it began.
_NEWLY = """
WITH ppl AS (
    SELECT r.id, r.person_code, r.id_number_masked, r.birth_date, r.id_number_hash, r.capability AS cap_now,
           r.created_at >= %(t_month0)s AS arrived, r.created_at, r.institution_id, i.code, i.region_code
    FROM residents r JOIN institutions i ON i.id = r.institution_id
    WHERE r.institution_id = ANY(%(homes)s) AND r.status = 'admitted'
      AND NOT EXISTS (SELECT 1 FROM death_register dr WHERE dr.id_number_hash = r.id_number_hash
                      AND dr.died_on <= %(month_end)s)
),
facts AS (
    SELECT p.*, pr.code AS programme, s.schedule_id,
           extract(year FROM age(%(month_end)s::date, p.birth_date))::int AS age_end,
           extract(year FROM age(%(month)s::date - 1, p.birth_date))::int AS age_start,
           coalesce((SELECT ca.capability FROM capability_assessments ca WHERE ca.resident_id = p.id
                     AND ca.assessed_at < %(t_month1)s ORDER BY ca.assessed_at DESC LIMIT 1), p.cap_now) AS cap_end,
           (SELECT ca.capability FROM capability_assessments ca WHERE ca.resident_id = p.id
            AND ca.assessed_at < %(t_month0)s ORDER BY ca.assessed_at DESC LIMIT 1) AS cap_start,
           (SELECT max(ca.assessed_at) FROM capability_assessments ca WHERE ca.resident_id = p.id
            AND ca.assessed_at >= %(t_month0)s AND ca.assessed_at < %(t_month1)s) AS assessed_in_month,
           EXISTS (SELECT 1 FROM hardship_register h WHERE h.id_number_hash = p.id_number_hash
                   AND h.valid @> %(month_end)s::date) AS hard_end,
           EXISTS (SELECT 1 FROM hardship_register h WHERE h.id_number_hash = p.id_number_hash
                   AND h.valid @> (%(month)s::date - 1)) AS hard_start,
           (SELECT min(lower(h.valid)) FROM hardship_register h WHERE h.id_number_hash = p.id_number_hash
            AND lower(h.valid) BETWEEN %(month)s AND %(month_end)s) AS hard_since
    FROM ppl p
    CROSS JOIN subsidy_programmes pr
    CROSS JOIN LATERAL subsidy_schedule(pr.code, p.region_code, %(month)s) s
    WHERE pr.unit = 'person_month'
)
SELECT f.id AS resident_id, f.person_code, f.id_number_masked, f.institution_id, f.code AS institution_code,
       f.programme, f.schedule_id, e.monthly_yuan,
       least(CASE WHEN f.age_end > f.age_start THEN (f.birth_date + make_interval(years => f.age_end))::date END,
             CASE WHEN f.cap_start <> f.cap_end THEN (f.assessed_in_month AT TIME ZONE %(tz)s)::date END,
             CASE WHEN f.hard_end AND NOT f.hard_start THEN f.hard_since END,
             CASE WHEN f.arrived THEN (f.created_at AT TIME ZONE %(tz)s)::date END) AS since,
       concat_ws('; ',
             CASE WHEN f.age_end > f.age_start THEN format('turned %%s', f.age_end) END,
             CASE WHEN f.cap_start <> f.cap_end
                  THEN format('capability assessed %%s (was %%s)', f.cap_end, f.cap_start) END,
             CASE WHEN f.hard_end AND NOT f.hard_start THEN 'entered the hardship register' END,
             CASE WHEN f.arrived
                  THEN format('registered on %%s', (f.created_at AT TIME ZONE %(tz)s)::date) END) AS reason
FROM facts f
CROSS JOIN LATERAL subsidy_rate(f.schedule_id, NULL, f.cap_end, f.age_end, f.hard_end) e
LEFT JOIN LATERAL subsidy_rate(f.schedule_id, NULL, f.cap_start, f.age_start, f.hard_start) b ON true
WHERE (b.rate_position IS NULL OR f.arrived)
  AND NOT EXISTS (SELECT 1 FROM subsidy_enrolments en WHERE en.resident_id = f.id AND en.programme = f.programme
                  AND (en.until_month IS NULL OR en.until_month >= %(month)s))
  AND NOT EXISTS (SELECT 1 FROM subsidy_claims c JOIN subsidy_claim_lines l ON l.claim_id = c.id
                  WHERE c.institution_id = f.institution_id AND c.month = %(month)s AND c.replaced_at IS NULL
                    AND l.person_code = f.person_code AND l.programme = f.programme)
ORDER BY f.code, f.person_code, f.programme
"""


async def newly_eligible(
    conn: AsyncConn, *, principal: Principal, homes: Sequence[int], month: date
) -> list[NewlyEligible]:
    """Residents who became eligible for an allowance during ``month``, not enrolled or claimed yet."""
    values = {**params(region="", month=month, rules=Rules()), "homes": list(homes)}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_NEWLY, values)
        rows = [NewlyEligible.model_validate(r) for r in await cur.fetchall() if r["since"] is not None]
    await _audit_read(conn, principal, "subsidy_newly_eligible", [r.resident_id for r in rows])
    return rows


async def enrol(
    conn: AsyncConn, *, principal: Principal, resident_id: int, programme: str, from_month: date, reason: str
) -> Enrolment:
    """Enrol a resident in an allowance from a month (inside the caller's transaction)."""
    unit = await (await conn.execute("SELECT unit FROM subsidy_programmes WHERE code = %s", (programme,))).fetchone()
    if unit is None:
        raise invalid("body.programme", "no such programme")
    if unit[0] != "person_month":
        raise invalid("body.programme", "only allowances paid per person are enrolled; beds are claimed by the home")
    status = await (await conn.execute("SELECT status::text FROM residents WHERE id = %s", (resident_id,))).fetchone()
    assert status is not None
    if status[0] == "deceased":
        raise conflict("body.resident_id", "the resident is deceased")
    open_one = await (
        await conn.execute(
            "SELECT from_month FROM subsidy_enrolments WHERE resident_id = %s AND programme = %s"
            " AND (until_month IS NULL OR until_month >= %s)",
            (resident_id, programme, from_month),
        )
    ).fetchone()
    if open_one is not None:
        raise conflict("body.resident_id", f"enrolled in {programme} from {open_one[0]:%Y-%m} already")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO subsidy_enrolments (resident_id, programme, from_month, reason, enrolled_by)"
            " VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id, resident_id, programme, from_month, until_month, reason, enrolled_at",
            (resident_id, programme, from_month, reason, principal.user_id),
        )
        row = await cur.fetchone()
    assert row is not None
    owner = await (await conn.execute("SELECT institution_id FROM residents WHERE id = %s", (resident_id,))).fetchone()
    await audit.record(
        conn,
        principal=principal,
        action="enrol",
        object_type="resident",
        object_id=resident_id,
        institution_id=int(owner[0]) if owner else None,
        detail={"programme": programme, "from_month": f"{from_month:%Y-%m}", "reason": reason},
    )
    return Enrolment.model_validate(row)


async def decide(conn: AsyncConn, *, principal: Principal, body: DecisionIn, institution_id: int) -> None:
    """Record a person's decision on a verified line (inside the caller's transaction)."""
    row = await (
        await conn.execute(
            "SELECT v.verdict, v.claimed_yuan FROM subsidy_verdicts v WHERE v.line_id = %s", (body.line_id,)
        )
    ).fetchone()
    if row is None:
        raise conflict("body.line_id", "the line has not been verified yet")
    claimed = row[1]
    if body.payable_yuan > claimed:
        raise invalid("body.payable_yuan", f"more than the {claimed} yuan claimed")
    if body.outcome == "rejected" and body.payable_yuan != 0:
        raise invalid("body.payable_yuan", "a rejected line pays nothing")
    if body.outcome == "verified" and body.payable_yuan != claimed:
        raise invalid("body.payable_yuan", f"a verified line pays the {claimed} yuan claimed; else partly_verified")
    await conn.execute(
        "INSERT INTO subsidy_decisions (line_id, outcome, payable_yuan, note, decided_by) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (line_id) DO UPDATE SET outcome = excluded.outcome, payable_yuan = excluded.payable_yuan,"
        " note = excluded.note, decided_at = now(), decided_by = excluded.decided_by",
        (body.line_id, body.outcome, body.payable_yuan, body.note, principal.user_id),
    )
    await audit.record(
        conn,
        principal=principal,
        action="decide_subsidy_line",
        object_type="subsidy_claim_line",
        object_id=body.line_id,
        institution_id=institution_id,
        detail={"verdict": row[0], "outcome": body.outcome, "payable_yuan": str(body.payable_yuan), "note": body.note},
    )


def month_label(month: date) -> str:
    first, _, _ = month_days(month)
    return f"{first:%Y-%m}"
