-- How an alarm ended, as a closed set of codes kept in clear beside the sealed outcome text (0013), so that the
-- figures can count false alarms without reading the text. The codes say what kind of ending it was, nothing about
-- the person; every reader is shown them, regulators included. The values are the ones the staff board and the
-- simulated carers already offered as the outcome's text:
--
--   real_event        the alarm was right: the resident fell, called for help, left the bed at night, there was smoke
--   false_alarm       nothing happened: the device or the rule fired without cause (a fall detector on a dropped
--                     wristband, a misread bed sensor)
--   accidental_press  someone set it off by mistake (a button pressed in passing)
--   device_issue      a device or its connection was the matter: a technical alarm (a fault, a gateway offline), or
--                     an alarm for a person that a faulty device raised
--   other             none of these, or the closing does not say (a call cancelled at the bedside tells that a carer
--                     came, not what they found); the outcome text says more
--
-- NULL: not known. Every alarm closed before this migration (the text is sealed and SQL cannot read it), and an alarm
-- closed through the API without a code whose outcome text is not itself a code. Only a closed alarm has a code.
--
-- A false alarm, for the figures: an alarm for a person (not technical) closed as false_alarm, accidental_press or
-- device_issue, i.e. nothing happened to the resident. Its rate is taken over the alarms closed with a code, so the
-- unknown ones neither lower nor raise it.
-- Forward-only: a later change is a new file, never an edit of this one.

CREATE TYPE alarm_outcome AS ENUM ('real_event', 'false_alarm', 'accidental_press', 'device_issue', 'other');

ALTER TABLE alarms ADD COLUMN outcome_code alarm_outcome
    CONSTRAINT alarms_outcome_code_closed CHECK (outcome_code IS NULL OR state IN ('resolved', 'cancelled'));

-- Nothing happened to the resident (see above); false for NULL.
CREATE FUNCTION alarm_outcome_false(p alarm_outcome) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(p IN ('false_alarm', 'accidental_press', 'device_issue'), false)
$$;

-- Response reports (GET /alarms/report) read the code beside the times; a new column goes last.
CREATE OR REPLACE VIEW alarm_response AS
SELECT a.id AS alarm_id, a.institution_id, a.kind, a.priority, a.state, a.raised_at,
       extract(epoch FROM a.acknowledged_at - a.raised_at) AS seconds_to_acknowledge,
       extract(epoch FROM a.attending_at - a.raised_at) AS seconds_to_attend,
       extract(epoch FROM a.closed_at - a.raised_at) AS seconds_to_close,
       a.escalation_level,
       a.outcome_code
FROM alarms a
WHERE a.held_by IS NULL;

