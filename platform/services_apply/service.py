"""Eligibility from the data the platform holds, routing to a provider, and the application's life.

Who may apply: a person registered with the platform (a resident of a home or of a home-care bed), found
by the keyed hash of the ID number and confirmed by the name. A wrong name and an unknown ID number get the
same answer, so the endpoint cannot be used to learn who is registered.

Routing: the home-care provider (institution kind ``home_care_provider``) nearest in the division tree to
the applicant's home (same township, then county, city, province) with the fewest open applications.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from psycopg.rows import dict_row

from eldercare.devices import codes
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import DecryptionError, Vault

OPEN = ("submitted", "routed", "accepted", "in_service")
NEXT: dict[str, tuple[str, ...]] = {
    "submitted": ("routed", "rejected"),
    "routed": ("accepted", "rejected"),
    "accepted": ("in_service", "rejected"),
    "in_service": ("completed",),
}


@dataclass(frozen=True, slots=True)
class Offer:
    code: str
    name: str
    kind: str
    min_age: int
    capabilities: list[str] | None
    monthly_yuan: Decimal | None
    description: str

    def eligible(self, *, age: int, capability: str) -> bool:
        return age >= self.min_age and (self.capabilities is None or capability in self.capabilities)


@dataclass(frozen=True, slots=True)
class Applicant:
    resident_id: int
    name: str
    id_number_masked: str
    age: int
    capability: str
    region_code: str
    institution_id: int


async def catalogue(conn: AsyncConn) -> list[Offer]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT code, name, kind, min_age, capabilities::text[] AS capabilities, monthly_yuan, description"
            " FROM service_catalog ORDER BY kind, min_age, code"
        )
        return [Offer(**row) for row in await cur.fetchall()]


async def find_applicant(conn: AsyncConn, *, vault: Vault, name: str, id_number: str, today: date) -> Applicant | None:
    """The living registered person with this ID number and name, or None (for either mismatch)."""
    parsed = codes.parse_id_number(id_number, today=today)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT r.id, r.name_enc, r.id_number_masked, r.capability::text AS capability, r.institution_id,"
            " i.region_code FROM residents r JOIN institutions i ON i.id = r.institution_id"
            " WHERE r.id_number_hash = ANY(%s) AND r.status <> 'deceased' ORDER BY r.created_at DESC",
            (vault.lookup_hashes(parsed.number),),
        )
        rows = await cur.fetchall()
    wanted = "".join(name.split())
    for row in rows:
        try:
            stored = vault.decrypt(bytes(row["name_enc"]), column="residents.name")
        except DecryptionError:
            continue
        if "".join(stored.split()) == wanted:
            return Applicant(
                resident_id=row["id"],
                name=stored,
                id_number_masked=row["id_number_masked"],
                age=parsed.age_on(today),
                capability=row["capability"],
                region_code=row["region_code"],
                institution_id=row["institution_id"],
            )
    return None


async def route(conn: AsyncConn, *, region_code: str) -> int | None:
    """The provider for an applicant living in ``region_code``, or None when the region has none."""
    for length in (9, 6, 4, 2):
        if len(region_code) < length:
            continue
        row = await (
            await conn.execute(
                "SELECT i.id FROM institutions i WHERE i.kind = 'home_care_provider' AND i.region_code LIKE %s"
                " ORDER BY (SELECT count(*) FROM service_applications a WHERE a.provider_institution_id = i.id"
                " AND a.status IN ('routed', 'accepted', 'in_service')), i.id LIMIT 1",
                (region_code[:length] + "%",),
            )
        ).fetchone()
        if row is not None:
            provider: int = row[0]
            return provider
    return None


def tracking_code() -> str:
    return "SA" + "".join(secrets.choice(codes.CODE_ALPHABET) for _ in range(10))


async def submit(
    conn: AsyncConn, *, applicant: Applicant, service_code: str, provider: int | None
) -> tuple[int, str, str]:
    """Record the application (inside the caller's transaction); (id, tracking code, status)."""
    status = "routed" if provider is not None else "submitted"
    code = tracking_code()
    row = await (
        await conn.execute(
            "INSERT INTO service_applications (tracking_code, resident_id, service_code, region_code,"
            " provider_institution_id, status) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (code, applicant.resident_id, service_code, applicant.region_code, provider, status),
        )
    ).fetchone()
    assert row is not None
    await conn.execute(
        "INSERT INTO service_application_events (application_id, status, note) VALUES (%s, 'submitted', %s)",
        (row[0], "applied with name and ID number"),
    )
    if provider is not None:
        await conn.execute(
            "INSERT INTO service_application_events (application_id, status, note) VALUES (%s, 'routed', %s)",
            (row[0], "routed to a home-care provider of the region"),
        )
    return row[0], code, status
