"""A regulator's region (variable ``region``): the supervision figures, credit scores and inspections.

Every figure comes from ``grafana.supervision_figures`` (migration 0011: the columns of ``supervision_figures``
this dashboard shows), the function the API serves, over the local days the dashboard's time range touches (a
range ending at midnight does not take the next day); the row with institution_id 0 is the region as a whole.
False alarms come from ``grafana.supervision_alarm_daily`` (migration 0016) over the same days, counted as the API's
``supervision_false_alarms`` counts them (migration 0015): alarms for people closed as false_alarm, accidental_press
or device_issue, over those closed with an outcome code; with none closed with a code the rate is not known.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

from eldercare.dashboards.panels import grid, number, series, variable

UID = "eldercare-regulator"

REGIONS = "SELECT code AS __value, code || ' ' || name AS __text FROM grafana.regions WHERE level <= 3 ORDER BY code"

FIRST_DAY = "($__timeFrom()::timestamptz AT TIME ZONE 'Asia/Shanghai')::date"
LAST_DAY = "(($__timeTo()::timestamptz - interval '1 millisecond') AT TIME ZONE 'Asia/Shanghai')::date"
IN_REGION = "ARRAY(SELECT id FROM grafana.institutions WHERE starts_with(region_code, '$region'))"
FIGURES = f"grafana.supervision_figures({IN_REGION}, {FIRST_DAY}, {LAST_DAY})"
NOT_KNOWN = "not known"

# Per home of the region: alarms for people, those closed with an outcome code, and the false alarms among them
# (null: not known, none closed with a code).
FALSE_ALARMS = f"""
SELECT s.institution_id, sum(s.alarms)::integer AS alarms, sum(s.coded)::integer AS coded,
       CASE WHEN sum(s.coded) > 0 THEN sum(s.false_alarms)::integer END AS false_alarms,
       sum(s.false_alarms)::float8 / nullif(sum(s.coded), 0) AS rate
FROM grafana.supervision_alarm_daily s JOIN grafana.institutions i ON i.id = s.institution_id
WHERE starts_with(i.region_code, '$region') AND s.priority <> 'technical' AND s.day BETWEEN {FIRST_DAY} AND {LAST_DAY}
GROUP BY s.institution_id
"""  # noqa: S608 - constants

FALSE_ALARM_RATE = f"""
SELECT sum(h.false_alarms)::float8 / nullif(sum(h.coded), 0) AS "false alarms" FROM ({FALSE_ALARMS}) h
"""  # noqa: S608 - constants

CODED_SHARE = f"""
SELECT sum(h.coded)::float8 / nullif(sum(h.alarms), 0) AS "closed with a code" FROM ({FALSE_ALARMS}) h
"""  # noqa: S608 - constants


def _region(expression: str, name: str) -> str:
    return f'SELECT {expression} AS "{name}" FROM {FIGURES} WHERE institution_id = 0'  # noqa: S608 - constants


HOMES = f"""
SELECT f.institution_code AS code, f.institution_name AS home, f.device_online_rate AS "devices online",
       f.alarms, f.p90_s_to_acknowledge AS "p90 to acknowledge (s)", f.p90_s_to_attend AS "p90 to attend (s)",
       f.unacknowledged_over_5_min AS "unacknowledged > 5 min", h.false_alarms AS "false alarms",
       h.rate AS "false-alarm rate", f.beds, f.nursing_share AS "nursing share", f.occupancy, f.residents,
       f.residents_without_emergency_contact AS "no emergency contact", f.night_round_coverage AS "night rounds"
FROM {FIGURES} f LEFT JOIN ({FALSE_ALARMS}) h ON h.institution_id = f.institution_id
WHERE f.institution_id <> 0
ORDER BY f.unacknowledged_over_5_min DESC, f.institution_code
"""  # noqa: S608 - a Grafana panel query made of this module's constants

ALARMS = """
SELECT time_bucket('1 day', a.raised_at, 'Asia/Shanghai') AS time, a.priority::text AS metric,
       count(*)::float8 AS value
