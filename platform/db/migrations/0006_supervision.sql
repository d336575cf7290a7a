-- Supervision (issue 11): night rounds, the figures per home and region, credit scores with their terms,
-- the flags other work reads (subsidy claims to check by hand), subsidy findings (filled by issue 9),
-- random inspections (双随机一公开) and their results.
-- Forward-only: a later change is a new file, never an edit of this one.

-- ---------------------------------------------------------------------------------------------------
-- Night rounds: a member of staff logs a round of a floor (floor_id) or of the whole home (NULL) at night.
-- A round counts as a night round when it is done between 21:00 and 06:00 local time; the night of a
-- round is the date on which that night began.
CREATE TABLE night_rounds (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    floor_id       bigint REFERENCES floors (id),
    user_id        bigint NOT NULL REFERENCES users (id),
    done_at        timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    note           text NOT NULL DEFAULT '' CHECK (length(note) <= 2000)
);
CREATE INDEX night_rounds_institution ON night_rounds (institution_id, done_at);

-- Indexes the figures need on tables of other parts (the alarms of a home by time already exist).
CREATE INDEX IF NOT EXISTS devices_institution ON devices (institution_id);
CREATE INDEX IF NOT EXISTS bed_assignments_bed ON bed_assignments (bed_id);
CREATE INDEX IF NOT EXISTS resident_contacts_emergency ON resident_contacts (resident_id) WHERE kind = 'emergency';
-- The alarms of homes over a period with what the response figures need, read from the index alone once
-- the table's pages are all-visible (older alarms no longer change).
CREATE INDEX alarms_supervision ON alarms (institution_id, raised_at)
    INCLUDE (kind, priority, state, acknowledged_at, attending_at, closed_at) WHERE held_by IS NULL;

