-- Notifications: night shifts on named weekdays, and quiet hours that cannot last the whole day.

-- A shift that crosses midnight (starts >= ends) belongs to the weekday it starts on: a Friday 22:00-06:00
-- shift is on shift from Friday 22:00 to Saturday 06:00, and the Saturday-night nurse (Saturday 22:00-06:00)
-- is not on shift at 02:00 on Saturday. starts = ends is a 24-hour shift from starts on each of its weekdays
-- ('00:00'-'00:00' is the whole of each of its days, as before). 0004 read the weekday of the moment itself.
CREATE OR REPLACE FUNCTION on_shift(starts time, ends time, weekdays smallint[], tz text, at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN starts < ends THEN l.t >= starts AND l.t < ends AND l.d = ANY (weekdays)
                ELSE (l.t >= starts AND l.d = ANY (weekdays))
                  OR (l.t < ends AND ((l.d + 5) % 7 + 1)::smallint = ANY (weekdays))  -- from the day before
           END
    FROM (SELECT (at AT TIME ZONE tz)::time AS t, extract(isodow FROM at AT TIME ZONE tz)::smallint AS d) l
$$;

-- Quiet hours from = to meant the whole day (time_in_window), holding back every non-emergency family
-- notification by 24 hours. The API refuses them now; those already stored are read as no quiet hours.
UPDATE notification_prefs SET quiet_from = NULL, quiet_to = NULL WHERE quiet_from = quiet_to;
ALTER TABLE notification_prefs ADD CONSTRAINT notification_prefs_quiet_hours_not_whole_day
    CHECK (quiet_from <> quiet_to);
