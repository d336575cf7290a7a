"""Writes in one transaction, and the one place where database errors become HTTP problems.

Errors are told apart by their SQLSTATE class (psycopg's exception classes), never by message text; the
constraint's name (a structured field of the error) says which field was at fault.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from psycopg import errors as pg

from eldercare.platform.api.errors import FieldError, Problem, invalid
from eldercare.platform.auth.service import AsyncConn

LIVES_ALONE_AT_HOME = "residents_lives_alone_at_home"
NOT_VALID_TOGETHER = "the values are not valid together"

# constraint name -> (field, reason) for the constraints a client can run into. The field is named where the client
# sent it, as FastAPI's own validation errors are: ``body.code``, ``path.resident_id``, ``query.region``. (Bed and
# person codes are issued by the platform, not sent: those two keep the bare column name.)
_CONSTRAINTS: dict[str, tuple[str, str]] = {
    "institutions_code_key": ("body.code", "an institution with this code is already registered"),
    "institutions_region_code_fkey": ("body.region_code", "no such administrative division code"),
    "institutions_check": ("body.lon", "give both coordinates or neither"),
    "institutions_check1": ("body.price_max", "must not be below price_min"),
    "institutions_price_max_check": ("body.price_max", "must not be below price_min"),
    "buildings_institution_id_name_key": ("body.name", "a building of this name exists in the institution"),
    "floors_building_id_name_key": ("body.name", "a floor of this name exists in the building"),
    "rooms_floor_id_name_key": ("body.name", "a room of this name exists on the floor"),
    "beds_code_key": ("code", "bed code already issued"),
    "beds_room_label": ("body.label", "a bed with this label exists in the room"),
    "residents_institution_id_id_number_hash_key": (
        "body.id_number",
        "a resident with this ID number is registered here",
    ),
    "residents_person_code_key": ("person_code", "person code already issued"),
    # a trigger of migration 0032, raised as a check violation of this name
    LIVES_ALONE_AT_HOME: (
        "body.lives_alone",
        "a resident of a residential home lives in it, not alone at home: only residents of community centres and"
        " home-care providers are put on the visit list",
    ),
    "bed_assignments_bed_id_during_excl": ("body.bed_id", "the bed is occupied at that time"),
    "bed_assignments_resident_id_during_excl": ("path.resident_id", "the resident has a bed at that time"),
    "devices_institution_id_code_key": ("body.code", "a device with this code is registered in the institution"),
    "device_bindings_device_id_during_excl": ("path.device_id", "the device is bound at that time"),
    "gateways_gateway_id_key": ("body.gateway_id", "a gateway with this id is registered"),
    "users_username_key": ("body.username", "the username is taken"),
    "users_region_code_fkey": ("body.region_code", "no such administrative division code"),
    "family_links_pkey": ("body.resident_id", "the user is already linked to this resident"),
    "hospital_stays_resident_id_during_excl": ("body.start", "overlaps another hospital stay of the resident"),
    "deaths_pkey": ("path.resident_id", "a death is already recorded for this resident"),
    "service_applications_open": ("body.service", "an application for this service is already open"),
    # the death and hardship register uploads name the region in the query
    "subsidy_register_imports_region_code_fkey": ("query.region", "no such administrative division code"),
}


# Clocks of phones and PCs drift: a time this far ahead of the server's is still taken as "now".
LEEWAY = timedelta(minutes=5)


def not_in_future(field: str, when: datetime | None) -> None:
    """422 on ``field`` when ``when`` has not happened yet (beyond :data:`LEEWAY`): the registry records what
    happened (an admission, a binding, a death), not what is planned. None is "now"."""
    if when is not None and when > datetime.now(UTC) + LEEWAY:
        raise invalid(field, "in the future")


def ends_after_start(field: str, what: str, at: datetime | None, began: datetime | None) -> None:
    """409 on ``field`` when the current ``what`` (binding, stay) that ``at`` ends began after ``at``: it would
    end before it started. Nothing to check without either time (``at`` None ends it now)."""
    if at is None or began is None or at >= began:
        return
    reason = f"before the current {what} began ({began.isoformat()})"
    raise Problem(409, f"{field.rsplit('.', 1)[-1]} is {reason}", [FieldError(field=field, reason=reason)])


def rule(constraint: str) -> tuple[str, str]:
    """The field and the reason a client is told when the database refuses a write by ``constraint``."""
    return _CONSTRAINTS[constraint]


def translate(exc: pg.Error) -> Problem:
    """The problem to answer for a database error a client caused; re-raise anything else."""
    constraint = getattr(exc.diag, "constraint_name", None) or ""
    field, reason = _CONSTRAINTS.get(constraint, (constraint or "body", ""))
    match exc:
        case pg.UniqueViolation() | pg.ExclusionViolation():
            return Problem(
                409, "conflicts with what is registered", [FieldError(field=field, reason=reason or "conflict")]
            )
        case pg.ForeignKeyViolation():
            return Problem(
                422,
                "refers to something that does not exist",
                [FieldError(field=field, reason=reason or "unknown reference")],
            )
        case pg.NotNullViolation() if exc.diag.column_name:  # an explicit null for a field that has a value always
            column = f"body.{exc.diag.column_name}"
            return Problem(422, f"{column} may not be null", [FieldError(field=column, reason="may not be null")])
        case pg.IntegrityError():  # check, not-null
            return Problem(422, NOT_VALID_TOGETHER, [FieldError(field=field, reason=reason or "violates a rule")])
        case pg.DataError():  # class 22: out of range, bad text representation, too long
            return Problem(
                422, "a value is out of range or malformed", [FieldError(field=field, reason=type(exc).__name__)]
            )
    raise exc


@asynccontextmanager
async def atomic(conn: AsyncConn) -> AsyncIterator[AsyncConn]:
    """A transaction whose client-caused database errors come out as :class:`Problem` (409 or 422)."""
    try:
        async with conn.transaction():
            yield conn
    except (pg.IntegrityError, pg.DataError) as exc:
        raise translate(exc) from exc
