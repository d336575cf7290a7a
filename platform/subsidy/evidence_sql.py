"""The evidence of a month, set-based SQL over the registry and the telemetry roll-ups, as temporary tables
of one transaction (each built once and indexed, so the verdict is a join of small tables).

Parameters (see :func:`eldercare.platform.subsidy.verify.params`): ``region``, ``month``, ``month_end``,
``dim`` (days in the month), ``tz``, ``ns``/``ne`` (the night's first and end hour), ``t_first``/``t_last``
(the first night's start, the last night's end), ``t_month0``/``t_month1`` (the month's local bounds),
``slot_buckets``/``slot_nights`` (every night hour's UTC bucket and its night), ``min_hours``/``min_share``
(the presence rule, see ``rules.py``).

v_homes     the homes of the run (the region), with the blacklist flag of supervision
v_nights    the nights of the month: local date, day of month, start, end, middle (02:00)
v_lines     the claim lines in force for the month of the run's homes, resolved to resident and bed, and the
            lines of other homes naming the same person (same keyed ID hash), for the duplicate check
v_people    the residents concerned: claimed, or enrolled in an allowance (the liveness check)
v_death     per resident, the earliest death known: the registry's deaths of any resident with the same ID
            hash, and the death register (a date: dead from the end of that day); whether the earliest was
            recorded by the resident's own home (``died_here``), and each record with ``elsewhere`` (another
            home's or the death register's: its details are for supervisors only, see ``disclosure.py``)
v_rn        resident-nights: the bed each resident held at the middle of each night
v_hosp      resident-nights in hospital
v_devnights bed sensors bound to each bed at the middle of each night
v_sensor    per bed and night: hours with samples, the share of observed minutes showing someone, vital-sign
            readings, from bed_hourly (the best of the bed's sensors)
v_ln        line-nights: the nights counted for each line, with death, hospital and the sensor's state
v_facts     per line: the counts and the days of each kind of night
"""

from __future__ import annotations

