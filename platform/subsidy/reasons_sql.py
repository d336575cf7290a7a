"""The reasons and the evidence of a line's verdict, as SQL expressions over ``calc c`` (``verdict_sql``):
``REASONS`` builds the ``reasons`` array (``{code, text}``), ``EVIDENCE`` the ``evidence`` object.

What rests on another home's records or on the death register is marked ``elsewhere: true`` (a reason, a death
record, the death, the duplicate): it is stored in full, for supervisors, and ``disclosure.py`` withholds its
details from the home when a head reads the line."""

from __future__ import annotations

# Reasons: the grounds of the verdict first, then what was found in the line's favour. A code is stable; the
# text says it in English with the days and records; ``args`` holds the values the text names (and a
# ``variant`` where the wording depends on one), from which ``reason_text`` says it in the reader's language.
REASONS = """
to_jsonb(array_remove(ARRAY[
    CASE WHEN c.r_unknown THEN jsonb_build_object('code', 'unknown_person',
        'text', format('person code %%s is not registered at this home', c.person_code),
        'args', jsonb_build_object('person_code', c.person_code)) END,
    CASE WHEN c.r_never THEN jsonb_build_object('code', 'never_admitted',
        'text', 'the person is registered at this home but was never admitted to one of its beds') END,
    CASE WHEN NOT c.r_unknown AND c.r_bed_unknown THEN jsonb_build_object('code', 'unknown_bed',
        'text', format('bed code %%s is not a bed of this home', c.bed_code),
        'args', jsonb_build_object('bed_code', c.bed_code)) END,
    CASE WHEN c.r_bed_type THEN jsonb_build_object('code', 'wrong_bed_type',
        'text', CASE WHEN c.home_care_bed THEN format('bed %%s is a home-care bed, not a bed in a home', c.bed_code)
                     ELSE format('bed %%s is a bed in a home, not a home-care bed', c.bed_code) END,
        'args', jsonb_build_object('bed_code', c.bed_code,
                                   'variant', CASE WHEN c.home_care_bed THEN 'home_care' ELSE 'in_home' END)) END,
    CASE WHEN NOT c.r_never AND c.r_bed_empty THEN jsonb_build_object('code', 'bed_unassigned',
        'text', format('no one was assigned to bed %%s in %%s', c.bed_code, to_char(%(month)s::date, 'YYYY-MM')),
        'args', jsonb_build_object('bed_code', c.bed_code, 'month', to_char(%(month)s::date, 'YYYY-MM'))) END,
    CASE WHEN NOT c.r_never AND c.r_other_bed THEN jsonb_build_object('code', 'other_occupant',
        'text', format('the person was not in bed %%s in %%s; it was assigned to %%s', c.bed_code,
                       to_char(%(month)s::date, 'YYYY-MM'), array_to_string(c.others, ', ')),
        'args', jsonb_build_object('bed_code', c.bed_code, 'month', to_char(%(month)s::date, 'YYYY-MM'),
                                   'others', to_jsonb(c.others))) END,
    CASE WHEN c.r_not_resident THEN jsonb_build_object('code', 'not_resident',
        'text', format('the person was in no bed of this home on any night of %%s',
                       to_char(%(month)s::date, 'YYYY-MM')),
        'args', jsonb_build_object('month', to_char(%(month)s::date, 'YYYY-MM'))) END,
    CASE WHEN c.r_dead_before THEN jsonb_build_object('code', 'died_before_month',
        'text', format('died on %%s, before the month', c.died_on),
        'args', jsonb_build_object('died_on', c.died_on::text), 'elsewhere', NOT c.died_here) END,
    CASE WHEN NOT c.r_dead_before AND NOT c.rejected
              AND ((c.per_bed AND c.over_death > 0) OR (NOT c.per_bed AND c.over_death > %(leeway)s))
         THEN jsonb_build_object('code', 'claims_after_death',
        'text', format('claims %%s day(s) after the death on %%s', c.over_death, c.died_on),
        'args', jsonb_build_object('days', c.over_death, 'died_on', c.died_on::text),
        'elsewhere', NOT c.died_here) END,
    CASE WHEN c.r_not_eligible THEN jsonb_build_object('code', 'not_eligible',
        'text', format('not eligible: age %%s, capability %%s, %%s the hardship register (schedule %%s of %%s)',
                       c.age, c.capability, CASE WHEN c.hardship THEN 'on' ELSE 'not on' END,
                       c.schedule_id, c.schedule_region),
        'args', jsonb_build_object('age', c.age, 'capability', c.capability, 'schedule_id', c.schedule_id,
                                   'region_code', c.schedule_region,
                                   'variant', CASE WHEN c.hardship THEN 'hardship' ELSE 'no_hardship' END)) END,
    CASE WHEN c.per_bed AND c.over_hosp > 0 THEN jsonb_build_object('code', 'hospital_days_claimed',
        'text', format('claims %%s day(s) the person was in hospital (nights %%s)', c.over_hosp,
                       array_to_string(c.hosp_d, ',')),
        'args', jsonb_build_object('days', c.over_hosp, 'nights', to_jsonb(c.hosp_d))) END,
    CASE WHEN c.per_bed AND c.r_no_eligible AND c.over_hosp = 0 AND c.over_death = 0
         THEN jsonb_build_object('code', 'no_payable_night', 'text', 'no night of the month is payable') END,
    CASE WHEN c.per_bed AND c.over_other > 0 AND c.nights_claimed_bed > 0 THEN jsonb_build_object(
        'code', CASE WHEN c.over_other > %(leeway)s THEN 'days_beyond_stay' ELSE 'counting_day' END,
        'text', format('claims %%s day(s); the person held the bed on %%s night(s) of the month', c.claimed_d,
                       c.nights),
        'args', jsonb_build_object('days', c.claimed_d, 'nights', c.nights)) END,
    CASE WHEN c.r_dup THEN jsonb_build_object('code', 'duplicate_claim',
        'text', format('also claimed by %%s, where the bed sensor shows the person; not here',
                       array_to_string(c.other_homes, ', ')),
        'args', jsonb_build_object('homes', to_jsonb(c.other_homes)), 'elsewhere', true) END,
    CASE WHEN c.m_dup THEN jsonb_build_object('code', 'duplicate_unresolved',
        'text', format('also claimed by %%s for the same month; the sensors do not tell which home is right',
                       array_to_string(c.other_homes, ', ')),
        'args', jsonb_build_object('homes', to_jsonb(c.other_homes)), 'elsewhere', true) END,
    CASE WHEN c.r_empty_sensor THEN jsonb_build_object('code', 'bed_empty',
        'text', format('the bed sensor saw no one in the bed on any of the %%s night(s) it watched', c.absent_n),
        'args', jsonb_build_object('count', c.absent_n)) END,
    CASE WHEN c.m_offline AND c.nosensor_n = c.elig_n THEN jsonb_build_object('code', 'no_sensor',
        'text', 'no bed sensor watched the bed this month: the days cannot be verified from telemetry') END,
    CASE WHEN c.m_offline AND c.nosensor_n < c.elig_n THEN jsonb_build_object('code', 'sensor_offline',
        'text', format('the bed sensor had no data on %%s of %%s night(s) (%%s); an outage is not an absence, '
                       'but too long to pay unseen',
                       c.noev_n, c.elig_n, array_to_string(c.noev_d, ',')),
        'args', jsonb_build_object('count', c.noev_n, 'payable', c.elig_n, 'nights', to_jsonb(c.noev_d))) END,
    CASE WHEN c.per_bed AND c.absent_n > 0 AND NOT c.r_empty_sensor THEN jsonb_build_object(
        'code', CASE WHEN c.m_absent THEN 'long_absence' ELSE 'absent_nights' END,
        'text', format('the bed was empty on %%s night(s): %%s', c.absent_n, array_to_string(c.absent_d, ',')),
        'args', jsonb_build_object('count', c.absent_n, 'nights', to_jsonb(c.absent_d))) END,
    CASE WHEN c.m_not_present THEN jsonb_build_object('code', 'not_present',
        'text', format('the person was not in their bed on any of the %%s night(s) the sensor watched',
                       c.absent_n),
        'args', jsonb_build_object('count', c.absent_n)) END,
    CASE WHEN c.m_no_schedule THEN jsonb_build_object('code', 'no_schedule',
        'text', format('no schedule of %%s is in force for this home''s region in %%s', c.programme,
                       to_char(%(month)s::date, 'YYYY-MM')),
        'args', jsonb_build_object('programme', c.programme, 'month', to_char(%(month)s::date, 'YYYY-MM'))) END,
    CASE WHEN c.m_no_rate THEN jsonb_build_object('code', 'no_rate',
        'text', format('schedule %%s has no amount for a %%s bed and capability %%s', c.schedule_id, c.bed_kind,
                       c.capability),
        'args', jsonb_build_object('schedule_id', c.schedule_id, 'bed_kind', c.bed_kind,
                                   'capability', c.capability)) END,
    CASE WHEN NOT c.rejected AND c.claimed_yuan > c.evidence_yuan AND c.amount IS NOT NULL
              AND c.amount > coalesce(c.computed_yuan, 0) AND c.monthly_yuan IS NOT NULL
         THEN jsonb_build_object('code', 'amount_over_schedule',
        'text', format('claims %%s yuan; the schedule pays %%s yuan a month', c.amount, c.monthly_yuan),
        'args', jsonb_build_object('amount', c.amount::text, 'monthly', c.monthly_yuan::text)) END,
    CASE WHEN c.m_flagged THEN jsonb_build_object('code', 'home_flagged',
        'text', 'the home is flagged by supervision (credit score below the threshold): '
                'its claims are checked by a person') END,
    CASE WHEN c.dup AND NOT c.r_dup AND NOT c.m_dup THEN jsonb_build_object('code', 'duplicate_resolved',
        'text', format('also claimed by %%s; the bed sensor shows the person here',
                       array_to_string(c.other_homes, ', ')),
        'args', jsonb_build_object('homes', to_jsonb(c.other_homes)), 'elsewhere', true) END,
    CASE WHEN c.per_bed AND NOT c.rejected AND c.noev_n > 0 AND c.offline_ok
         THEN jsonb_build_object('code', 'offline_tolerated',
        'text', format('no sensor data on %%s night(s) (%%s), paid: the sensor showed the person on the other nights',
                       c.noev_n, array_to_string(c.noev_d, ',')),
        'args', jsonb_build_object('count', c.noev_n, 'nights', to_jsonb(c.noev_d))) END,
    CASE WHEN NOT c.per_bed AND c.resident_id IS NOT NULL AND coalesce(c.vital_nights, 0) + coalesce(c.worn_days, 0) = 0
         THEN jsonb_build_object('code', 'no_liveness',
        'text', 'no vital signs or worn-device activity this month: on the follow-up list (无感认证)') END,
    CASE WHEN NOT c.rejected AND c.present_n > 0 THEN jsonb_build_object('code', 'present',
        'text', format('in bed on %%s of %%s payable night(s)', c.present_n, c.elig_n),
        'args', jsonb_build_object('count', c.present_n, 'payable', c.elig_n)) END
], NULL))
"""

