"""Field types shared by the registry's request and response models.

Text fields refuse control, format (invisible characters such as U+200B and the bidirectional overrides such
as U+202E, which would make a name read differently from what it is), line and paragraph separator, private
use and unassigned characters, and are normalised to NFC; a name needs at least one visible character. (A
NUL cannot be stored in PostgreSQL text, and none of these belongs in a name shown on a board or a public
map.) Ids are positive 64-bit integers, as the database's identity columns.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, overload

from fastapi import Path, Query
from pydantic import AfterValidator, Field, StringConstraints

from eldercare.devices import codes

MAX_ID = 2**63 - 1
# Unicode general categories refused in text: control, format, surrogate, private use, unassigned, line and
# paragraph separators.
_REFUSED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _clean(value: str) -> str:
    text = unicodedata.normalize("NFC", value)
    for char in text:
        if unicodedata.category(char) in _REFUSED:
            raise ValueError(f"contains the invisible or control character U+{ord(char):04X}")
    return text


def _visible(value: str) -> str:
    text = _clean(value)
    if not any(unicodedata.category(char)[0] not in "ZM" for char in text):
        raise ValueError("needs at least one visible character")
    return text


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_visible)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=0, max_length=64), AfterValidator(_clean)]
Note = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_clean)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300), AfterValidator(_clean)]
RegionCode = Annotated[str, StringConstraints(pattern=r"^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})$")]
CountyCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}([0-9]{3})?$")]

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]

_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_LANDLINE = re.compile(r"^0[0-9]{2,3}-?[0-9]{7,8}$")


def _phone(value: str) -> str:
    text = value.strip().replace(" ", "")
    if not (_MOBILE.match(text) or _LANDLINE.match(text)):
        raise ValueError("a mainland mobile number (11 digits, 1[3-9]...) or a landline 0xx(x)-xxxxxxx(x)")
    return text


Phone = Annotated[str, StringConstraints(max_length=20), AfterValidator(_phone)]


def _uscc(value: str) -> str:
    return codes.validate_uscc(value)


def _id_number(value: str) -> str:
    return codes.parse_id_number(value).number


Uscc = Annotated[str, StringConstraints(min_length=18, max_length=20), AfterValidator(_uscc)]
IdNumberText = Annotated[str, StringConstraints(min_length=15, max_length=20), AfterValidator(_id_number)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a time zone (e.g. +08:00 or Z)")
    if not datetime(1900, 1, 1, tzinfo=UTC) <= value <= datetime(2200, 1, 1, tzinfo=UTC):
        raise ValueError("out of range (1900-2200)")
    return value


When = Annotated[datetime, AfterValidator(_aware)]


def mask_phone(phone: str) -> str:
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:] if len(phone) >= 7 else "*" * len(phone)


@overload
def mask_text(text: str) -> str: ...
@overload
def mask_text(text: str | None) -> str | None: ...
def mask_text(text: str | None) -> str | None:
    """Free text (a note, an outcome) for regulators: that there is one, not what it says nor how long it is."""
    return "***" if text else text


def mask_name(name: str) -> str:
    """王秀英 -> 王*英, 李明 -> 李*; regulators and the public see names like this."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


class Capability(StrEnum):
    SELF_CARE = "self_care"
    PARTLY_DISABLED = "partly_disabled"
    DISABLED = "disabled"


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class BedKind(StrEnum):
    NURSING = "nursing"
    ORDINARY = "ordinary"


class DeviceKind(StrEnum):
    BED_SENSOR = "bed_sensor"
    BUTTON = "button"
    FALL_RADAR = "fall_radar"
    WEARABLE = "wearable"
    WRISTBAND = "wristband"
    SMOKE = "smoke"
    GAS = "gas"
    WATER = "water"


def _error(description: str) -> dict[str, object]:
    from eldercare.platform.api.errors import ErrorBody

    return {"model": ErrorBody, "description": description}


RESPONSES: dict[int | str, dict[str, object]] = {
    400: _error("the body could not be parsed (not UTF-8 JSON, broken multipart)"),
    401: _error("not logged in, or the session expired"),
    403: _error("the user's role may not do this"),
    404: _error("no such object in the user's scope"),
    409: _error("conflicts with what is registered (taken code, occupied bed, ...)"),
    422: _error("invalid request; each field with its reason"),
}
