"""Emergency contacts and family members of a resident, with their consent; names and phones encrypted."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from fastapi import APIRouter
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.registry.db import atomic, not_in_future
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.types import RESPONSES, Name, Note, PathId, Phone, When, mask_name, mask_phone

router = APIRouter(prefix="/api/v1", tags=["residents"], responses=RESPONSES)


class ContactKind(StrEnum):
    EMERGENCY = "emergency"
    FAMILY = "family"


class ContactIn(BaseModel):
    kind: ContactKind
    name: Annotated[Name, Field(max_length=50)]
    phone: Phone
    relation: Annotated[Name, Field(max_length=30)]
    priority: Annotated[int, Field(ge=1, le=9)] = 1
    consent: Literal[True] = Field(description="the contact agreed to be called and to have these data kept")
    consent_at: When | None = Field(default=None, description="when they agreed; default now")
    consent_note: Note = ""


class Contact(BaseModel):
    id: int
    resident_id: int
    kind: ContactKind
    name: str
    phone: str
    relation: str
    priority: int
    consent_at: datetime
    consent_note: str


@router.get("/residents/{resident_id}/contacts")
async def list_contacts(resident_id: PathId, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> list[Contact]:
    """Contacts in clear for the home and the family (audited); masked for regulators."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.READ_RESIDENT)
    clear = scope.sees_names(principal)
    async with atomic(conn):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT id, resident_id, kind, name_enc, phone_enc, phone_masked, relation, priority, consent_at,"
                " consent_note FROM resident_contacts WHERE resident_id = %s AND removed_at IS NULL"
                " ORDER BY priority, id",
                (resident_id,),
            )
            rows = await cur.fetchall()
        contacts = []
        for row in rows:
            name = vault.decrypt(bytes(row.pop("name_enc")), column="resident_contacts.name")
            phone = vault.decrypt(bytes(row.pop("phone_enc")), column="resident_contacts.phone")
            masked = row.pop("phone_masked")
            contacts.append(
                Contact.model_validate(
                    {**row, "name": name if clear else mask_name(name), "phone": phone if clear else masked}
                )
            )
        await audit.record(
            conn,
            principal=principal,
            action="read_personal",
            object_type="resident_contacts",
            object_id=resident_id,
            institution_id=institution_id,
            detail={"contacts": [c.id for c in contacts], "clear": clear},
        )
    return contacts


@router.post("/residents/{resident_id}/contacts", status_code=201)
async def add_contact(
    resident_id: PathId, body: ContactIn, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> Contact:
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    not_in_future("body.consent_at", body.consent_at)
    async with atomic(conn):
        row = await (
            await conn.execute(
                "INSERT INTO resident_contacts (resident_id, kind, name_enc, phone_enc, phone_masked, relation,"
                " priority, consent_at, consent_note) VALUES (%s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()), %s)"
                " RETURNING id, consent_at",
                (
                    resident_id,
                    body.kind.value,
                    vault.encrypt(body.name, column="resident_contacts.name"),
                    vault.encrypt(body.phone, column="resident_contacts.phone"),
                    mask_phone(body.phone),
                    body.relation,
                    body.priority,
                    body.consent_at,
                    body.consent_note,
                ),
            )
        ).fetchone()
        assert row is not None
        await audit.record(
            conn,
            principal=principal,
            action="create",
            object_type="resident_contact",
            object_id=row[0],
            institution_id=institution_id,
            detail={
                "resident_id": resident_id,
                "kind": body.kind.value,
                "phone": mask_phone(body.phone),
                "consent_at": row[1].isoformat(),
            },
        )
    return Contact(
        id=row[0],
        resident_id=resident_id,
        kind=body.kind,
        name=body.name,
        phone=body.phone,
        relation=body.relation,
        priority=body.priority,
        consent_at=row[1],
        consent_note=body.consent_note,
    )


@router.delete("/contacts/{contact_id}", status_code=204)
async def remove_contact(contact_id: PathId, conn: Conn, principal: CurrentPrincipal) -> None:
    """The contact withdrew consent or left: their name and phone are erased."""
    institution_id = await scope.resolve(conn, principal, Obj.CONTACT, contact_id, Action.WRITE_RESIDENT)
    async with atomic(conn):
        await conn.execute(
            "UPDATE resident_contacts SET removed_at = now(), name_enc = '', phone_enc = '' WHERE id = %s",
            (contact_id,),
        )
        await audit.record(
            conn,
            principal=principal,
            action="delete",
            object_type="resident_contact",
            object_id=contact_id,
            institution_id=institution_id,
        )