EVIDENCE = """
jsonb_build_object(
    'nights', jsonb_build_object('present', c.present_d, 'absent', c.absent_d, 'no_evidence', c.noev_d,
                                 'hospital', c.hosp_d, 'after_death', c.dead_d),
    'counts', jsonb_build_object('nights', c.nights, 'in_claimed_bed', c.nights_claimed_bed, 'payable', c.elig_n,
                                 'present', c.present_n, 'absent', c.absent_n, 'no_evidence', c.noev_n,
                                 'no_sensor', c.nosensor_n, 'hospital', c.hosp_n,
                                 'after_death', c.dead_n, 'vital_signs', c.vital_n),
    'records', coalesce(c.stays, '[]') || coalesce(c.hospital, '[]') || coalesce(c.death_records, '[]'),
    'bed', CASE WHEN c.bed_id IS NULL THEN NULL ELSE jsonb_build_object('code', c.bed_code, 'kind', c.bed_kind,
        'home_care', c.home_care_bed, 'occupied_nights', c.occupied_n, 'other_occupants', c.others) END,
    'person', CASE WHEN c.resident_id IS NULL THEN NULL ELSE jsonb_build_object('age_at_month_end', c.age,
        'capability', c.capability, 'hardship_register', c.hardship) END,
    'schedule', CASE WHEN c.schedule_id IS NULL THEN NULL ELSE jsonb_build_object('id', c.schedule_id,
        'region_code', c.schedule_region, 'effective_from', c.effective_from, 'rate_position', c.rate_position,
        'monthly_yuan', c.monthly_yuan) END,
    'death', CASE WHEN c.died_at IS NULL THEN NULL ELSE jsonb_build_object('died_on', c.died_on,
        'elsewhere', NOT c.died_here) END,
    'duplicate', CASE WHEN c.dup THEN jsonb_build_object('other_homes', c.other_homes,
        'lines_with_presence', c.lines_present, 'elsewhere', true) END,
    'liveness', CASE WHEN c.per_bed THEN NULL ELSE jsonb_build_object('vital_nights', c.vital_nights,
        'worn_days', c.worn_days) END
)
"""
