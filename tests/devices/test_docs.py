"""docs/devices.md stays true to the code: every message field, example file, pattern and code it shows."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eldercare.devices import asyncapi, codes, messages, topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "devices.md"
TEXT = DOC.read_text(encoding="utf-8")
COMMON_FIELDS = {"t", "dev", "ts"}


def _section(heading_start: str) -> str:
    """The text from the heading that starts with ``heading_start`` to the next heading."""
    match = re.search(rf"^{re.escape(heading_start)}.*?$(.*?)(?=^#)", TEXT, flags=re.MULTILINE | re.DOTALL)
    assert match is not None, f"no section {heading_start!r} in {DOC.name}"
    return match.group(1)


def _fields(cls: type[Any]) -> list[str]:
    return [field.encode_name for field in msgspec.structs.fields(cls)]


@pytest.mark.parametrize("cls", [*messages.ALARM_TYPES, *messages.TELEMETRY_TYPES], ids=lambda cls: str(cls.__name__))
def test_every_device_message_field_is_documented(cls: type[Any]) -> None:
    section = _section(f"#### `{cls.__struct_config__.tag}`")
    for name in set(_fields(cls)) - COMMON_FIELDS:
        assert f"| `{name}` |" in section, f"{cls.__name__}.{name} is not in its table"
    common = _section("## 6. Device messages")
    for name in COMMON_FIELDS:
        assert f"| `{name}` |" in common


@pytest.mark.parametrize("cls", [messages.Birth, messages.Heartbeat, messages.Death], ids=lambda c: c.__name__)
def test_every_status_field_is_documented(cls: type[Any]) -> None:
    section = _section(f"#### `{cls.__struct_config__.tag}`")
    for name in set(_fields(cls)) - {"t"}:
        assert f"| `{name}` |" in section, f"{cls.__name__}.{name} is not in its table"


def test_lanes_table_matches_the_classification() -> None:
    lanes = _section("## 5. Lanes")
    alarm_row = next(line for line in lanes.splitlines() if line.startswith("| `up/alarm`"))
    telemetry_row = next(line for line in lanes.splitlines() if line.startswith("| `up/telemetry`"))
    for row, types in ((alarm_row, messages.ALARM_TYPES), (telemetry_row, messages.TELEMETRY_TYPES)):
        tags = {f"`{cls.__struct_config__.tag}`" for cls in types}
        assert set(re.findall(r"`[a-z_]+`", row.split("|")[2])) == tags


def test_example_files_named_exist_and_all_are_named() -> None:
    named = set(re.findall(r"devices/examples/(\w+)\.json", TEXT))
    on_disk = {path.stem for path in asyncapi.EXAMPLES_DIR.glob("*.json")}
    assert named == on_disk


def test_patterns_are_the_grammars() -> None:
    for pattern in (topics.INSTITUTION_PATTERN, topics.GATEWAY_ID_PATTERN, topics.COMMAND_PATTERN):
        assert f"`{pattern}`" in TEXT
    assert topics.ALL_UPLINK in TEXT
    assert topics.ALL_STATUS in TEXT


def test_literal_topics_parse() -> None:
    literal = re.findall(r"eldercare/v1/[0-9A-Z]{18}/[A-Za-z0-9_-]+/[a-z/]+", TEXT)
    assert literal
    for topic in literal:
        topics.parse_topic(topic)


def test_codes_shown_are_valid() -> None:
    usccs = set(re.findall(r"(?<![0-9A-Z])[0-9A-Z]{18}(?![0-9A-Z])", TEXT))
    assert {"524205024154895658", "91350100M000100Y43"} <= usccs
    for code in usccs:
        codes.validate_uscc(code)
    beds = set(re.findall(r"`(B[0-9A-Z]{10})`", TEXT))
    persons = set(re.findall(r"`(P[0-9A-Z]{10})`", TEXT))
    assert beds
    assert persons
    for code in beds:
        codes.validate_bed_code(code)
    for code in persons:
        codes.validate_person_code(code)


def test_the_validator_snippet_agrees_with_the_code() -> None:
    snippet = re.search(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)
    is_platform_code = namespace["is_platform_code"]
    rng = random.Random(9)
    for _ in range(200):
        bed = codes.new_bed_code(rng)
        assert is_platform_code(f" {bed.lower()}", "B")
        assert not is_platform_code(bed, "P")
        wrong = bed[:5] + ("0" if bed[5] != "0" else "1") + bed[6:]
        assert not is_platform_code(wrong, "B")
        assert is_platform_code(codes.new_person_code(rng), "P")