-- ---------------------------------------------------------------------------------------------------
-- Per home and local day (Asia/Shanghai, the roll-ups' calendar): device minutes online and bed-sensor
-- minutes observed and occupied, summed from ingest's daily roll-ups (device_daily, bed_daily) so that a
-- region's month is 6,000 rows, not 1.2 million. Kept in step by statement triggers on the roll-up tables:
-- whenever rows of a day are written or deleted, that day is recomputed for every home. A device counts
-- only on whole days in service (not the day it was registered or retired), at most min(1440, 86400 /
-- heartbeat_s) minutes a day.
CREATE TABLE supervision_daily (
    institution_id        bigint NOT NULL,
    day                   date NOT NULL,
    device_minutes_online double precision NOT NULL DEFAULT 0,
    bed_minutes_observed  bigint NOT NULL DEFAULT 0,
    bed_minutes_occupied  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (institution_id, day)
);

CREATE FUNCTION supervision_daily_refresh(p_days date[]) RETURNS void LANGUAGE sql AS $$
    DELETE FROM supervision_daily WHERE day = ANY (p_days);
    INSERT INTO supervision_daily (institution_id, day, device_minutes_online, bed_minutes_observed,
                                   bed_minutes_occupied)
    SELECT coalesce(a.institution_id, b.institution_id), coalesce(a.day, b.day), coalesce(a.online, 0),
           coalesce(b.observed, 0), coalesce(b.occupied, 0)
    FROM (
        SELECT d.institution_id, dd.day, sum(least(dd.active_minutes::float8, 1440.0, 86400.0 / d.heartbeat_s)) AS online
        FROM device_daily dd JOIN devices d ON d.id = dd.device_id
        WHERE dd.day = ANY (p_days)
          AND (d.created_at AT TIME ZONE 'Asia/Shanghai')::date < dd.day
          AND (d.retired_at IS NULL OR (d.retired_at AT TIME ZONE 'Asia/Shanghai')::date > dd.day)
        GROUP BY 1, 2
    ) a
    FULL JOIN (
        SELECT d.institution_id, bd.day, sum(bd.observed_minutes) AS observed, sum(bd.occupied_minutes) AS occupied
        FROM bed_daily bd JOIN devices d ON d.id = bd.device_id
        WHERE bd.day = ANY (p_days)
        GROUP BY 1, 2
    ) b ON b.institution_id = a.institution_id AND b.day = a.day;
$$;

CREATE FUNCTION supervision_daily_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    days date[];
BEGIN
    SELECT array_agg(DISTINCT day) INTO days FROM changed;
    IF days IS NOT NULL THEN
        PERFORM supervision_daily_refresh(days);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER supervision_daily_device_insert AFTER INSERT ON device_daily
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION supervision_daily_changed();
CREATE TRIGGER supervision_daily_device_update AFTER UPDATE ON device_daily
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION supervision_daily_changed();
CREATE TRIGGER supervision_daily_device_delete AFTER DELETE ON device_daily
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION supervision_daily_changed();
CREATE TRIGGER supervision_daily_bed_insert AFTER INSERT ON bed_daily
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION supervision_daily_changed();
CREATE TRIGGER supervision_daily_bed_update AFTER UPDATE ON bed_daily
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION supervision_daily_changed();
CREATE TRIGGER supervision_daily_bed_delete AFTER DELETE ON bed_daily
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION supervision_daily_changed();
SELECT supervision_daily_refresh(ARRAY(SELECT DISTINCT day FROM device_daily UNION SELECT DISTINCT day FROM bed_daily));

-- ---------------------------------------------------------------------------------------------------
-- The figures of a set of homes over the local days [p_from, p_to]: one row per home, and one row with
-- institution_id 0 for all of them together (ratios and percentiles over the pooled data, never averages
-- of averages). Used by the API (which passes the homes in the caller's scope) and by Grafana.
--
-- device online rate: per device and complete day, min(active minutes, expected minutes) over expected
--   minutes, where a device that reports every heartbeat_s seconds is expected in min(1440, 86400 /
--   heartbeat_s) minutes of a day (device_daily.active_minutes, summed in supervision_daily). Only whole
--   days in service count: the day a device was registered or retired and days not yet rolled up
--   (ingest_jobs 'rollups') are left out. A day with no roll-up at all counts as offline.
-- alarms: raised in the period (alarms held back by their gateway's alarm are not counted); response
--   times and "unacknowledged over 5 minutes" leave technical alarms out (people calling for help).
-- occupancy: bed-seconds occupied (bed_assignments; a resident in hospital keeps the bed) over
--   bed-seconds in service, up to now for a period that has not ended.
-- in-bed share: minutes a bed sensor saw someone over minutes it observed (bed_daily), as a check.
-- beds, nursing share, residents, residents without an emergency contact: at the end of the period
--   (or now).
-- night rounds: rounds logged between 21:00 and 06:00; coverage is the share of (night, floor with beds)
--   pairs that had a round, over the nights of the period that are over; a round of the whole home covers
--   every floor.
CREATE FUNCTION supervision_figures(p_institutions bigint[], p_from date, p_to date, p_tz text DEFAULT 'Asia/Shanghai')
RETURNS TABLE (
    institution_id                     bigint,
    institution_code                   text,
    institution_name                   text,
    region_code                        text,
    device_minutes_expected            double precision,
    device_minutes_online              double precision,
    device_online_rate                 double precision,
    alarms                             integer,
    alarms_by_kind                     jsonb,
    alarms_by_priority                 jsonb,
    alarms_for_people                  integer,
    median_s_to_acknowledge            double precision,
    p90_s_to_acknowledge               double precision,
    median_s_to_attend                 double precision,
    p90_s_to_attend                    double precision,
    unacknowledged_over_5_min          integer,
    falls                              integer,
    open_at_end                        integer,
    beds                               integer,
    nursing_beds                       integer,
    nursing_share                      double precision,
    occupancy                          double precision,
    in_bed_share                       double precision,
    residents                          integer,
    residents_without_emergency_contact integer,
    floors                             integer,
    nights                             integer,
    night_rounds                       integer,
    night_round_coverage               double precision
)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    -- Run as dynamic SQL with the arguments as literals: planned for these homes and days each time. As a
    -- plain SQL function (a generic plan) it took about twice as long on the benchmark's 200 homes.
    RETURN QUERY EXECUTE format($q$
WITH
bounds AS (
    SELECT (%2$L::date::timestamp AT TIME ZONE %4$L) AS t0,
           ((%3$L::date + 1)::timestamp AT TIME ZONE %4$L) AS t1,
           least((%3$L::date + 1)::timestamp AT TIME ZONE %4$L, now()) AS t_end,
           coalesce((SELECT (watermark AT TIME ZONE %4$L)::date FROM ingest_jobs WHERE job = 'rollups'),
                    (now() AT TIME ZONE %4$L)::date) - 1 AS last_rolled_day
),
homes AS (SELECT DISTINCT unnest(%1$L::bigint[]) AS id),
keys AS (SELECT id AS k FROM homes UNION ALL SELECT 0),
online AS (
    SELECT coalesce(d.institution_id, 0) AS k, sum(d.per_day * greatest(0, d.last_day - d.first_day + 1)) AS expected
    FROM (
        SELECT d.institution_id, least(1440.0, 86400.0 / d.heartbeat_s) AS per_day,
               greatest(%2$L::date, (d.created_at AT TIME ZONE %4$L)::date + 1) AS first_day,
               least(%3$L::date, b.last_rolled_day, coalesce((d.retired_at AT TIME ZONE %4$L)::date - 1, %3$L::date)) AS last_day
        FROM devices d CROSS JOIN bounds b
        WHERE d.institution_id = ANY (%1$L::bigint[])
    ) d
    GROUP BY GROUPING SETS ((d.institution_id), ())
),
daily AS (
    SELECT coalesce(s.institution_id, 0) AS k, sum(s.device_minutes_online) AS online,
           sum(s.bed_minutes_occupied)::float8 AS occupied, sum(s.bed_minutes_observed)::float8 AS observed
    FROM supervision_daily s CROSS JOIN bounds b
    WHERE s.institution_id = ANY (%1$L::bigint[]) AND s.day BETWEEN %2$L::date AND least(%3$L::date, b.last_rolled_day)
    GROUP BY GROUPING SETS ((s.institution_id), ())
),
al AS (
    SELECT a.institution_id, a.kind, a.priority, a.state, a.raised_at, a.closed_at,
           extract(epoch FROM a.acknowledged_at - a.raised_at)::float8 AS s_ack,
           extract(epoch FROM a.attending_at - a.raised_at)::float8 AS s_attend,
           extract(epoch FROM coalesce(a.acknowledged_at, b.t_end) - a.raised_at)::float8 AS s_unack
    FROM alarms a CROSS JOIN bounds b
    WHERE a.institution_id = ANY (%1$L::bigint[]) AND a.raised_at >= b.t0 AND a.raised_at < b.t1
      AND a.held_by IS NULL
),
resp AS (
    SELECT coalesce(al.institution_id, 0) AS k,
           count(*)::int AS alarms,
           count(*) FILTER (WHERE al.priority <> 'technical')::int AS for_people,
           percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY al.s_ack)
               FILTER (WHERE al.priority <> 'technical') AS ack,
           percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY al.s_attend)
               FILTER (WHERE al.priority <> 'technical') AS att,
           count(*) FILTER (WHERE al.priority <> 'technical' AND al.s_unack > 300)::int AS unack5,
           count(*) FILTER (WHERE al.kind = 'fall' AND al.state = 'resolved')::int AS falls,
           count(*) FILTER (WHERE al.priority <> 'technical' AND al.raised_at < b.t_end - interval '1 hour'
                            AND (al.closed_at IS NULL OR al.closed_at > b.t_end))::int AS open_at_end,
           jsonb_strip_nulls(jsonb_build_object(
               'emergency', nullif(count(*) FILTER (WHERE al.priority = 'emergency'), 0),
               'urgent', nullif(count(*) FILTER (WHERE al.priority = 'urgent'), 0),
               'routine', nullif(count(*) FILTER (WHERE al.priority = 'routine'), 0),
               'technical', nullif(count(*) FILTER (WHERE al.priority = 'technical'), 0))) AS by_priority
    FROM al CROSS JOIN bounds b
    GROUP BY GROUPING SETS ((al.institution_id), ())
),
by_kind AS (
    SELECT coalesce(x.institution_id, 0) AS k, jsonb_object_agg(x.kind, x.n ORDER BY x.kind) AS obj
    FROM (SELECT a.institution_id, a.kind, count(*) AS n
          FROM alarms a CROSS JOIN bounds b
          WHERE a.institution_id = ANY (%1$L::bigint[]) AND a.raised_at >= b.t0 AND a.raised_at < b.t1
            AND a.held_by IS NULL
          GROUP BY GROUPING SETS ((a.institution_id, a.kind), (a.kind))) x
    GROUP BY 1
),
bd AS (
    SELECT bed.id, bed.institution_id, bed.kind, bed.room_id,
           greatest(bed.created_at, b.t0) AS s, least(coalesce(bed.retired_at, 'infinity'), b.t_end) AS e,
           bed.created_at <= b.t_end AND (bed.retired_at IS NULL OR bed.retired_at > b.t_end) AS at_end
    FROM beds bed CROSS JOIN bounds b
    WHERE bed.institution_id = ANY (%1$L::bigint[])
),
bed_fig AS (
    SELECT coalesce(bd.institution_id, 0) AS k,
           count(*) FILTER (WHERE bd.at_end)::int AS beds,
           count(*) FILTER (WHERE bd.at_end AND bd.kind = 'nursing')::int AS nursing,
           sum(greatest(0, extract(epoch FROM bd.e - bd.s)))::float8 AS seconds
    FROM bd GROUP BY GROUPING SETS ((bd.institution_id), ())
),
occ AS (
    SELECT coalesce(bd.institution_id, 0) AS k,
           sum(extract(epoch FROM upper(x.r) - lower(x.r)))::float8 AS seconds
    FROM bd JOIN bed_assignments ba ON ba.bed_id = bd.id AND bd.e > bd.s
    CROSS JOIN LATERAL (SELECT ba.during * tstzrange(bd.s, bd.e) AS r) x
    WHERE NOT isempty(x.r)
    GROUP BY GROUPING SETS ((bd.institution_id), ())
),
res AS (
    SELECT coalesce(bd.institution_id, 0) AS k,
           count(DISTINCT ba.resident_id)::int AS residents,
           count(DISTINCT ba.resident_id) FILTER (WHERE NOT EXISTS (
               SELECT 1 FROM resident_contacts c
               WHERE c.resident_id = ba.resident_id AND c.kind = 'emergency'
                 AND c.created_at <= b.t_end AND (c.removed_at IS NULL OR c.removed_at > b.t_end)))::int AS no_contact
    FROM bd JOIN bed_assignments ba ON ba.bed_id = bd.id CROSS JOIN bounds b
    WHERE ba.during @> (b.t_end - interval '1 microsecond')
    GROUP BY GROUPING SETS ((bd.institution_id), ())
),
fl AS (
    SELECT DISTINCT bd.institution_id, r.floor_id
    FROM bd JOIN rooms r ON r.id = bd.room_id WHERE bd.at_end
),
night_days AS (
    SELECT d::date AS night
    FROM generate_series(%2$L::date, %3$L::date, interval '1 day') d
    WHERE ((d::date + 1)::timestamp + interval '6 hours') AT TIME ZONE %4$L <= now()
),
rounds AS (
    SELECT nr.institution_id, nr.floor_id, ((nr.done_at AT TIME ZONE %4$L) - interval '6 hours')::date AS night
    FROM night_rounds nr CROSS JOIN bounds b
    WHERE nr.institution_id = ANY (%1$L::bigint[])
      AND nr.done_at >= b.t0 + interval '21 hours' AND nr.done_at < b.t1 + interval '6 hours'
      AND time_in_window((nr.done_at AT TIME ZONE %4$L)::time, '21:00', '06:00')
),
floor_count AS (SELECT fl.institution_id, count(*) AS floors FROM fl GROUP BY 1),
round_count AS (
    SELECT r.institution_id, count(*) AS rounds FROM rounds r JOIN night_days n ON n.night = r.night GROUP BY 1
),
covered AS (
    SELECT x.institution_id, count(*) AS covered
    FROM (
        SELECT r.institution_id, r.night, r.floor_id FROM rounds r
        WHERE r.floor_id IS NOT NULL AND r.night IN (SELECT night FROM night_days)
          AND EXISTS (SELECT 1 FROM fl WHERE fl.institution_id = r.institution_id AND fl.floor_id = r.floor_id)
        UNION
        SELECT r.institution_id, r.night, fl.floor_id FROM rounds r JOIN fl ON fl.institution_id = r.institution_id
        WHERE r.floor_id IS NULL AND r.night IN (SELECT night FROM night_days)
    ) x
    GROUP BY 1
),
round_fig AS (
    SELECT coalesce(h.id, 0) AS k, sum(coalesce(fc.floors, 0))::int AS floors,
           sum(coalesce(rc.rounds, 0))::int AS rounds, sum(coalesce(cv.covered, 0))::int AS covered,
           (sum(coalesce(fc.floors, 0)) * (SELECT count(*) FROM night_days))::int AS expected
    FROM homes h
    LEFT JOIN floor_count fc ON fc.institution_id = h.id
    LEFT JOIN round_count rc ON rc.institution_id = h.id
    LEFT JOIN covered cv ON cv.institution_id = h.id
    GROUP BY GROUPING SETS ((h.id), ())
)
SELECT keys.k, i.code, i.name, i.region_code,
       online.expected::float8, coalesce(daily.online, 0)::float8,
       (coalesce(daily.online, 0) / nullif(online.expected, 0))::float8,
       coalesce(resp.alarms, 0), coalesce(by_kind.obj, '{}'), coalesce(resp.by_priority, '{}'),
       coalesce(resp.for_people, 0), resp.ack[1], resp.ack[2], resp.att[1], resp.att[2],
       coalesce(resp.unack5, 0), coalesce(resp.falls, 0), coalesce(resp.open_at_end, 0),
       coalesce(bed_fig.beds, 0), coalesce(bed_fig.nursing, 0), bed_fig.nursing::float8 / nullif(bed_fig.beds, 0),
       (coalesce(occ.seconds, 0) / nullif(bed_fig.seconds, 0))::float8,
       (daily.occupied / nullif(daily.observed, 0))::float8,
       coalesce(res.residents, 0), coalesce(res.no_contact, 0),
       coalesce(round_fig.floors, 0), (SELECT count(*) FROM night_days)::int, coalesce(round_fig.rounds, 0),
       (round_fig.covered::float8 / nullif(round_fig.expected, 0))::float8
FROM keys
LEFT JOIN institutions i ON i.id = keys.k
LEFT JOIN online ON online.k = keys.k
LEFT JOIN resp ON resp.k = keys.k
LEFT JOIN by_kind ON by_kind.k = keys.k
LEFT JOIN bed_fig ON bed_fig.k = keys.k
LEFT JOIN occ ON occ.k = keys.k
LEFT JOIN daily ON daily.k = keys.k
LEFT JOIN res ON res.k = keys.k
LEFT JOIN round_fig ON round_fig.k = keys.k
ORDER BY keys.k = 0, i.code
$q$, p_institutions, p_from, p_to, p_tz);
END
$fn$;

-- ---------------------------------------------------------------------------------------------------
-- Subsidy verification findings, one per problem found with a home's subsidy claims. Issue 9 (subsidy
-- verification) fills this table; until it lands the table is empty and the credit score's subsidy term
-- deducts nothing. A finding counts in the period in which it was found, unless it was dismissed.
CREATE TABLE subsidy_findings (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    claim_month    date CHECK (claim_month IS NULL OR extract(day FROM claim_month) = 1),
    severity       text NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    kind           text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{1,60}$'),  -- e.g. deceased_claimant, empty_bed
    detail         jsonb NOT NULL DEFAULT '{}',
    found_at       timestamptz NOT NULL DEFAULT now(),
    dismissed_at   timestamptz,
    dismissed_note text NOT NULL DEFAULT ''
);
CREATE INDEX subsidy_findings_institution ON subsidy_findings (institution_id, found_at);

