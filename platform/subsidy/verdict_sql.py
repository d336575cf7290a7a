"""The verdict of every line from the evidence tables of ``evidence_sql`` (same transaction), then the findings
for supervision and the liveness list. Set-based: one INSERT decides every line of the run.

Further parameters: ``run`` (the run id), ``t_end`` (the end of the month's last local day),
``off_tol``, ``abs_tol``, ``leeway``, ``allow_abs`` (see ``rules.py``).

v_person per person: ever admitted, age and capability at the end of the month, the hardship register, and
         the stays and hospital stays of the month (evidence)
v_bedocc per claimed bed: the nights anyone held it, and who
v_sched  per programme and home region: the schedule in force
v_info   per line: all of the above, and the rate that pays it
v_dup   lines of a person claimed by more than one home in conflict (an allowance twice, or bed days on the
        same nights or more days than the month has), with the homes and how many show the person present
v_live  per allowance receiver (claimed, or enrolled): nights with vital signs in their bed, days a worn
        device sent anything
"""

from __future__ import annotations

from eldercare.platform.subsidy.reasons_sql import EVIDENCE, REASONS

INFO: tuple[str, ...] = (
    # Per person (once, however many lines name them): the month's end as the programmes see it, and records.
    """
CREATE TEMP TABLE v_person ON COMMIT DROP AS
SELECT p.resident_id,
       EXISTS (SELECT 1 FROM bed_assignments a WHERE a.resident_id = p.resident_id) AS ever_admitted,
       extract(year FROM age(%(month_end)s::date, r.birth_date))::int AS age,
       coalesce((SELECT ca.capability FROM capability_assessments ca
                 WHERE ca.resident_id = p.resident_id AND ca.assessed_at < %(t_end)s
                 ORDER BY ca.assessed_at DESC LIMIT 1), r.capability) AS capability,
       EXISTS (SELECT 1 FROM hardship_register h WHERE h.id_number_hash = r.id_number_hash
               AND h.valid && daterange(%(month)s, %(month_end)s, '[]')) AS hardship,
       (SELECT jsonb_agg(jsonb_build_object('kind', 'bed_assignment', 'bed_code', b.code,
                                            'from', lower(a.during), 'to', upper(a.during),
                                            'end_reason', a.end_reason) ORDER BY lower(a.during))
        FROM bed_assignments a JOIN beds b ON b.id = a.bed_id
        WHERE a.resident_id = p.resident_id AND a.during && tstzrange(%(t_month0)s, %(t_month1)s)) AS stays,
       (SELECT jsonb_agg(jsonb_build_object('kind', 'hospital_stay', 'id', h.id, 'from', lower(h.during),
                                            'to', upper(h.during)) ORDER BY lower(h.during))
        FROM hospital_stays h
        WHERE h.resident_id = p.resident_id AND h.during && tstzrange(%(t_month0)s, %(t_month1)s)) AS hospital
FROM v_people p JOIN residents r ON r.id = p.resident_id
""",
    # Per claimed bed: the nights anyone held it, and who.
    """
CREATE TEMP TABLE v_bedocc ON COMMIT DROP AS
SELECT a.bed_id, count(DISTINCT n.night)::int AS occupied_n, array_agg(DISTINCT r.person_code) AS occupants
FROM (SELECT DISTINCT bed_id FROM v_lines WHERE bed_id IS NOT NULL) b
JOIN bed_assignments a ON a.bed_id = b.bed_id AND a.during && tstzrange(%(t_first)s, %(t_last)s)
JOIN v_nights n ON a.during @> n.mid
JOIN residents r ON r.id = a.resident_id
GROUP BY a.bed_id
""",
    """
CREATE TEMP TABLE v_sched ON COMMIT DROP AS
SELECT x.programme, x.home_region, s.schedule_id, s.region_code, s.effective_from
FROM (SELECT DISTINCT programme, home_region FROM v_lines WHERE in_run) x
LEFT JOIN LATERAL subsidy_schedule(x.programme, x.home_region, %(month)s) s ON true
""",
    """
CREATE TEMP TABLE v_info ON COMMIT DROP AS
SELECT l.line_id, coalesce(pe.ever_admitted, false) AS ever_admitted,
       d.died_at, d.died_on, coalesce(d.died_here, false) AS died_here, d.records AS death_records,
       (SELECT count(*) FROM v_nights n WHERE n.mid >= d.died_at)::int AS nights_after_death,
       coalesce(bo.occupied_n, 0) AS occupied_n,
       CASE WHEN bo.occupants IS NOT NULL THEN array_remove(bo.occupants, l.person_code) END AS others,
       pe.age, pe.capability, coalesce(pe.hardship, false) AS hardship,
       sc.schedule_id, sc.region_code AS schedule_region, sc.effective_from,
       rate.rate_position, rate.monthly_yuan, pe.stays, pe.hospital
FROM v_lines l
LEFT JOIN v_person pe ON pe.resident_id = l.resident_id
LEFT JOIN v_death d ON d.resident_id = l.resident_id
LEFT JOIN v_bedocc bo ON bo.bed_id = l.bed_id
JOIN v_sched sc ON sc.programme = l.programme AND sc.home_region = l.home_region
LEFT JOIN LATERAL subsidy_rate(sc.schedule_id, l.bed_kind, pe.capability, pe.age, coalesce(pe.hardship, false)) rate
    ON true
WHERE l.in_run
""",
    "CREATE INDEX ON v_info (line_id)",
    """
CREATE TEMP TABLE v_dup ON COMMIT DROP AS
WITH g AS (
    SELECT l.line_id, l.institution_id, l.home_code, l.id_number_hash, l.days, f.present_n,
           CASE l.unit WHEN 'bed_day' THEN 'bed_day' ELSE l.programme END AS grp
    FROM v_lines l JOIN v_facts f ON f.line_id = l.line_id WHERE l.id_number_hash IS NOT NULL
),
w AS (
    SELECT g.*, min(g.institution_id) OVER k <> max(g.institution_id) OVER k AS several,
           sum(coalesce(g.days, 0)) OVER k AS days_sum,
           count(*) FILTER (WHERE g.present_n > 0) OVER k AS lines_present
    FROM g WINDOW k AS (PARTITION BY g.id_number_hash, g.grp)
),
multi AS (SELECT * FROM w WHERE several),
overlap AS (
    SELECT DISTINCT m.id_number_hash, m.grp
    FROM multi m JOIN v_ln ln ON ln.line_id = m.line_id AND NOT ln.dead
    GROUP BY m.id_number_hash, m.grp, ln.night HAVING count(DISTINCT m.institution_id) > 1
),
others AS (
    SELECT a.line_id, array_agg(DISTINCT b.home_code ORDER BY b.home_code) AS other_homes
    FROM multi a JOIN multi b ON b.id_number_hash = a.id_number_hash AND b.grp = a.grp
                             AND b.institution_id <> a.institution_id
    GROUP BY a.line_id
)
SELECT m.line_id, m.lines_present::int AS lines_present, o.other_homes
FROM multi m JOIN others o ON o.line_id = m.line_id
WHERE m.grp <> 'bed_day' OR m.days_sum > %(dim)s
   OR EXISTS (SELECT 1 FROM overlap x WHERE x.id_number_hash = m.id_number_hash AND x.grp = m.grp)
""",
    """
CREATE TEMP TABLE v_live ON COMMIT DROP AS
WITH receivers AS (
    SELECT resident_id, array_agg(DISTINCT programme ORDER BY programme) AS programmes
    FROM (SELECT l.resident_id, l.programme FROM v_lines l
          WHERE l.in_run AND l.unit = 'person_month' AND l.resident_id IS NOT NULL
          UNION
          SELECT e.resident_id, e.programme FROM subsidy_enrolments e
          JOIN v_people p ON p.resident_id = e.resident_id
          JOIN subsidy_programmes sp ON sp.code = e.programme AND sp.unit = 'person_month'
          WHERE e.from_month <= %(month)s AND (e.until_month IS NULL OR e.until_month >= %(month)s)) x
    GROUP BY resident_id
)
SELECT rc.resident_id, r.institution_id, rc.programmes, vit.nights AS vital_nights, vit.last AS last_vital,
       worn.days AS worn_days, worn.last AS last_worn
FROM receivers rc
JOIN residents r ON r.id = rc.resident_id
LEFT JOIN v_death d ON d.resident_id = rc.resident_id
CROSS JOIN LATERAL (
    SELECT count(*)::int AS nights, max(rn.night) AS last
    FROM v_rn rn JOIN v_sensor s ON s.bed_id = rn.bed_id AND s.night = rn.night
    WHERE rn.resident_id = rc.resident_id AND s.vit > 0 AND (d.died_at IS NULL OR rn.mid < d.died_at)
) vit
CROSS JOIN LATERAL (
    SELECT count(DISTINCT dd.day)::int AS days, max(dd.day) AS last
    FROM device_bindings db
    JOIN devices dv ON dv.id = db.device_id AND dv.kind IN ('wristband', 'wearable')
    JOIN device_daily dd ON dd.device_id = db.device_id AND dd.day BETWEEN %(month)s AND %(month_end)s
         AND dd.active_minutes > 0
    WHERE db.resident_id = rc.resident_id
      AND db.during @> ((dd.day + time '12:00') AT TIME ZONE %(tz)s)
      AND (d.died_at IS NULL OR (dd.day + time '12:00') AT TIME ZONE %(tz)s < d.died_at)
) worn
WHERE r.institution_id IN (SELECT institution_id FROM v_homes)
""",
)

