"""Declarative vendor mappings: data files that turn a vendor's payloads into contract messages.

A mapping file (TOML, one per vendor, in ``gateway/mappings/`` or a folder named in the configuration)
says how to read a payload (``format``: ``json``, ``kv`` text or the contract itself), where the device
code and time are, and a list of rules: when a record's fields have given values, emit a contract message
whose fields are taken from the record (renamed, scaled, converted, looked up in a table). The format is
documented in ``docs/gateway.md``; ``acme.toml`` and ``lianke.toml`` are worked examples.

Mapping is lenient in what it ignores (fields no rule uses) and strict in what it emits: every message is
validated against the contract, and a payload or record that cannot be mapped is a :class:`MappingError`
with the reason, never an exception that escapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from eldercare.devices import messages as m
from eldercare.gateway.config import DeviceClass
from eldercare.gateway.errors import MappingError

Path_ = tuple[str, ...]
CASTS: Final = ("bool", "int", "float", "str", "xyz", "xyz_text")
_MSG_TAGS: Final = {
    str(cls.__struct_config__.tag): cls for cls in (*m.TELEMETRY_TYPES, *m.ALARM_TYPES)
}  # "bed" -> BedSample, ...
_CONTRACT_ONE: Final = msgspec.json.Decoder(m.DeviceMessage)
_CONTRACT_MANY: Final = msgspec.json.Decoder(list[msgspec.Raw])

# The class a device is given when auto-discovered, from the first message it sends.
CLASS_OF_MESSAGE: Final[Mapping[str, DeviceClass]] = {
    "bed": DeviceClass.BED_SENSOR,
    "bed_exit": DeviceClass.BED_SENSOR,
    "button": DeviceClass.BUTTON,
    "fall": DeviceClass.FALL_RADAR,
    "accel": DeviceClass.WEARABLE,
    "sos": DeviceClass.WRISTBAND,
    "location": DeviceClass.WRISTBAND,
}


@dataclass(frozen=True, slots=True)
class Mapped:
    message: m.DeviceMessage
    device_class: DeviceClass | None  # what the rule says the device is (for auto-discovery)


@dataclass(frozen=True, slots=True)
class MapResult:
    messages: list[Mapped]
    problems: list[MappingError]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    source: Path_ | None
    const: Any
    cast: str | None
    scale: float | None
    table: Mapping[str, Any] | None
    optional: bool


@dataclass(frozen=True, slots=True)
class Rule:
    when: Mapping[Path_, str]
    require: tuple[Path_, ...]
    emit: str
    device_class: DeviceClass | None
    fields: Mapping[str, FieldSpec]

    def matches(self, record: Mapping[str, Any]) -> bool:
        for path, expected in self.when.items():
            value = _get(record, path)
            if value is None or _text(value) != expected:
                return False
        return all(_get(record, path) is not None for path in self.require)


def _text(value: Any) -> str:  # noqa: ANN401 - any JSON value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _get(record: Mapping[str, Any], path: Path_) -> Any:  # noqa: ANN401 - any JSON value
    value: Any = record
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _finite(value: Any) -> float:  # noqa: ANN401 - a JSON number or text
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _value(spec: FieldSpec, raw: Any) -> Any:  # noqa: ANN401 - JSON in, JSON out
    """A field's value from the record's: through its table, if it has one, then cast and scaled."""
    if spec.table is not None:
        key = _text(raw)
        if key not in spec.table:
            raise ValueError(f"{key!r} is not in its table")
        raw = spec.table[key]
    return _cast(raw, spec.cast, spec.scale)


def _cast(value: Any, cast: str | None, scale: float | None) -> Any:  # noqa: ANN401 - JSON in, JSON out
    if cast == "xyz_text":  # "x,y,z|x,y,z|..."
        value = [triple.split(",") for triple in str(value).strip().split("|") if triple]
        cast = "xyz"
    if cast == "xyz":
        if not isinstance(value, list):
            raise ValueError("expected a list of [x, y, z]")
        factor = scale if scale is not None else 1.0
        out: list[tuple[int, ...]] = []
        for triple in value:
            if not isinstance(triple, list) or len(triple) != 3 or any(isinstance(v, bool) for v in triple):
                raise ValueError(f"{triple!r} is not [x, y, z]")
            out.append(tuple(round(_finite(_finite(v) * factor)) for v in triple))
        return out
    if scale is not None:
        value = _finite(_finite(value) * scale)
    if cast == "bool":
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in {"0", "1", "true", "false"}:
                raise ValueError(f"{value!r} is not a boolean")
            return lowered in {"1", "true"}
        return bool(_finite(value))
    if cast == "int":
        return round(_finite(value))
    if cast == "float":
        return _finite(value)
    if cast == "str":
        return _text(value)
    return value


@dataclass(frozen=True, slots=True)
class VendorMapping:
    vendor: str
    description: str
    format: Literal["json", "kv", "contract"]
    records: Path_ | None
    device: Path_ | None
    device_topic_level: int | None
    time: Path_ | None
    time_unit: Literal["s", "ms"]
    pair_separator: str
    kv_separator: str
    rules: tuple[Rule, ...]

    def map(self, payload: bytes, *, received_ms: int, topic: str | None = None) -> MapResult:
        """Every contract message the payload holds, and a problem for each part that could not be mapped."""
        try:
            return self._map(payload, received_ms=received_ms, topic=topic)
        except RecursionError:
            return MapResult([], [MappingError(self.vendor, "the payload is nested too deeply")])
        except Exception as exc:  # noqa: BLE001 - a payload the mapping did not foresee: reported, never raised
            return MapResult([], [MappingError(self.vendor, f"cannot map the payload ({type(exc).__name__}: {exc})")])

    def _map(self, payload: bytes, *, received_ms: int, topic: str | None) -> MapResult:
        if self.format == "contract":
            return self._contract(payload)
        try:
            records = self._records(payload)
        except MappingError as exc:
            return MapResult([], [exc])
        out: list[Mapped] = []
        problems: list[MappingError] = []
        for record in records:
            try:
                out.extend(self._record(record, received_ms=received_ms, topic=topic, problems=problems))
            except MappingError as exc:
                problems.append(exc)
        return MapResult(out, problems)

    def _contract(self, payload: bytes) -> MapResult:
        """One message, or an array of them decoded one by one (a bad one does not spoil the others)."""
        if payload.lstrip()[:1] != b"[":
            try:
                return MapResult([Mapped(_CONTRACT_ONE.decode(payload), None)], [])
            except msgspec.DecodeError as exc:
                return MapResult([], [MappingError(self.vendor, str(exc))])
        try:
            raws = _CONTRACT_MANY.decode(payload)
        except msgspec.DecodeError as exc:
            return MapResult([], [MappingError(self.vendor, str(exc))])
        out: list[Mapped] = []
        problems: list[MappingError] = []
        for index, raw in enumerate(raws):
            try:
                out.append(Mapped(_CONTRACT_ONE.decode(raw), None))
            except msgspec.DecodeError as exc:
                problems.append(MappingError(self.vendor, f"[{index}]: {exc}"))
        return MapResult(out, problems)

    def _records(self, payload: bytes) -> list[Mapping[str, Any]]:
        if self.format == "kv":
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise MappingError(self.vendor, "payload is not UTF-8 text") from None
            record: dict[str, str] = {}
            for pair in text.strip().split(self.pair_separator):
                if not pair.strip():
                    continue
                key, sep, value = pair.partition(self.kv_separator)
                if not sep:
                    raise MappingError(self.vendor, f"{pair.strip()!r} is not key{self.kv_separator}value")
                record[key.strip()] = value.strip()
            return [record]
        try:
            document = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MappingError(self.vendor, f"payload is not JSON: {exc}") from None
        if self.records is not None:
            document = _get(document, self.records) if isinstance(document, Mapping) else None
            if not isinstance(document, list):
                raise MappingError(self.vendor, f"no list of records at {'.'.join(self.records)!r}")
        items = document if isinstance(document, list) else [document]
        if not all(isinstance(item, Mapping) for item in items):
            raise MappingError(self.vendor, "a record is not a JSON object")
        return items

    def _device(self, record: Mapping[str, Any], topic: str | None) -> str:
        if self.device_topic_level is not None:
            levels = (topic or "").split("/")
            if self.device_topic_level >= len(levels) or not levels[self.device_topic_level]:
                raise MappingError(self.vendor, f"topic {topic!r} has no level {self.device_topic_level}")
            return levels[self.device_topic_level]
        assert self.device is not None
        code = _get(record, self.device)
        if code is None or code == "":
            raise MappingError(self.vendor, f"no device code at {'.'.join(self.device)!r}")
        return _text(code)

    def _time(self, record: Mapping[str, Any], received_ms: int, device: str) -> int:
        if self.time is None:
            return received_ms
        value = _get(record, self.time)
        if value is None:
            return received_ms
        try:
            number = _finite(value)
        except (TypeError, ValueError):
            raise MappingError(self.vendor, f"time {value!r} is not a finite number", device=device) from None
        ms = number * 1000 if self.time_unit == "s" else number
        if not 0 <= ms < 2**53:
            raise MappingError(self.vendor, f"time {value!r} is out of range", device=device)
        return round(ms)

    def _record(
        self, record: Mapping[str, Any], *, received_ms: int, topic: str | None, problems: list[MappingError]
    ) -> list[Mapped]:
        """The messages of one record. Its rules are mapped one by one: a battery level out of range does not
        lose the press it came with (the battery's problem is reported, the press is stored)."""
        device = self._device(record, topic)
        clock: MappingError | None = None
        try:
            ts = self._time(record, received_ms, device)
        except MappingError as exc:
            ts, clock = received_ms, exc  # an alarm is kept with the time of receipt (see _emit)
        rules = [rule for rule in self.rules if rule.matches(record)]
        if not rules:
            raise MappingError(self.vendor, "no rule matches the record", device=device)
        out: list[Mapped] = []
        for rule in rules:
            try:
                out.append(self._emit(rule, record, device, ts, received_ms, clock=clock, problems=problems))
            except MappingError as exc:
                problems.append(exc)
        return out

    def _emit(
        self,
        rule: Rule,
        record: Mapping[str, Any],
        device: str,
        ts: int,
        received_ms: int,
        *,
        clock: MappingError | None,
        problems: list[MappingError],
    ) -> Mapped:
        """One rule's message. An alarm is not lost for what is beside the point: an optional field that cannot be
        read is left out, and a device time that cannot be read or is outside the contract (a clock reset to 1970)
        is replaced by the time of receipt; each is reported as a problem. Other messages are refused whole."""
        out, optional, notes = self._fields(rule, record, device, ts)
        try:
            message = msgspec.convert(out, m.DeviceMessage)
        except msgspec.ValidationError as exc:
            message = self._alarm_anyway(out, optional, received_ms, device, notes)
            if message is None:
                raise MappingError(self.vendor, f"{rule.emit}: {exc}", device=device) from None
        if clock is not None:
            if not m.is_alarm_class(message):
                raise clock
            notes.append(MappingError(self.vendor, f"{clock.reason}: stored with the time of receipt", device=device))
        problems.extend(notes)
        return Mapped(message, rule.device_class)

    def _fields(
        self, rule: Rule, record: Mapping[str, Any], device: str, ts: int
    ) -> tuple[dict[str, Any], list[str], list[MappingError]]:
        """The rule's message as a document, the optional fields it holds, and the optional ones left out because
        they could not be read (each a problem); a required field that cannot be read refuses the message."""
        out: dict[str, Any] = {"t": rule.emit, "dev": device, "ts": ts}
        optional: list[str] = []
        notes: list[MappingError] = []
        for name, spec in rule.fields.items():
            if spec.source is None:
                out[name] = spec.const
                continue
            raw = _get(record, spec.source)
            if raw is None:
                if spec.optional:
                    continue
                raise MappingError(
                    self.vendor, f"{rule.emit}.{name}: no value at {'.'.join(spec.source)!r}", device=device
                )
            try:
                out[name] = _value(spec, raw)
            except (TypeError, ValueError) as exc:
                error = MappingError(self.vendor, f"{rule.emit}.{name}: {exc}", device=device)
                if not spec.optional:
                    raise error from None
                notes.append(error)
                continue
            if spec.optional:
                optional.append(name)
        return out, optional, notes

    def _alarm_anyway(
        self, out: dict[str, Any], optional: list[str], received_ms: int, device: str, notes: list[MappingError]
    ) -> m.DeviceMessage | None:
        """An alarm the contract refuses as it stands, without its optional fields or with the time of receipt;
        None if it is no alarm or still refused."""
        bare = {k: v for k, v in out.items() if k not in optional}
        for attempt, why in (
            (bare, f"left out {', '.join(optional)}: out of the contract's range"),
            ({**out, "ts": received_ms}, f"time {out['ts']} is outside the contract: stored with the time of receipt"),
            ({**bare, "ts": received_ms}, "left out its optional fields and stored with the time of receipt"),
        ):
            try:
                message: m.DeviceMessage = msgspec.convert(attempt, m.DeviceMessage)
            except msgspec.ValidationError:
                continue
            if not m.is_alarm_class(message):
                return None
            notes.append(MappingError(self.vendor, f"{out['t']}: {why}", device=device))
            return message
        return None
