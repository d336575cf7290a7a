-- Raw chunks the retention job dropped, one row per chunk. TimescaleDB keeps no record of a dropped chunk,
-- and a roll-up rebuild deletes an hour's roll-up before it recomputes it from raw data: over a dropped
-- chunk it would replace what is left of the dropped readings with nothing. `rollups.rebuild` reads this
-- table to refuse such hours.
CREATE TABLE raw_dropped (
    table_name  text NOT NULL,
    range_start timestamptz NOT NULL,
    range_end   timestamptz NOT NULL,
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, range_start),
    CHECK (range_start < range_end)
);

-- Before this table existed, a retention job that had run may have dropped anything older than each table's
-- oldest chunk (or, for an empty table, than the job's last run): recorded as dropped, from the beginning.
INSERT INTO raw_dropped (table_name, range_start, range_end)
SELECT t.name, '-infinity',
       least(job.last_run_at, (SELECT min(c.range_start) FROM timescaledb_information.chunks c
                               WHERE c.hypertable_schema = current_schema() AND c.hypertable_name = t.name))
FROM unnest(ARRAY['bed_readings', 'device_readings', 'locations', 'accel_chunks', 'device_events']) AS t(name)
CROSS JOIN ingest_jobs job
WHERE job.job = 'retention' AND job.last_run_at IS NOT NULL;
