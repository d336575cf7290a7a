"""Applying a checked import: every row in one transaction, idempotent by natural keys.

The rule: a file with any bad row imports nothing (every problem is reported with its row and column);
a good file is applied in one transaction. A row whose natural key is registered already (residents: the
ID number in the institution; beds: building, floor, room and label; devices: the device code) updates the
registered values where they differ and otherwise changes nothing, so importing the same file twice
changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from psycopg import sql
from pydantic import BaseModel, Field

from eldercare.devices import codes
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.registry import db, devices, places, residents
from eldercare.platform.registry.imports.parse import ImportRejected, Row, RowError, read_rows, validate
from eldercare.platform.registry.types import BedKind, Label, Name

Kind = Literal["residents", "beds", "devices"]

_CARE = (
    "capability",
    "fall_risk",
    "wander_risk",
    "lives_alone",
    "heart_rate_min",
    "heart_rate_max",
    "resp_rate_min",
    "resp_rate_max",
)
_YES_NO_COLUMNS = ("wander_risk", "lives_alone")
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "residents": (("name", "id_number", *_CARE), ("name", "id_number")),
    "beds": (("building", "floor", "room", "label", "kind"), ("building", "floor", "room", "label", "kind")),
    "devices": (("code", "kind", "vendor", "model", "heartbeat_s"), ("code", "kind")),
}
_YES_NO = {"是": "true", "否": "false", "y": "true", "n": "false"}

PlaceName = Annotated[Name, Field(max_length=64)]


class BedRow(BaseModel):
    building: PlaceName
    floor: PlaceName
    room: PlaceName
    label: Annotated[Label, Field(min_length=1)]
    kind: BedKind


@dataclass
class Report:
    kind: str
    rows: int
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0


def _prepare_resident(row: Row) -> dict[str, Any]:
    data = {k: v for k, v in row.values.items() if v != ""}
    for column in _YES_NO_COLUMNS:
        if column in data:
            data[column] = _YES_NO.get(data[column].lower(), data[column])
    return data


def _duplicates(keyed: Sequence[tuple[Row, str]], column: str) -> list[RowError]:
    seen: dict[str, int] = {}
    errors = []
    for row, key in keyed:
        if key in seen:
            errors.append(RowError(row.number, column, f"the same as row {seen[key]}"))
        else:
            seen[key] = row.number
    return errors


def check(kind: Kind, data: bytes, *, filename: str, lives_at_home: bool) -> list[tuple[Row, BaseModel]]:
    """Read and validate the whole file; raise :class:`ImportRejected` with every problem found. ``lives_at_home``:
    whether the institution's residents live in their own homes; if not (a residential home's), a row that says
    ``lives_alone`` is a problem of its own (migration 0032)."""
    columns, required = COLUMNS[kind]
    rows = read_rows(data, filename=filename, columns=columns, required=required)
    good: Sequence[tuple[Row, BaseModel]]
    if kind == "residents":
        numeric = [
            RowError(r.number, "id_number", "stored as a number, which Excel rounds: format the column as text")
            for r in rows
            if "id_number" in r.numeric
        ]
        checked, errors = validate(
            [r for r in rows if "id_number" not in r.numeric], residents.ResidentIn, prepare=_prepare_resident
        )
        errors = numeric + errors + _duplicates([(r, m.id_number) for r, m in checked], "id_number")
        if not lives_at_home:
            _, reason = db.rule(db.LIVES_ALONE_AT_HOME)
            errors += [RowError(r.number, "lives_alone", reason) for r, m in checked if m.lives_alone]
        good = checked
    elif kind == "beds":
        beds, errors = validate(rows, BedRow)
        errors += _duplicates([(r, f"{m.building}\x00{m.floor}\x00{m.room}\x00{m.label}") for r, m in beds], "label")
        good = beds
    else:
        found, errors = validate(rows, devices.DeviceIn)
        errors += _duplicates([(r, m.code) for r, m in found], "code")
        good = found
    if errors:
        raise ImportRejected(sorted(errors, key=lambda e: (e.row, e.column)))
    return list(good)


async def apply(
    conn: AsyncConn,
    principal: Principal,
    *,
    kind: Kind,
    institution_id: int,
    rows: Sequence[tuple[Row, BaseModel]],
    vault: Vault,
) -> Report:
    """Write the checked rows (inside the caller's transaction)."""
    report = Report(kind=kind, rows=len(rows))
    for _, model in rows:
        if isinstance(model, residents.ResidentIn):
            await _resident(
                conn=conn, principal=principal, institution_id=institution_id, model=model, vault=vault, report=report
            )
        elif isinstance(model, BedRow):
            await _bed(conn, principal, institution_id, model, report)
        elif isinstance(model, devices.DeviceIn):
            await _device(conn, principal, institution_id, model, report)
    await audit.record(
        conn,
        principal=principal,
        action="import",
        object_type=kind,
        object_id=None,
        institution_id=institution_id,
        detail={"rows": report.rows, "created": len(report.created), "updated": len(report.updated)},
    )
    return report


async def _changed(
    *, conn: AsyncConn, principal: Principal, table: str, object_id: int, institution_id: int, values: dict[str, Any]
) -> None:
    await conn.execute(
        sql.SQL("UPDATE {} SET {} WHERE id = %(id)s").format(
            sql.Identifier(table),
            sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values),
        ),
        {**values, "id": object_id},
    )
    shown = {k: v for k, v in values.items() if not isinstance(v, bytes)}
    await audit.record(
        conn,
        principal=principal,
        action="update",
        object_type=table.rstrip("s"),
        object_id=object_id,
        institution_id=institution_id,
        detail={"import": True, **shown},
    )


