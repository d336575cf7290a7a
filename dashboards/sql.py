"""SQL targets for Grafana's PostgreSQL data source (TimescaleDB), and the macro expansion tests use.

grafana-foundation-sdk has builders for many data sources but none for PostgreSQL, so :class:`SqlQuery`
implements the SDK's ``Dataquery`` variant: the JSON Grafana stores for a raw SQL target.

:func:`expand` substitutes the macros the panels use the way Grafana's SQL data sources document them
(``$__timeFrom()`` and ``$__timeTo()`` become quoted RFC 3339 instants, ``$__timeFilter(x)`` becomes
``x BETWEEN from AND to``, ``$__interval_ms`` the bucket width in milliseconds, ``$name`` and ``${name}`` the
variables), so the tests can run every panel's SQL against a real database. Anything else that starts
with ``$`` is left in place, and the tests refuse it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "eldercare-timescaledb"
DATASOURCE = DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

Format = Literal["time_series", "table"]


class SqlQuery(cogvariants.Dataquery):
    def __init__(self, *, raw_sql: str, fmt: Format, ref_id: str) -> None:
        self.raw_sql, self.fmt, self.ref_id = raw_sql, fmt, ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, raw_sql: str, *, fmt: Format = "table", ref_id: str = "A") -> None:
        self._internal = SqlQuery(raw_sql=raw_sql.strip(), fmt=fmt, ref_id=ref_id)

    def build(self) -> SqlQuery:
        return self._internal


def _instant(t: datetime) -> str:
    return "'" + t.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


def expand(raw_sql: str, *, start: datetime, end: datetime, interval_ms: int, variables: dict[str, str]) -> str:
    """``raw_sql`` with Grafana's macros and variables substituted (times must be UTC)."""
    text = re.sub(
        r"\$__timeFilter\(([^()]+)\)",
        lambda m: f"{m.group(1).strip()} BETWEEN {_instant(start)} AND {_instant(end)}",
        raw_sql,
    )
    text = text.replace("$__timeFrom()", _instant(start)).replace("$__timeTo()", _instant(end))
    text = text.replace("$__interval_ms", str(interval_ms))
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
        text = re.sub(r"\$" + re.escape(name) + r"\b", value, text)
    return text