# Flags of each line: r_* reject it, m_* send it to a person; the verdict is the first that applies.
_CALC = """
WITH base AS (
    SELECT l.line_id, l.institution_id, l.person_code, l.bed_code, l.programme, l.kind, l.unit, l.days, l.amount,
           l.resident_id, l.bed_id, l.bed_kind, l.home_care_bed,
           f.nights, f.nights_claimed_bed, f.dead_n, f.hosp_n, f.elig_n, f.present_n, f.absent_n, f.noev_n,
           f.nosensor_n, f.vital_n, f.present_d, f.absent_d, f.noev_d, f.hosp_d, f.dead_d,
           i.ever_admitted, i.died_at, i.died_on, i.died_here, i.death_records, i.nights_after_death,
           i.occupied_n, i.others, i.age, i.capability, i.hardship, i.schedule_id, i.schedule_region,
           i.effective_from, i.rate_position, i.monthly_yuan, i.stays, i.hospital, h.flagged,
           dp.line_id IS NOT NULL AS dup, dp.lines_present, dp.other_homes,
           lv.vital_nights, lv.worn_days,
           coalesce(l.days, %(dim)s) AS claimed_d
    FROM v_lines l
    JOIN v_facts f ON f.line_id = l.line_id
    JOIN v_info i ON i.line_id = l.line_id
    JOIN v_homes h ON h.institution_id = l.institution_id
    LEFT JOIN v_dup dp ON dp.line_id = l.line_id
    LEFT JOIN v_live lv ON lv.resident_id = l.resident_id
    WHERE l.in_run
),
c1 AS (
    SELECT b.*,
           b.unit = 'bed_day' AS per_bed,
           b.noev_n <= %(off_tol)s AND b.noev_n < b.elig_n AS offline_ok,
           b.died_at IS NOT NULL AND b.died_at <= %(t_month0)s AS dead_before,
           -- the days of the month the person was alive (an allowance of the month of death is paid pro rata)
           CASE WHEN b.died_at > %(t_month0)s AND b.died_at < %(t_month1)s THEN %(dim)s - b.nights_after_death
                ELSE %(dim)s END AS alive_d,
           greatest(0, b.claimed_d - b.elig_n) AS over,
           coalesce(b.amount, round(b.monthly_yuan * b.claimed_d / %(dim)s, 2), 0) AS claimed_yuan,
           CASE WHEN b.monthly_yuan IS NULL THEN NULL
                ELSE round(b.monthly_yuan * b.claimed_d / %(dim)s, 2) END AS computed_yuan
    FROM base b
),
c2 AS (
    SELECT c.*,
           CASE WHEN c.per_bed THEN least(c.over, c.nights_after_death)
                -- an allowance of the month of death: the days its amount pays beyond the person's life
                WHEN c.alive_d < %(dim)s
                THEN greatest(0, least(%(dim)s, CASE WHEN c.days IS NOT NULL THEN c.days::numeric
                                                     WHEN c.monthly_yuan > 0
                                                     THEN round(c.claimed_yuan * %(dim)s / c.monthly_yuan)
                                                     ELSE 0 END) - c.alive_d)
                ELSE 0 END AS over_death,
           least(c.claimed_d, c.present_n + CASE WHEN c.offline_ok THEN c.noev_n ELSE 0 END) AS supported_d
    FROM c1 c
),
c3 AS (
    SELECT c.*,
           CASE WHEN c.per_bed THEN least(c.over - c.over_death, c.hosp_n) ELSE 0 END AS over_hosp,
           -- reject
           c.person_code IS NOT NULL AND c.resident_id IS NULL AS r_unknown,
           c.resident_id IS NOT NULL AND NOT c.ever_admitted AS r_never,
           c.per_bed AND c.bed_id IS NULL AS r_bed_unknown,
           c.per_bed AND c.bed_id IS NOT NULL
               AND ((c.kind = 'operating' AND c.home_care_bed) OR (c.kind = 'home_care_bed' AND NOT c.home_care_bed))
               AS r_bed_type,
           c.per_bed AND c.bed_id IS NOT NULL AND c.occupied_n = 0 AS r_bed_empty,
           c.per_bed AND c.ever_admitted AND c.occupied_n > 0 AND c.nights_claimed_bed = 0 AS r_other_bed,
           NOT c.per_bed AND c.ever_admitted AND c.nights = 0 AS r_not_resident,
           c.ever_admitted AND c.dead_before AS r_dead_before,
           c.per_bed AND c.nights_claimed_bed > 0 AND c.elig_n = 0 AS r_no_eligible,
           -- (of a known person: one the home never registered has no age or capability to judge, r_unknown says it)
           NOT c.per_bed AND c.resident_id IS NOT NULL AND c.schedule_id IS NOT NULL AND c.monthly_yuan IS NULL
               AS r_not_eligible,
           c.dup AND c.present_n = 0 AND c.lines_present > 0 AS r_dup,
           c.per_bed AND c.elig_n > 0 AND c.present_n = 0 AND c.offline_ok AND c.absent_n > 0 AS r_empty_sensor,
           -- manual check
           c.per_bed AND c.elig_n > 0 AND NOT c.offline_ok AND c.present_n < c.claimed_d AS m_offline,
           c.per_bed AND c.absent_n > %(abs_tol)s AND c.supported_d < c.claimed_d AS m_absent,
           NOT c.per_bed AND c.present_n = 0 AND c.absent_n >= %(allow_abs)s AS m_not_present,
           c.dup AND (c.lines_present = 0 OR (c.present_n > 0 AND c.lines_present > 1)) AS m_dup,
           c.monthly_yuan IS NULL AND c.schedule_id IS NULL AS m_no_schedule,
           c.per_bed AND c.schedule_id IS NOT NULL AND c.monthly_yuan IS NULL AS m_no_rate,
           c.flagged AS m_flagged
    FROM c2 c
),
c4 AS (
    SELECT c.*,
           CASE WHEN c.per_bed THEN c.over - c.over_death - c.over_hosp ELSE 0 END AS over_other,
           CASE WHEN c.per_bed
                THEN least(c.claimed_yuan, coalesce(round(c.monthly_yuan * c.supported_d / %(dim)s, 2), 0))
                ELSE least(c.claimed_yuan,
                           coalesce(round(c.monthly_yuan * least(c.claimed_d, c.alive_d) / %(dim)s, 2), 0))
           END AS evidence_yuan,
           c.r_unknown OR c.r_never OR c.r_bed_unknown OR c.r_bed_type OR c.r_bed_empty OR c.r_other_bed
               OR c.r_not_resident OR c.r_dead_before OR c.r_no_eligible OR c.r_not_eligible OR c.r_dup
               OR c.r_empty_sensor AS rejected
    FROM c3 c
),
calc AS (
    SELECT c.*,
           CASE WHEN c.rejected THEN 'rejected'
                WHEN c.m_offline OR c.m_absent OR c.m_not_present OR c.m_dup OR c.m_no_schedule OR c.m_no_rate
                     OR c.m_flagged
                     OR (c.per_bed AND (c.over_death > 0 OR c.over_hosp > 0 OR c.over_other > %(leeway)s))
                     OR (NOT c.per_bed AND c.over_death > %(leeway)s)
                    THEN 'manual_check'
                WHEN c.evidence_yuan < c.claimed_yuan OR (c.per_bed AND c.supported_d < c.claimed_d)
                    THEN 'partly_verified'
                ELSE 'verified' END AS verdict
    FROM c4 c
)
"""