async def _resident(
    *,
    conn: AsyncConn,
    principal: Principal,
    institution_id: int,
    model: residents.ResidentIn,
    vault: Vault,
    report: Report,
) -> None:
    number = codes.parse_id_number(model.id_number).number
    row = await (
        await conn.execute(
            "SELECT id, person_code, name_enc, capability::text, fall_risk::text, wander_risk, lives_alone,"
            " heart_rate_min, heart_rate_max, resp_rate_min, resp_rate_max FROM residents"
            " WHERE institution_id = %s AND id_number_hash = ANY(%s) FOR UPDATE",
            (institution_id, vault.lookup_hashes(number)),
        )
    ).fetchone()
    if row is None:
        _, person_code = await residents.insert(conn, principal, vault=vault, institution_id=institution_id, body=model)
        report.created.append(person_code)
        return
    # Only what the file says: a column it does not have, or a cell left empty, changes nothing (a roster without the
    # fall_risk column would otherwise set every high fall risk back to low, and stop the night bed-exit alarms
    # that watch them; one without lives_alone would take everyone off the visit list).
    wanted = model.model_dump(mode="json", include=set(_CARE) & model.model_fields_set)
    current = dict(zip(_CARE, row[3:], strict=True))
    changes: dict[str, Any] = {k: v for k, v in wanted.items() if current[k] != v}
    if vault.decrypt(bytes(row[2]), column="residents.name") != model.name:
        changes["name_enc"] = vault.encrypt(model.name, column="residents.name")
    if changes:
        await _changed(
            conn=conn,
            principal=principal,
            table="residents",
            object_id=row[0],
            institution_id=institution_id,
            values=changes,
        )
        report.updated.append(row[1])
    else:
        report.unchanged += 1


async def _place(conn: AsyncConn, table: str, parent: str, parent_id: int, name: str) -> int:
    query = sql.SQL("SELECT id FROM {t} WHERE {p} = %s AND name = %s").format(
        t=sql.Identifier(table), p=sql.Identifier(parent)
    )
    row = await (await conn.execute(query, (parent_id, name))).fetchone()
    if row is None:
        insert = sql.SQL("INSERT INTO {t} ({p}, name) VALUES (%s, %s) RETURNING id").format(
            t=sql.Identifier(table), p=sql.Identifier(parent)
        )
        row = await (await conn.execute(insert, (parent_id, name))).fetchone()
    assert row is not None
    place_id: int = row[0]
    return place_id


async def _bed(conn: AsyncConn, principal: Principal, institution_id: int, model: BedRow, report: Report) -> None:
    building = await _place(conn, "buildings", "institution_id", institution_id, model.building)
    floor = await _place(conn, "floors", "building_id", building, model.floor)
    room = await _place(conn, "rooms", "floor_id", floor, model.room)
    row = await (
        await conn.execute(
            "SELECT id, code, kind::text FROM beds WHERE institution_id = %s AND room_id = %s AND label = %s"
            " FOR UPDATE",
            (institution_id, room, model.label),
        )
    ).fetchone()
    if row is None:
        bed_id = await places.insert_bed(
            conn, principal, institution_id=institution_id, room_id=room, label=model.label, kind=model.kind.value
        )
        code = await (await conn.execute("SELECT code FROM beds WHERE id = %s", (bed_id,))).fetchone()
        assert code is not None
        report.created.append(code[0])
    elif row[2] != model.kind.value:
        await _changed(
            conn=conn,
            principal=principal,
            table="beds",
            object_id=row[0],
            institution_id=institution_id,
            values={"kind": model.kind.value},
        )
        report.updated.append(row[1])
    else:
        report.unchanged += 1


async def _device(
    conn: AsyncConn, principal: Principal, institution_id: int, model: devices.DeviceIn, report: Report
) -> None:
    row = await (
        await conn.execute(
            "SELECT id, kind::text, vendor, model, heartbeat_s FROM devices WHERE institution_id = %s AND code = %s"
            " FOR UPDATE",
            (institution_id, model.code),
        )
    ).fetchone()
    if row is None:
        await devices.insert(conn, principal, institution_id=institution_id, body=model)
        report.created.append(model.code)
        return
    # as for residents: a column the file lacks, or an empty cell, keeps the device's (a list without heartbeat_s set
    # every device back to the default heartbeat, by which it is judged offline)
    wanted = model.model_dump(mode="json", include={"kind", "vendor", "model", "heartbeat_s"} & model.model_fields_set)
    current = dict(zip(("kind", "vendor", "model", "heartbeat_s"), row[1:], strict=True))
    changes = {k: v for k, v in wanted.items() if current[k] != v}
    if changes:
        await _changed(
            conn=conn,
            principal=principal,
            table="devices",
            object_id=row[0],
            institution_id=institution_id,
            values=changes,
        )
        report.updated.append(model.code)
    else:
        report.unchanged += 1


__all__ = ["COLUMNS", "ImportRejected", "Kind", "Report", "apply", "check"]