-- ---------------------------------------------------------------------------------------------------
-- Random inspections (双随机一公开). A draw is public and kept for ever (no update, no delete): the seed,
-- both candidate lists in canonical order with their SHA-256, and what was drawn, so that anyone can
-- re-run it (see platform/supervision/draw.py and docs/supervision.md).
CREATE TABLE inspection_draws (
    id                          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region_code                 text NOT NULL REFERENCES regions (code),
    algorithm                   text NOT NULL,
    seed                        text NOT NULL CHECK (length(seed) BETWEEN 8 AND 200),
    homes_requested             integer NOT NULL CHECK (homes_requested >= 1),
    inspectors_requested        integer NOT NULL CHECK (inspectors_requested >= 1),
    team_size                   integer NOT NULL CHECK (team_size >= 1),
    home_candidates             text[] NOT NULL,
    inspector_candidates        text[] NOT NULL,
    home_candidates_sha256      text NOT NULL CHECK (home_candidates_sha256 ~ '^[0-9a-f]{64}$'),
    inspector_candidates_sha256 text NOT NULL CHECK (inspector_candidates_sha256 ~ '^[0-9a-f]{64}$'),
    drawn_homes                 text[] NOT NULL,
    drawn_inspectors            text[] NOT NULL,
    purpose                     text NOT NULL DEFAULT '' CHECK (length(purpose) <= 500),
    drawn_at                    timestamptz NOT NULL DEFAULT now(),
    drawn_by                    bigint REFERENCES users (id)
);
CREATE INDEX inspection_draws_region ON inspection_draws (region_code text_pattern_ops, drawn_at DESC);

