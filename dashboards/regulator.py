"""A regulator's region (variable ``region``): the supervision figures, credit scores and inspections.

Every figure comes from ``grafana.supervision_figures`` (migration 0011: the columns of ``supervision_figures``
this dashboard shows), the function the API serves, over the local days the dashboard's time range touches (a
range ending at midnight does not take the next day); the row with institution_id 0 is the region as a whole.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from eldercare.dashboards.panels import grid, number, series, variable

UID = "eldercare-regulator"

REGIONS = "SELECT code AS __value, code || ' ' || name AS __text FROM grafana.regions WHERE level <= 3 ORDER BY code"

FIGURES = (
    "grafana.supervision_figures(ARRAY(SELECT id FROM grafana.institutions WHERE starts_with(region_code, '$region')),"
    " ($__timeFrom()::timestamptz AT TIME ZONE 'Asia/Shanghai')::date,"
    " (($__timeTo()::timestamptz - interval '1 millisecond') AT TIME ZONE 'Asia/Shanghai')::date)"
)


def _region(expression: str, name: str) -> str:
    return f'SELECT {expression} AS "{name}" FROM {FIGURES} WHERE institution_id = 0'  # noqa: S608 - constants


HOMES = f"""
SELECT institution_code AS code, institution_name AS home, device_online_rate AS "devices online",
       alarms, p90_s_to_acknowledge AS "p90 to acknowledge (s)", p90_s_to_attend AS "p90 to attend (s)",
       unacknowledged_over_5_min AS "unacknowledged > 5 min", beds, nursing_share AS "nursing share",
       occupancy, residents, residents_without_emergency_contact AS "no emergency contact",
       night_round_coverage AS "night rounds"
FROM {FIGURES} WHERE institution_id <> 0
ORDER BY unacknowledged_over_5_min DESC, institution_code
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
        .with_panel(grid("Homes", HOMES, height=10))
        .with_panel(series("Alarms per day by priority", ALARMS, width=24))
        .with_panel(grid("Credit scores in force", CREDIT, width=12))
        .with_panel(grid("Random inspections (双随机一公开)", INSPECTIONS, width=12))
    )  # fmt: skip
