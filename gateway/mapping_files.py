"""Loading vendor mapping files: strict schemas (a misspelt key is an error that names it), then a registry.

The shipped files are in ``gateway/mappings/``; folders named in ``[mappings] dirs`` add to them (a file of
the same vendor name replaces the shipped one).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from eldercare.gateway.config import DeviceClass
from eldercare.gateway.errors import MappingFileError
from eldercare.gateway.mapping import _MSG_TAGS, CASTS, FieldSpec, Rule, VendorMapping

_PATH_PATTERN = r"^[^.\s]+(\.[^.\s]+)*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Field(_Strict):
    from_: str | None = Field(None, alias="from", pattern=_PATH_PATTERN)
    value: Any = None
    cast: Literal["bool", "int", "float", "str", "xyz", "xyz_text"] | None = Field(None, alias="as")
    scale: float | None = None
    map: dict[str, Any] | None = None
    optional: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> _Field:
        if (self.from_ is None) == (self.value is None):
            raise ValueError("give exactly one of 'from' (a field of the record) and 'value' (a constant)")
        return self


class _Rule(_Strict):
    when: dict[str, str | int | bool] = {}
    require: list[str] = []
    emit: str
    device_class: DeviceClass | None = Field(None, alias="class")
    fields: dict[str, _Field] = {}

    @model_validator(mode="after")
    def _known_type(self) -> _Rule:
        if self.emit not in _MSG_TAGS:
            raise ValueError(f"emit {self.emit!r} is not a contract message type ({', '.join(sorted(_MSG_TAGS))})")
        return self


class _File(_Strict):
    vendor: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    description: str = ""
    format: Literal["json", "kv", "contract"]
    records: str | None = Field(None, pattern=_PATH_PATTERN)
    device: str | None = Field(None, pattern=_PATH_PATTERN)
    device_topic_level: int | None = Field(None, ge=0, le=32)
    time: str | None = Field(None, pattern=_PATH_PATTERN)
    time_unit: Literal["s", "ms"] = "ms"
    pair_separator: str = Field(";", min_length=1)
    kv_separator: str = Field("=", min_length=1)
    rule: list[_Rule] = []

    @model_validator(mode="after")
    def _complete(self) -> _File:
        if self.format != "contract":
            if (self.device is None) == (self.device_topic_level is None):
                raise ValueError("give exactly one of 'device' (a field) and 'device_topic_level'")
            if not self.rule:
                raise ValueError("a json or kv mapping needs at least one [[rule]]")
        return self


def _path(text: str | None) -> tuple[str, ...] | None:
    return tuple(text.split(".")) if text else None


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse(document: dict[str, Any], *, path: Path) -> VendorMapping:
    try:
        f = _File.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MappingFileError(path, _key(first["loc"]), first["msg"]) from None
    rules = tuple(
        Rule(
            when={tuple(k.split(".")): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in r.when.items()},
            require=tuple(tuple(p.split(".")) for p in r.require),
            emit=r.emit,
            device_class=r.device_class,
            fields={
                name: FieldSpec(_path(spec.from_), spec.value, spec.cast, spec.scale, spec.map, spec.optional)
                for name, spec in r.fields.items()
            },
        )
        for r in f.rule
    )
    assert all(spec.cast in (None, *CASTS) for r in rules for spec in r.fields.values())
    return VendorMapping(
        vendor=f.vendor,
        description=f.description,
        format=f.format,
        records=_path(f.records),
        device=_path(f.device),
        device_topic_level=f.device_topic_level,
        time=_path(f.time),
        time_unit=f.time_unit,
        pair_separator=f.pair_separator,
        kv_separator=f.kv_separator,
        rules=rules,
    )


def load_file(path: Path) -> VendorMapping:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise MappingFileError(path, "(syntax)", str(exc)) from None
    return parse(document, path=path)


def shipped_dir() -> Path:
    return Path(str(resources.files("eldercare.gateway").joinpath("mappings")))


def load_all(extra_dirs: Iterable[Path] = ()) -> dict[str, VendorMapping]:
    """Vendor name -> mapping, from the shipped folder then each extra folder (later ones win)."""
    registry: dict[str, VendorMapping] = {}
    for folder in (shipped_dir(), *extra_dirs):
        for path in sorted(folder.glob("*.toml")):
            mapping = load_file(path)
            registry[mapping.vendor] = mapping
    return registry
