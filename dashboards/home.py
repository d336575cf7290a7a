"""A home: its beds now, its alarms, and how fast they were answered (variable ``institution``).

Beds are shown by label, occupied or not: the board names no resident (no person code), and Grafana's login
cannot read who is in a bed (migration 0011). Nor can it read heart or breathing rates: they are health data, sealed
at rest (migration 0028), and Grafana reads the database directly, so it could neither open them nor audit who
looked; the beds show presence and occupancy, and the vital signs are on the platform's resident page, where every
read is audited. Any viewer of this dashboard can pick any home: restrict who sees it with Grafana's folder
permissions (docs/supervision.md).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from eldercare.dashboards.panels import grid, number, series, variable

UID = "eldercare-home"
DESCRIPTION = (
    "A home's beds (occupied, in bed), its alarms and how fast they were answered. Heart and breathing rates are"
    " not here: they are health data, sealed in the database; see them on the platform's resident page, where"
    " every read is audited."
)
HOURS = "make_interval(secs => greatest($__interval_ms, 3600000) / 1000.0)"  # at least an hour

INSTITUTIONS = "SELECT id AS __value, name || ' (' || code || ')' AS __text FROM grafana.institutions ORDER BY name"

BEDS_NOW = """
SELECT count(*) AS beds,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM grafana.bed_assignments ba WHERE ba.bed_id = b.id
                                      AND ba.during @> now())) AS occupied,
       count(*) FILTER (WHERE b.kind = 'nursing') AS "nursing beds"
FROM grafana.beds b WHERE b.institution_id = $institution AND b.retired_at IS NULL
"""

OPEN_COUNTS = """
SELECT count(*) FILTER (WHERE priority = 'emergency') AS emergency,
       count(*) FILTER (WHERE priority = 'urgent') AS urgent,
       count(*) FILTER (WHERE priority IN ('routine', 'technical')) AS "routine and technical"
FROM grafana.alarms
WHERE institution_id = $institution AND state IN ('raised', 'acknowledged', 'attending') AND held_by IS NULL
"""

BEDS = """
SELECT bed.label AS bed, bed.kind::text AS kind, ba.bed_id IS NOT NULL AS occupied, d.code AS sensor,
       last.time AS "last reading", last.presence AS "in bed"
FROM grafana.beds bed
LEFT JOIN grafana.bed_assignments ba ON ba.bed_id = bed.id AND ba.during @> now()
LEFT JOIN grafana.device_bindings db ON db.bed_id = bed.id AND db.during @> now()
     AND db.device_id IN (SELECT id FROM grafana.devices WHERE kind = 'bed_sensor')
LEFT JOIN grafana.devices d ON d.id = db.device_id
LEFT JOIN LATERAL (SELECT x.time, x.presence FROM grafana.bed_readings x
                   WHERE x.device_id = d.id ORDER BY x.time DESC LIMIT 1) last ON true
WHERE bed.institution_id = $institution AND bed.retired_at IS NULL
ORDER BY bed.label
"""

OPEN_ALARMS = """
SELECT a.raised_at AS raised, a.kind, a.priority::text AS priority, a.state::text AS state, bed.label AS bed,
       round(extract(epoch FROM now() - a.raised_at) / 60) AS "minutes open"
FROM grafana.alarms a LEFT JOIN grafana.beds bed ON bed.id = a.bed_id
WHERE a.institution_id = $institution AND a.state IN ('raised', 'acknowledged', 'attending') AND a.held_by IS NULL
ORDER BY a.priority, a.raised_at
"""

ALARMS = f"""
SELECT time_bucket({HOURS}, raised_at) AS time, priority::text AS metric, count(*)::float8 AS value
FROM grafana.alarms WHERE institution_id = $institution AND $__timeFilter(raised_at) AND held_by IS NULL
GROUP BY 1, 2 ORDER BY 1
"""  # noqa: S608 - a Grafana panel query made of this module's constants

RESPONSE = """
SELECT time_bucket('1 day', raised_at, 'Asia/Shanghai') AS time,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds_to_acknowledge::float8) AS "median to acknowledge (s)",
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds_to_acknowledge::float8) AS "p90 to acknowledge (s)",
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds_to_attend::float8) AS "p90 to attend (s)"
FROM grafana.alarm_response
WHERE institution_id = $institution AND priority <> 'technical' AND $__timeFilter(raised_at)
GROUP BY 1 ORDER BY 1
"""

IN_BED = """
SELECT h.bucket AS time, sum(h.occupied_minutes)::float8 / nullif(sum(h.observed_minutes), 0) AS "in bed"
FROM grafana.bed_hourly h JOIN grafana.devices d ON d.id = h.device_id
WHERE d.institution_id = $institution AND $__timeFilter(h.bucket)
GROUP BY 1 ORDER BY 1
"""


def dashboard() -> Dashboard:
    return (
        Dashboard("eldercare · home")
        .uid(UID)
        .description(DESCRIPTION)
        .tags(["eldercare", "home"])
        .timezone("Asia/Shanghai")
        .time("now-7d", "now")
        .refresh("1m")
        .with_variable(variable("institution", "Home", INSTITUTIONS))
        .with_panel(number("Beds", BEDS_NOW, width=12))
        .with_panel(number("Open alarms", OPEN_COUNTS, width=12, red_above=1))
        .with_panel(grid("Open alarms", OPEN_ALARMS, height=7))
        .with_panel(grid("Beds now", BEDS, height=10))
        .with_panel(series("Alarms by priority", ALARMS))
        .with_panel(series("Response times (daily)", RESPONSE, unit="s"))
        .with_panel(series("Share of observed time in bed (hourly)", IN_BED, unit="percentunit", width=24))
    )