CREATE FUNCTION inspection_draws_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'inspection_draws is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER inspection_draws_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON inspection_draws
    FOR EACH STATEMENT EXECUTE FUNCTION inspection_draws_append_only();

-- One inspection per drawn home, with its team; the result is public (summary without personal data).
CREATE TABLE inspections (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    draw_id        bigint NOT NULL REFERENCES inspection_draws (id),
    position       smallint NOT NULL,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    inspector_ids  bigint[] NOT NULL,
    inspected_at   timestamptz,
    outcome        text CHECK (outcome IN ('pass', 'minor_issues', 'serious_issues', 'fail')),
    summary        text NOT NULL DEFAULT '' CHECK (length(summary) <= 4000),
    recorded_by    bigint REFERENCES users (id),
    recorded_at    timestamptz,
    UNIQUE (draw_id, institution_id),
    CHECK ((outcome IS NULL) = (inspected_at IS NULL))
);
CREATE INDEX inspections_institution ON inspections (institution_id, inspected_at);

-- ---------------------------------------------------------------------------------------------------
-- Credit scores (信用分): one row per computation, with every term in credit_score_terms; the latest
-- computation of a (home, period) is the one in force (credit_scores_latest).
CREATE TABLE credit_scores (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id  bigint NOT NULL REFERENCES institutions (id),
    period_start    date NOT NULL,
    period_end      date NOT NULL CHECK (period_end >= period_start),
    formula_version text NOT NULL,
    base            numeric(6, 2) NOT NULL,
    score           numeric(6, 2) NOT NULL CHECK (score BETWEEN 0 AND base),
    threshold       numeric(6, 2) NOT NULL,
    blacklisted     boolean NOT NULL,
    computed_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    computed_by     bigint REFERENCES users (id),
    CHECK (blacklisted = (score < threshold))
);
CREATE INDEX credit_scores_institution ON credit_scores (institution_id, period_end DESC, computed_at DESC);