STEPS: tuple[str, ...] = (
    """
CREATE TEMP TABLE v_homes ON COMMIT DROP AS
SELECT i.id AS institution_id, i.code, i.region_code,
       EXISTS (SELECT 1 FROM institution_flags f WHERE f.institution_id = i.id
               AND f.flag = 'subsidy_manual_check' AND f.cleared_at IS NULL) AS flagged
FROM institutions i WHERE starts_with(i.region_code, %(region)s)
""",
    """
CREATE TEMP TABLE v_nights ON COMMIT DROP AS
SELECT n.night, extract(day FROM n.night)::int AS dom, n.t0, n.t1, n.t0 + (n.t1 - n.t0) / 2 AS mid
FROM (SELECT d::date AS night,
             (d::date + make_time(%(ns)s, 0, 0)) AT TIME ZONE %(tz)s AS t0,
             (d::date + 1 + make_time(%(ne)s, 0, 0)) AT TIME ZONE %(tz)s AS t1
      FROM generate_series(%(month)s::timestamp, %(month_end)s::timestamp, interval '1 day') d) n
""",
    """
CREATE TEMP TABLE v_lines ON COMMIT DROP AS
WITH mine AS (
    SELECT l.id AS line_id, l.line_no, c.id AS claim_id, c.institution_id, l.person_code, l.bed_code,
           l.programme, p.kind, p.unit, l.days, l.amount, r.id AS resident_id, r.id_number_hash, r.birth_date,
           r.capability AS capability_now
    FROM subsidy_claims c
    JOIN subsidy_claim_lines l ON l.claim_id = c.id
    JOIN subsidy_programmes p ON p.code = l.programme
    LEFT JOIN residents r ON r.person_code = l.person_code AND r.institution_id = c.institution_id
    WHERE c.month = %(month)s AND c.replaced_at IS NULL
      AND c.institution_id IN (SELECT institution_id FROM v_homes)
),
-- lines of homes outside the run naming the same people (found by hash), for the duplicate check
others AS (
    SELECT l.id AS line_id, l.line_no, c.id AS claim_id, c.institution_id, l.person_code, l.bed_code,
           l.programme, p.kind, p.unit, l.days, l.amount, r.id AS resident_id, r.id_number_hash, r.birth_date,
           r.capability AS capability_now
    FROM residents r
    JOIN subsidy_claims c ON c.institution_id = r.institution_id AND c.month = %(month)s AND c.replaced_at IS NULL
    JOIN subsidy_claim_lines l ON l.claim_id = c.id AND l.person_code = r.person_code
    JOIN subsidy_programmes p ON p.code = l.programme
    WHERE r.id_number_hash IN (SELECT id_number_hash FROM mine WHERE id_number_hash IS NOT NULL)
      AND r.institution_id NOT IN (SELECT institution_id FROM v_homes)
)
SELECT x.line_id, x.line_no, x.claim_id, x.institution_id, x.person_code, x.bed_code, x.programme, x.kind, x.unit,
       x.days, x.amount, coalesce(x.resident_id, occ.id) AS resident_id,
       coalesce(x.id_number_hash, occ.id_number_hash) AS id_number_hash,
       coalesce(x.birth_date, occ.birth_date) AS birth_date,
       coalesce(x.capability_now, occ.capability) AS capability_now,
       x.in_run, b.id AS bed_id, b.kind AS bed_kind, b.room_id IS NULL AS home_care_bed,
       i.code AS home_code, i.region_code AS home_region
FROM (SELECT mine.*, true AS in_run FROM mine UNION ALL SELECT others.*, false FROM others) x
JOIN institutions i ON i.id = x.institution_id
LEFT JOIN beds b ON b.code = x.bed_code AND b.institution_id = x.institution_id
-- a line for a bed that names no person: the person who held the bed last in the month
LEFT JOIN LATERAL (
    SELECT r.id, r.id_number_hash, r.birth_date, r.capability
    FROM bed_assignments a JOIN residents r ON r.id = a.resident_id
    WHERE x.person_code IS NULL AND a.bed_id = b.id AND a.during && tstzrange(%(t_first)s, %(t_last)s)
    ORDER BY upper(a.during) DESC NULLS FIRST LIMIT 1
) occ ON true
""",
    "CREATE INDEX ON v_lines (line_id)",
    "CREATE INDEX ON v_lines (resident_id)",
    "ANALYZE v_lines",
    """
CREATE TEMP TABLE v_people ON COMMIT DROP AS
SELECT resident_id FROM v_lines WHERE resident_id IS NOT NULL
UNION
SELECT e.resident_id FROM subsidy_enrolments e
JOIN subsidy_programmes p ON p.code = e.programme AND p.unit = 'person_month'
JOIN residents r ON r.id = e.resident_id
WHERE r.institution_id IN (SELECT institution_id FROM v_homes)
  AND e.from_month <= %(month)s AND (e.until_month IS NULL OR e.until_month >= %(month)s)
""",
    "CREATE INDEX ON v_people (resident_id)",
    "ANALYZE v_people",
    """
CREATE TEMP TABLE v_death ON COMMIT DROP AS
SELECT p.resident_id, min(x.died_at) AS died_at, (array_agg(x.died_on ORDER BY x.died_at))[1] AS died_on,
       (array_agg(x.here ORDER BY x.died_at, x.here DESC))[1] AS died_here,
       jsonb_agg(jsonb_build_object('kind', 'death', 'register', x.register, 'source', x.source,
                                    'died_on', x.died_on, 'home_code', x.home_code, 'home_name', x.home_name,
                                    'elsewhere', NOT x.here) ORDER BY x.died_at) AS records
FROM v_people p
JOIN residents r ON r.id = p.resident_id
CROSS JOIN LATERAL (
    SELECT d.died_at, (d.died_at AT TIME ZONE %(tz)s)::date AS died_on, d.source, 'registry' AS register,
           r2.institution_id = r.institution_id AS here, i.code AS home_code, i.name AS home_name
    FROM residents r2 JOIN deaths d ON d.resident_id = r2.id JOIN institutions i ON i.id = r2.institution_id
    WHERE r2.id_number_hash = r.id_number_hash
    UNION ALL
    SELECT (dr.died_on + 1)::timestamp AT TIME ZONE %(tz)s, dr.died_on, dr.source, 'death_register', false, NULL,
           NULL
    FROM death_register dr WHERE dr.id_number_hash = r.id_number_hash
) x
GROUP BY p.resident_id
""",
    """
CREATE TEMP TABLE v_rn ON COMMIT DROP AS
SELECT a.resident_id, n.night, n.dom, n.mid, a.bed_id
FROM v_people p
JOIN bed_assignments a ON a.resident_id = p.resident_id AND a.during && tstzrange(%(t_first)s, %(t_last)s)
JOIN v_nights n ON a.during @> n.mid
""",
    "CREATE INDEX ON v_rn (resident_id)",
    "ANALYZE v_rn",
    """
CREATE TEMP TABLE v_hosp ON COMMIT DROP AS
SELECT DISTINCT hs.resident_id, n.night
FROM v_people p
JOIN hospital_stays hs ON hs.resident_id = p.resident_id AND hs.during && tstzrange(%(t_first)s, %(t_last)s)
JOIN v_nights n ON hs.during @> n.mid
""",
    """
CREATE TEMP TABLE v_devnights ON COMMIT DROP AS
SELECT db.bed_id, db.device_id, n.night
FROM (SELECT bed_id FROM v_rn UNION SELECT bed_id FROM v_lines WHERE bed_id IS NOT NULL) b
JOIN device_bindings db ON db.bed_id = b.bed_id AND db.during && tstzrange(%(t_first)s, %(t_last)s)
JOIN devices d ON d.id = db.device_id AND d.kind = 'bed_sensor'
JOIN v_nights n ON db.during @> n.mid
""",
    "ANALYZE v_devnights",
    # The month's night hours of the devices concerned, found by bucket (roll-up rows of an hour lie together):
    # ``slots`` lists each night hour's UTC bucket with its night.
    """
CREATE TEMP TABLE v_sensor ON COMMIT DROP AS
WITH slots AS (
    SELECT s.bucket, s.night FROM unnest(%(slot_buckets)s::timestamptz[], %(slot_nights)s::date[]) AS s(bucket, night)
),
hours AS (
    SELECT h.device_id, s.night, count(*) FILTER (WHERE h.observed_minutes > 0) AS obs_hours,
           sum(h.occupied_minutes)::float8 / nullif(sum(h.observed_minutes), 0) AS share,
           sum(h.hr_count + h.rr_count) AS vit
    FROM bed_hourly h
    JOIN slots s ON s.bucket = h.bucket
    WHERE h.bucket = ANY (%(slot_buckets)s::timestamptz[])
      AND h.device_id IN (SELECT device_id FROM v_devnights)
    GROUP BY 1, 2
)
SELECT dn.bed_id, dn.night, max(coalesce(hours.obs_hours, 0))::int AS obs_hours,
       max(coalesce(hours.share, 0)) AS share, max(coalesce(hours.vit, 0))::bigint AS vit
FROM v_devnights dn LEFT JOIN hours ON hours.device_id = dn.device_id AND hours.night = dn.night
GROUP BY 1, 2
""",
    "ANALYZE v_sensor",
    # The nights of a line: an allowance counts every night at the home; a bed line the nights in its bed,
    # plus (for the home's first line of that person) nights in a bed no line of the claim names (a transfer).
    """
CREATE TEMP TABLE v_ln ON COMMIT DROP AS
WITH firsts AS (
    SELECT claim_id, resident_id, array_agg(bed_id) AS beds, min(line_no) AS first_line
    FROM v_lines WHERE unit = 'bed_day' AND resident_id IS NOT NULL GROUP BY 1, 2
)
SELECT l.line_id, rn.night, rn.dom, rn.bed_id, rn.bed_id = l.bed_id AS in_claimed_bed,
       coalesce(rn.mid >= dth.died_at, false) AS dead,
       hp.night IS NOT NULL AS hospital,
       CASE WHEN s.bed_id IS NULL THEN 'no_sensor'
            WHEN s.obs_hours < %(min_hours)s THEN 'no_evidence'
            WHEN s.share >= %(min_share)s THEN 'present'
            ELSE 'absent' END AS sensor,
       coalesce(s.vit, 0) > 0 AS vitals
FROM v_lines l
JOIN v_rn rn ON rn.resident_id = l.resident_id
LEFT JOIN firsts f ON f.claim_id = l.claim_id AND f.resident_id = l.resident_id
LEFT JOIN v_death dth ON dth.resident_id = l.resident_id
LEFT JOIN v_hosp hp ON hp.resident_id = l.resident_id AND hp.night = rn.night
LEFT JOIN v_sensor s ON s.bed_id = rn.bed_id AND s.night = rn.night
WHERE l.unit = 'person_month' OR rn.bed_id = l.bed_id
   OR (l.bed_id IS NOT NULL AND NOT (rn.bed_id = ANY (f.beds)) AND l.line_no = f.first_line
       AND EXISTS (SELECT 1 FROM v_rn x WHERE x.resident_id = l.resident_id AND x.bed_id = l.bed_id))
""",
    "CREATE INDEX ON v_ln (line_id)",
    "ANALYZE v_ln",
    """
CREATE TEMP TABLE v_facts ON COMMIT DROP AS
WITH ln AS (SELECT *, NOT dead AND NOT hospital AS eligible FROM v_ln)
SELECT l.line_id,
       count(ln.night)::int AS nights,
       count(*) FILTER (WHERE ln.in_claimed_bed)::int AS nights_claimed_bed,
       count(*) FILTER (WHERE ln.dead)::int AS dead_n,
       count(*) FILTER (WHERE ln.hospital AND NOT ln.dead)::int AS hosp_n,
       count(*) FILTER (WHERE ln.eligible)::int AS elig_n,
       count(*) FILTER (WHERE ln.eligible AND ln.sensor = 'present')::int AS present_n,
       count(*) FILTER (WHERE ln.eligible AND ln.sensor = 'absent')::int AS absent_n,
       count(*) FILTER (WHERE ln.eligible AND ln.sensor IN ('no_evidence', 'no_sensor'))::int AS noev_n,
       count(*) FILTER (WHERE ln.eligible AND ln.sensor = 'no_sensor')::int AS nosensor_n,
       count(*) FILTER (WHERE ln.vitals AND NOT ln.dead)::int AS vital_n,
       coalesce(array_agg(ln.dom ORDER BY ln.dom) FILTER (WHERE ln.eligible AND ln.sensor = 'present'), '{}')
           AS present_d,
       coalesce(array_agg(ln.dom ORDER BY ln.dom) FILTER (WHERE ln.eligible AND ln.sensor = 'absent'), '{}')
           AS absent_d,
       coalesce(array_agg(ln.dom ORDER BY ln.dom)
                    FILTER (WHERE ln.eligible AND ln.sensor IN ('no_evidence', 'no_sensor')), '{}') AS noev_d,
       coalesce(array_agg(ln.dom ORDER BY ln.dom) FILTER (WHERE ln.hospital AND NOT ln.dead), '{}') AS hosp_d,
       coalesce(array_agg(ln.dom ORDER BY ln.dom) FILTER (WHERE ln.dead), '{}') AS dead_d
FROM v_lines l LEFT JOIN ln ON ln.line_id = l.line_id
GROUP BY l.line_id
""",
    "CREATE INDEX ON v_facts (line_id)",
    "ANALYZE v_facts",
)