FROM grafana.alarms a JOIN grafana.institutions i ON i.id = a.institution_id
WHERE starts_with(i.region_code, '$region') AND $__timeFilter(a.raised_at) AND a.held_by IS NULL
GROUP BY 1, 2 ORDER BY 1
"""

CREDIT = """
SELECT DISTINCT ON (s.institution_id) i.code, i.name AS home, s.period_start AS "from", s.period_end AS "to",
       s.score::float8 AS score, s.blacklisted
FROM grafana.credit_scores_latest s JOIN grafana.institutions i ON i.id = s.institution_id
WHERE starts_with(i.region_code, '$region')
ORDER BY s.institution_id, s.period_end DESC
"""

INSPECTIONS = """
SELECT d.drawn_at AS drawn, d.id AS draw, i.code, i.name AS home, x.inspected_at AS inspected, x.outcome,
       x.summary
FROM grafana.inspections x JOIN grafana.inspection_draws d ON d.id = x.draw_id
     JOIN grafana.institutions i ON i.id = x.institution_id
WHERE starts_with(d.region_code, '$region')
ORDER BY d.drawn_at DESC, x.position
LIMIT 200
"""


def _homes() -> table.Panel:
    """The homes' table; its false alarms say "not known" when none of a home's alarms was closed with a code."""
    panel = grid("Homes", HOMES, height=10)
    for column, unit in (("false alarms", "short"), ("false-alarm rate", "percentunit")):
        shown = [DynamicConfigValue(id_val="noValue", value=NOT_KNOWN), DynamicConfigValue(id_val="unit", value=unit)]
        panel = panel.override_by_name(column, shown)
    return panel


def dashboard() -> Dashboard:
    return (
        Dashboard("eldercare · regulator")
        .uid(UID)
        .tags(["eldercare", "supervision"])
        .timezone("Asia/Shanghai")
        .time("now-30d", "now")
        .with_variable(variable("region", "Region", REGIONS))
        .with_panel(number("Devices online", _region("device_online_rate", "devices online"),
                           unit="percentunit", width=6, red_below=0.95))
        .with_panel(number("p90 time to acknowledge", _region("p90_s_to_acknowledge", "p90 (s)"),
                           unit="s", width=6, red_above=60))
        .with_panel(number("Alarms unacknowledged > 5 min", _region("unacknowledged_over_5_min", "alarms"),
                           width=6, red_above=1))
        .with_panel(number("Nursing-type beds (target 60%)", _region("nursing_share", "nursing share"),
                           unit="percentunit", width=6, red_below=0.6))
        .with_panel(number("Occupancy", _region("occupancy", "occupancy"), unit="percentunit", width=6))
        .with_panel(number("Residents without an emergency contact",
                           _region("residents_without_emergency_contact", "residents"), width=6, red_above=1))
        .with_panel(number("Night rounds (floor-nights covered)", _region("night_round_coverage", "coverage"),
                           unit="percentunit", width=6, red_below=0.9))
        .with_panel(number("Median time to attend", _region("median_s_to_attend", "median (s)"), unit="s", width=6))
        .with_panel(number("False alarms (of alarms closed with an outcome code)", FALSE_ALARM_RATE,
                           unit="percentunit", width=12, no_value=NOT_KNOWN))
        .with_panel(number("Alarms closed with an outcome code", CODED_SHARE, unit="percentunit", width=12,
                           no_value=NOT_KNOWN))
        .with_panel(_homes())
        .with_panel(series("Alarms per day by priority", ALARMS, width=24))
        .with_panel(grid("Credit scores in force", CREDIT, width=12))
        .with_panel(grid("Random inspections (双随机一公开)", INSPECTIONS, width=12))
    )  # fmt: skip
