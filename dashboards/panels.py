"""Small helpers over the SDK's panel builders, so each dashboard reads as a list of titled queries."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import QueryVariable, ThresholdsConfig
from grafana_foundation_sdk.models.dashboard import (
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)

from eldercare.dashboards.sql import DATASOURCE, Sql


def series(title: str, sql: str, *, unit: str = "short", width: int = 12, height: int = 8) -> timeseries.Panel:
    """A time series: the query returns ``time`` first, then numbers (or one text column naming the series)."""
    return (
        timeseries.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Sql(sql, fmt="time_series"))
        .unit(unit)
        .span(width)
        .height(height)
        .fill_opacity(10)
    )


def number(
    title: str, sql: str, *, unit: str = "short", width: int = 4, height: int = 4, red_above: float | None = None,
    red_below: float | None = None, no_value: str | None = None,
) -> stat.Panel:  # fmt: skip
    """A single figure: the query returns one row of numbers (and at most one text label); ``no_value`` is shown
    when the figure is null (Grafana's own "No data" otherwise)."""
    panel = stat.Panel().title(title).datasource(DATASOURCE).with_target(Sql(sql)).unit(unit).span(width).height(height)
    if no_value is not None:
        panel = panel.no_value(no_value)
    if red_above is not None:
        panel = panel.thresholds(_thresholds([(None, "green"), (red_above, "red")]))
    if red_below is not None:
        panel = panel.thresholds(_thresholds([(None, "red"), (red_below, "green")]))
    return panel


def grid(title: str, sql: str, *, width: int = 24, height: int = 9) -> table.Panel:
    return table.Panel().title(title).datasource(DATASOURCE).with_target(Sql(sql)).span(width).height(height)


def _thresholds(steps: list[tuple[float | None, str]]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(value=v, color=c) for v, c in steps])


def variable(name: str, label: str, sql: str) -> QueryVariable:
    """A variable from a query returning ``__value`` and ``__text``."""
    return (
        QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(sql.strip())
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