VERDICTS: tuple[str, ...] = (
    "DELETE FROM subsidy_verdicts WHERE line_id IN (SELECT line_id FROM v_lines WHERE in_run)",
    f"""
INSERT INTO subsidy_verdicts (line_id, run_id, institution_id, month, verdict, claimed_days, verified_days,
                              claimed_yuan, supported_yuan, payable_yuan, reasons, evidence)
{_CALC}
SELECT c.line_id, %(run)s, c.institution_id, %(month)s, c.verdict,
       CASE WHEN c.per_bed OR c.days IS NOT NULL THEN c.claimed_d END,
       CASE WHEN NOT c.per_bed THEN NULL WHEN c.rejected THEN 0 ELSE c.supported_d END,
       c.claimed_yuan,
       CASE WHEN c.rejected THEN 0 ELSE c.evidence_yuan END,
       CASE WHEN c.verdict IN ('verified', 'partly_verified') THEN c.evidence_yuan ELSE 0 END,
       {REASONS},
       {EVIDENCE}
FROM calc c
""",  # noqa: S608 - composed of this module's constants only
)

# Verdict reason -> finding for supervision's credit score (only lines rejected or sent to a person).
FINDINGS: tuple[str, ...] = (
    """
DELETE FROM subsidy_findings f
WHERE f.claim_month = %(month)s AND f.dismissed_at IS NULL AND f.detail->>'source' = 'subsidy_verification'
  AND f.institution_id IN (SELECT institution_id FROM v_homes)
""",
    """
INSERT INTO subsidy_findings (institution_id, claim_month, severity, kind, detail)
WITH kinds (code, kind, severity) AS (VALUES
    ('unknown_person', 'ghost_resident', 'critical'), ('never_admitted', 'ghost_resident', 'critical'),
    ('died_before_month', 'deceased_claimant', 'critical'), ('claims_after_death', 'deceased_claimant', 'critical'),
    ('bed_unassigned', 'empty_bed', 'major'), ('bed_empty', 'empty_bed', 'major'),
    ('other_occupant', 'empty_bed', 'major'), ('unknown_bed', 'empty_bed', 'major'),
    ('duplicate_claim', 'duplicate_claim', 'major'), ('duplicate_unresolved', 'duplicate_claim', 'major'),
    ('hospital_days_claimed', 'hospital_days_claimed', 'major'),
    ('days_beyond_stay', 'days_beyond_stay', 'minor'), ('long_absence', 'absent_nights', 'minor'),
    ('not_present', 'absent_nights', 'minor'), ('not_resident', 'days_beyond_stay', 'minor'),
    ('not_eligible', 'not_eligible', 'minor'), ('wrong_bed_type', 'not_eligible', 'minor')
),
found AS (
    SELECT v.institution_id, k.kind, k.severity, v.line_id, v.claimed_yuan - v.payable_yuan AS withheld
    FROM subsidy_verdicts v
    CROSS JOIN LATERAL jsonb_array_elements(v.reasons) r
    JOIN kinds k ON k.code = r->>'code'
    WHERE v.run_id = %(run)s AND v.verdict IN ('rejected', 'manual_check')
)
SELECT f.institution_id, %(month)s, min(f.severity), f.kind,
       jsonb_build_object('source', 'subsidy_verification', 'run_id', %(run)s,
                          'lines', array_agg(DISTINCT f.line_id ORDER BY f.line_id),
                          'line_count', count(DISTINCT f.line_id), 'withheld_yuan', sum(f.withheld))
FROM found f
WHERE NOT EXISTS (SELECT 1 FROM subsidy_findings d WHERE d.institution_id = f.institution_id
                  AND d.claim_month = %(month)s AND d.kind = f.kind AND d.dismissed_at IS NOT NULL
                  AND d.detail->>'source' = 'subsidy_verification')
GROUP BY f.institution_id, f.kind
""",
)

LIVENESS: tuple[str, ...] = (
    "DELETE FROM subsidy_liveness WHERE month = %(month)s AND institution_id IN (SELECT institution_id FROM v_homes)",
    """
INSERT INTO subsidy_liveness (month, resident_id, institution_id, run_id, programmes, vital_nights, worn_days,
                              last_evidence, follow_up)
SELECT %(month)s, resident_id, institution_id, %(run)s, programmes, vital_nights, worn_days,
       greatest(last_vital, last_worn), vital_nights + worn_days = 0
FROM v_live
""",
)
