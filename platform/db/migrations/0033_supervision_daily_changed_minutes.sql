-- supervision_daily (0006) sums minutes of the daily roll-ups: device_daily.active_minutes, bed_daily.observed_minutes
-- and occupied_minutes. Its UPDATE triggers recomputed every day a statement touched, for every home, whatever
-- the statement changed. A rewrite of other columns (the vitals' sealing, 0028; `eldercare db rekey`, which re-seals
-- bed_daily.vitals_enc) changed no minute and spent most of its time there: 32 of a batch's 44 ms in the trigger
-- (bench/rekey.py, docs/deployment.md), every day of the batch recomputed over every home of the database.
--
-- An UPDATE trigger now sees the rows before and after (a statement trigger cannot name its columns when it has
-- transition tables) and recomputes only the days whose summed minutes changed, or whose rows changed key (day or
-- device: the day left and the day joined). Inserts and deletes are as before.

CREATE FUNCTION supervision_daily_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    days date[];
BEGIN
    IF TG_TABLE_NAME = 'bed_daily' THEN
        SELECT array_agg(DISTINCT d) INTO days
        FROM (SELECT o.day AS old_day, n.day AS new_day
              FROM before_rows o FULL JOIN after_rows n ON n.device_id = o.device_id AND n.day = o.day
              WHERE o.day IS NULL OR n.day IS NULL
                 OR (o.observed_minutes, o.occupied_minutes) IS DISTINCT FROM (n.observed_minutes, n.occupied_minutes)
             ) changed, unnest(ARRAY[changed.old_day, changed.new_day]) AS d
        WHERE d IS NOT NULL;
    ELSE
        SELECT array_agg(DISTINCT d) INTO days
        FROM (SELECT o.day AS old_day, n.day AS new_day
              FROM before_rows o FULL JOIN after_rows n ON n.device_id = o.device_id AND n.day = o.day
              WHERE o.day IS NULL OR n.day IS NULL OR o.active_minutes IS DISTINCT FROM n.active_minutes
             ) changed, unnest(ARRAY[changed.old_day, changed.new_day]) AS d
        WHERE d IS NOT NULL;
    END IF;
    IF days IS NOT NULL THEN
        PERFORM supervision_daily_refresh(days);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER supervision_daily_bed_update ON bed_daily;
CREATE TRIGGER supervision_daily_bed_update AFTER UPDATE ON bed_daily
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION supervision_daily_updated();

DROP TRIGGER supervision_daily_device_update ON device_daily;
CREATE TRIGGER supervision_daily_device_update AFTER UPDATE ON device_daily
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION supervision_daily_updated();