-- ---------------------------------------------------------------------------------------------------
-- The alarms per home, day, kind and priority (0008) count the codes too:
--   coded         how many of them are closed with a code now;
--   false_alarms  how many of those are false alarms (alarm_outcome_false).
-- Kept by the same triggers, redefined here with the two counts; the trigger on updates also fires when the code
-- changes. Every alarm so far has no code: 0 is right for every existing row.
ALTER TABLE supervision_alarm_daily
    ADD COLUMN coded        integer NOT NULL DEFAULT 0,
    ADD COLUMN false_alarms integer NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION supervision_alarms_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- ORDER BY: every writer locks rows in the same order, so two bulk inserts cannot deadlock.
    INSERT INTO supervision_alarm_daily AS t (institution_id, day, kind, priority, alarms, resolved, coded,
                                              false_alarms)
    SELECT n.institution_id, (n.raised_at AT TIME ZONE 'Asia/Shanghai')::date, n.kind, n.priority, count(*),
           count(*) FILTER (WHERE n.state = 'resolved'), count(*) FILTER (WHERE n.outcome_code IS NOT NULL),
           count(*) FILTER (WHERE alarm_outcome_false(n.outcome_code))
    FROM inserted n WHERE n.held_by IS NULL
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (institution_id, day, kind, priority) DO UPDATE
    SET alarms = t.alarms + excluded.alarms, resolved = t.resolved + excluded.resolved,
        coded = t.coded + excluded.coded, false_alarms = t.false_alarms + excluded.false_alarms;

    INSERT INTO supervision_response_daily AS t (institution_id, day, answered_late, ack_ms, attend_ms)
    SELECT n.institution_id, (n.raised_at AT TIME ZONE 'Asia/Shanghai')::date,
           count(*) FILTER (WHERE supervision_answered_late(n)),
           coalesce(array_agg(supervision_ms(n.raised_at, n.acknowledged_at)) FILTER (WHERE n.acknowledged_at IS NOT NULL), '{}'),
           coalesce(array_agg(supervision_ms(n.raised_at, n.attending_at)) FILTER (WHERE n.attending_at IS NOT NULL), '{}')
    FROM inserted n WHERE n.held_by IS NULL AND n.priority <> 'technical'
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (institution_id, day) DO UPDATE
    SET answered_late = t.answered_late + excluded.answered_late,
        ack_ms = t.ack_ms || excluded.ack_ms, attend_ms = t.attend_ms || excluded.attend_ms;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION supervision_alarm_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.held_by IS NULL THEN  -- take the old version's share out
        UPDATE supervision_alarm_daily t
        SET alarms = t.alarms - 1, resolved = t.resolved - (OLD.state = 'resolved')::integer,
            coded = t.coded - (OLD.outcome_code IS NOT NULL)::integer,
            false_alarms = t.false_alarms - alarm_outcome_false(OLD.outcome_code)::integer
        WHERE t.institution_id = OLD.institution_id AND t.day = (OLD.raised_at AT TIME ZONE 'Asia/Shanghai')::date
          AND t.kind = OLD.kind AND t.priority = OLD.priority;
        IF OLD.priority <> 'technical' THEN
            UPDATE supervision_response_daily t
            SET answered_late = t.answered_late - supervision_answered_late(OLD)::integer,
                ack_ms = supervision_array_remove_one(t.ack_ms, supervision_ms(OLD.raised_at, OLD.acknowledged_at)),
                attend_ms = supervision_array_remove_one(t.attend_ms, supervision_ms(OLD.raised_at, OLD.attending_at))
            WHERE t.institution_id = OLD.institution_id
              AND t.day = (OLD.raised_at AT TIME ZONE 'Asia/Shanghai')::date;
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.held_by IS NULL THEN  -- and put the new version's in
        INSERT INTO supervision_alarm_daily AS t (institution_id, day, kind, priority, alarms, resolved, coded,
                                                  false_alarms)
        VALUES (NEW.institution_id, (NEW.raised_at AT TIME ZONE 'Asia/Shanghai')::date, NEW.kind, NEW.priority, 1,
                (NEW.state = 'resolved')::integer, (NEW.outcome_code IS NOT NULL)::integer,
                alarm_outcome_false(NEW.outcome_code)::integer)
        ON CONFLICT (institution_id, day, kind, priority) DO UPDATE
        SET alarms = t.alarms + 1, resolved = t.resolved + excluded.resolved, coded = t.coded + excluded.coded,
            false_alarms = t.false_alarms + excluded.false_alarms;
        IF NEW.priority <> 'technical' THEN
            INSERT INTO supervision_response_daily AS t (institution_id, day, answered_late, ack_ms, attend_ms)
            VALUES (NEW.institution_id, (NEW.raised_at AT TIME ZONE 'Asia/Shanghai')::date,
                    supervision_answered_late(NEW)::integer,
                    CASE WHEN NEW.acknowledged_at IS NULL THEN '{}'
                         ELSE ARRAY[supervision_ms(NEW.raised_at, NEW.acknowledged_at)] END,
                    CASE WHEN NEW.attending_at IS NULL THEN '{}'
                         ELSE ARRAY[supervision_ms(NEW.raised_at, NEW.attending_at)] END)
            ON CONFLICT (institution_id, day) DO UPDATE
            SET answered_late = t.answered_late + excluded.answered_late,
                ack_ms = t.ack_ms || excluded.ack_ms, attend_ms = t.attend_ms || excluded.attend_ms;
        END IF;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER supervision_alarm_update ON alarms;
CREATE TRIGGER supervision_alarm_update
    AFTER UPDATE OF institution_id, kind, priority, state, raised_at, acknowledged_at, attending_at, closed_at,
                    held_by, outcome_code ON alarms
    FOR EACH ROW
    WHEN ((OLD.held_by IS NULL OR NEW.held_by IS NULL)
          AND (OLD.institution_id, OLD.kind, OLD.priority, OLD.state, OLD.raised_at, OLD.acknowledged_at,
               OLD.attending_at, OLD.closed_at, OLD.held_by, OLD.outcome_code)
              IS DISTINCT FROM (NEW.institution_id, NEW.kind, NEW.priority, NEW.state, NEW.raised_at,
                                NEW.acknowledged_at, NEW.attending_at, NEW.closed_at, NEW.held_by, NEW.outcome_code))
    EXECUTE FUNCTION supervision_alarm_changed();

-- What the triggers keep the table equal to, with the two counts last as in the table.
CREATE OR REPLACE VIEW supervision_alarm_daily_recomputed AS
SELECT a.institution_id, (a.raised_at AT TIME ZONE 'Asia/Shanghai')::date AS day, a.kind, a.priority,
       count(*)::integer AS alarms, count(*) FILTER (WHERE a.state = 'resolved')::integer AS resolved,
       count(*) FILTER (WHERE a.outcome_code IS NOT NULL)::integer AS coded,
       count(*) FILTER (WHERE alarm_outcome_false(a.outcome_code))::integer AS false_alarms
FROM alarms a WHERE a.held_by IS NULL
GROUP BY 1, 2, 3, 4;

-- The false alarms of homes over local days [p_from, p_to], per home and for them all (institution_id 0), beside
-- supervision_figures (whose columns stay as they are: the Grafana reader's function is bound to them): alarms for
-- people only, as the figures' response times.
CREATE FUNCTION supervision_false_alarms(p_institutions bigint[], p_from date, p_to date)
RETURNS TABLE (institution_id bigint, coded integer, false_alarms integer)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(s.institution_id, 0), coalesce(sum(s.coded), 0)::integer, coalesce(sum(s.false_alarms), 0)::integer
    FROM supervision_alarm_daily s
    WHERE s.institution_id = ANY (p_institutions) AND s.day BETWEEN p_from AND p_to AND s.priority <> 'technical'
    GROUP BY GROUPING SETS ((s.institution_id), ())
$$;
