"""Retention: raw chunks older than the period are dropped with drop_chunks (Apache edition), events are kept
for their own period, frame keys are pruned after the dedupe window; recent data and roll-ups stay (their sealed
rates with them: the roll-up is all that is left of a dropped hour's rates)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from eldercare.ingest import retention, rollups
from eldercare.ingest.rows import HOUR_MS
from eldercare.platform.crypto import BED_HOURLY_VITALS, Vault
from eldercare.platform.sealed_vitals import seal_reading, summary_row
from eldercare.simulators.load import LoadWorld

from .helpers import now_ms, scalar

DAY_MS = 24 * HOUR_MS
DAY_S = 86_400.0


def test_old_raw_chunks_and_frame_keys_go_recent_data_and_rollups_stay(db: str, vault: Vault, world: LoadWorld) -> None:
    sealer = vault.vitals_sealer()
    with psycopg.connect(db, autocommit=True) as conn:
        device = conn.execute("SELECT id FROM devices WHERE code = %s", (world.gateways[0].beds[0],)).fetchone()
        gateway = conn.execute(
            "SELECT id FROM gateways WHERE gateway_id = %s", (world.gateways[0].gateway_id,)
        ).fetchone()
        assert device is not None and gateway is not None
        old, recent = now_ms() - 200 * DAY_MS, now_ms() - 2 * DAY_MS  # 200 days: a chunk no other test writes to
        for ts in (old, recent):
            at = datetime.fromtimestamp(ts / 1000, UTC)
            conn.execute(
                "INSERT INTO bed_readings (time, device_id, presence, vitals_enc) VALUES (%s, %s, true, %s)",
                (at, device[0], seal_reading(sealer, at, device[0], 64.5, 15.25)),
            )
            conn.execute(
                "INSERT INTO device_events (time, device_id, gateway_pk, kind) VALUES (to_timestamp(%s / 1000.0), %s,"
                " %s, 'button')",
                (ts, device[0], gateway[0]),
            )
            conn.execute(
                "INSERT INTO uplink_frames (sent_at, gateway_pk, epoch, seq, lane, n_msgs, received_at)"
                " VALUES (to_timestamp(%s / 1000.0), %s, 55, %s, 'telemetry', 1, to_timestamp(%s / 1000.0))",
                (ts, gateway[0], ts, ts),
            )
        rollups.rebuild(conn, vault=vault, start=datetime.fromtimestamp(old / 1000, UTC),
                        end=datetime.fromtimestamp(old / 1000 + 1, UTC), timezone="Asia/Shanghai")  # fmt: skip
        result = retention.run(
            conn, raw_retention_s=30 * DAY_S, events_retention_s=365 * DAY_S, frames_retention_s=30 * DAY_S
        )
        readings = conn.execute("SELECT time FROM bed_readings WHERE device_id = %s", (device[0],)).fetchall()
        kept = conn.execute(
            "SELECT bucket, samples, hr_count, rr_count, vitals_enc FROM bed_hourly WHERE device_id = %s", (device[0],)
        ).fetchall()
        for table in ("bed_readings", "bed_hourly", "bed_daily"):  # the rates are health data: not left behind
            conn.execute(f"DELETE FROM {table} WHERE device_id = %s", (device[0],))
    assert result.chunks_dropped["bed_readings"] >= 1
    assert result.frames_deleted >= 1
    # every chunk dropped is recorded by its range (TimescaleDB keeps no record): the old reading's among them
    when = "to_timestamp(%s / 1000.0)"
    assert scalar(db, "SELECT count(*) FROM raw_dropped WHERE table_name = 'bed_readings' AND dropped_at = ("
                  "SELECT max(dropped_at) FROM raw_dropped)") == result.chunks_dropped["bed_readings"]  # fmt: skip
    assert scalar(db, f"SELECT count(*) FROM raw_dropped WHERE table_name = 'bed_readings' AND range_start <= {when}"
                  f" AND range_end > {when}", (old, old)) == 1  # fmt: skip
    assert scalar(db, f"SELECT count(*) FROM raw_dropped WHERE range_end > {when}", (recent,)) == 0

    def count(query: str) -> int:
        return int(scalar(db, query, (device[0],)))

    assert readings == [(datetime.fromtimestamp(recent / 1000, UTC),)]  # the recent one
    assert count("SELECT count(*) FROM device_events WHERE device_id = %s") == 2  # a year for events
    assert [row[1:4] for row in kept] == [(1, 1, 1)]  # roll-ups are kept, with the old reading's rates
    bucket, sealed = kept[0][0], kept[0][4]
    summary = vault.open_vitals_summary(sealed, column=BED_HOURLY_VITALS, row=summary_row(device[0], bucket))
    assert summary == (64.5, 64.5, 64.5, 15.25, 15.25, 15.25)
    assert scalar(db, "SELECT count(*) FROM uplink_frames WHERE gateway_pk = %s AND epoch = 55", (gateway[0],)) == 1