CREATE TABLE credit_score_terms (
    score_id    bigint NOT NULL REFERENCES credit_scores (id),
    position    smallint NOT NULL,
    term        text NOT NULL,
    inputs      jsonb NOT NULL,
    rule        text NOT NULL,       -- the term's formula in words
    weight      numeric(8, 3) NOT NULL,
    cap         numeric(6, 2) NOT NULL,
    deduction   numeric(6, 2) NOT NULL CHECK (deduction >= 0 AND deduction <= cap),
    PRIMARY KEY (score_id, term)
);

CREATE VIEW credit_scores_latest AS
SELECT DISTINCT ON (institution_id, period_start, period_end) *
FROM credit_scores
ORDER BY institution_id, period_start, period_end, computed_at DESC, id DESC;

-- Flags on a home that other work reads. 'subsidy_manual_check': the home is blacklisted by its latest
-- credit score (below the threshold), so subsidy verification (issue 9) must send its claims to a person
-- before they are paid. Open while cleared_at IS NULL; at most one open flag per home and kind.
CREATE TABLE institution_flags (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id  bigint NOT NULL REFERENCES institutions (id),
    flag            text NOT NULL CHECK (flag IN ('subsidy_manual_check')),
    source          text NOT NULL CHECK (source IN ('credit_score', 'regulator')),
    credit_score_id bigint REFERENCES credit_scores (id),
    reason          text NOT NULL,
    raised_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    cleared_at      timestamptz,
    cleared_reason  text
);
CREATE UNIQUE INDEX institution_flags_open ON institution_flags (institution_id, flag) WHERE cleared_at IS NULL;
