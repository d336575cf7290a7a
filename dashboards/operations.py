"""Operations: what the platform's operators watch — ingest rate and lag, parked messages, gateway health."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from eldercare.dashboards.panels import grid, number, series

UID = "eldercare-operations"
BUCKET = "make_interval(secs => greatest($__interval_ms, 60000) / 1000.0)"  # at least a minute

FRAMES = f"""
SELECT time_bucket({BUCKET}, received_at) AS time, lane AS metric,
       sum(n_msgs)::float8 / extract(epoch FROM {BUCKET}) AS value
FROM grafana.uplink_frames WHERE $__timeFilter(received_at)
GROUP BY 1, 2 ORDER BY 1
"""  # noqa: S608 - a Grafana panel query made of this module's constants

HOURLY = """
SELECT bucket AS time, sum(messages)::float8 / 3600 AS "device messages/s (hourly roll-up)"
FROM grafana.device_hourly WHERE $__timeFilter(bucket)
GROUP BY 1 ORDER BY 1
"""

LAG = f"""
SELECT time_bucket({BUCKET}, received_at) AS time,
       avg(extract(epoch FROM received_at - sent_at))::float8 AS "average (s)",
       max(extract(epoch FROM received_at - sent_at))::float8 AS "max (s)"
FROM grafana.uplink_frames WHERE $__timeFilter(received_at)
GROUP BY 1 ORDER BY 1
"""  # noqa: S608 - a Grafana panel query made of this module's constants

ALARM_LATENCY = f"""
SELECT time_bucket({BUCKET}, raised_at) AS time,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM raised_at - published_at)::float8) AS "p50 (s)",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM raised_at - published_at)::float8) AS "p99 (s)"
FROM grafana.alarms WHERE $__timeFilter(raised_at) AND published_at IS NOT NULL
GROUP BY 1 ORDER BY 1
"""  # noqa: S608 - a Grafana panel query made of this module's constants

PARKED_OPEN = """
SELECT count(*) FILTER (WHERE kind = 'dead_letter') AS "dead letters",
       count(*) FILTER (WHERE kind = 'quarantine') AS "quarantined"
FROM grafana.parked_messages WHERE replayed_at IS NULL
"""

PARKED = f"""
SELECT time_bucket({BUCKET}, received_at) AS time, kind::text AS metric, count(*)::float8 AS value
FROM grafana.parked_messages WHERE $__timeFilter(received_at)
GROUP BY 1, 2 ORDER BY 1
"""  # noqa: S608 - a Grafana panel query made of this module's constants

GATEWAYS_OFFLINE = """
SELECT count(*) FILTER (WHERE last_seen_at IS NULL OR last_status IN ('death', 'goodbye')
                        OR now() - last_seen_at > interval '2 minutes') AS "gateways offline",
       count(*) AS "gateways"
FROM grafana.gateways WHERE revoked_at IS NULL
"""

ROLLUP_BEHIND = """
SELECT extract(epoch FROM now() - watermark)::float8 AS "roll-ups behind (s)"
FROM grafana.ingest_jobs WHERE job = 'rollups'
"""

GAPS = """
SELECT count(*) AS "open sequence gaps", coalesce(sum(missing), 0) AS "frames missing"
FROM grafana.uplink_gaps WHERE filled_at IS NULL
"""

GATEWAY_TABLE = """
SELECT i.code AS institution, g.gateway_id AS gateway, g.last_status AS status, g.last_seen_at AS "last seen",
       round(extract(epoch FROM now() - g.last_seen_at)) AS "silent (s)",
       g.alarm_queue AS "alarm queue", g.telemetry_queue AS "telemetry queue", g.dropped
FROM grafana.gateways g JOIN grafana.institutions i ON i.id = g.institution_id
WHERE g.revoked_at IS NULL
ORDER BY g.last_seen_at NULLS FIRST
LIMIT 500
"""


def dashboard() -> Dashboard:
    return (
        Dashboard("eldercare · operations")
        .uid(UID)
        .tags(["eldercare", "operations"])
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("30s")
        .with_panel(number("Gateways offline", GATEWAYS_OFFLINE, width=6, red_above=1))
        .with_panel(number("Parked messages (open)", PARKED_OPEN, width=6, red_above=1))
        .with_panel(number("Sequence gaps", GAPS, width=6, red_above=1))
        .with_panel(number("Roll-ups behind", ROLLUP_BEHIND, unit="s", width=6, red_above=7200))
        .with_panel(series("Ingest rate: messages per second by lane", FRAMES, unit="short"))
        .with_panel(series("Ingest rate: device messages per second (hourly roll-up)", HOURLY))
        .with_panel(series("Ingest lag: frame sent to stored", LAG, unit="s"))
        .with_panel(series("Alarm path: published to raised", ALARM_LATENCY, unit="s"))
        .with_panel(series("Parked messages", PARKED, width=24))
        .with_panel(grid("Gateway health", GATEWAY_TABLE))
    )
