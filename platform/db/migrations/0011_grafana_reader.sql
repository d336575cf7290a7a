-- What Grafana may read: schema grafana, and nothing else.
--
-- Grafana's login used to read every table (users' password hashes, sessions, the audit log, residents'
-- encrypted names and ID numbers, family contacts, ...). Now it is a member of the role eldercare_grafana
-- (deploy/timescaledb/initdb/grafana_reader.sql.in), which is granted this schema only: one view per table
-- the dashboards' panels read, with only the columns they use, and the regulator's figures as a function.
-- The views run with their owner's rights (the application role), so the reader needs none on the tables;
-- the panels name them (grafana.beds, ...). Nothing here identifies a resident: no person codes, no
-- resident ids, no bindings of devices to people. tests/supervision/test_grafana_reader.py checks that every
-- panel runs as the reader and that every column here is used by a panel, as PostgreSQL itself records
-- what a query reads.
--
-- Grants: the role eldercare_grafana is made by the reader script, which may run before the migrations (the
-- container's first start) or after them. grafana_grant() grants the schema to it if it exists; the script
-- calls it too. A later migration that adds or replaces something here ends with CALL grafana_grant();
-- there are no default privileges.
-- Forward-only: a later change is a new file, never an edit of this one.

CREATE SCHEMA grafana;

CREATE VIEW grafana.regions AS
SELECT code, name, level FROM public.regions;

CREATE VIEW grafana.institutions AS
SELECT id, code, name, region_code FROM public.institutions;

CREATE VIEW grafana.beds AS
SELECT id, institution_id, label, kind, retired_at FROM public.beds;

-- whether a bed is taken, not by whom
CREATE VIEW grafana.bed_assignments AS
SELECT bed_id, during FROM public.bed_assignments;

CREATE VIEW grafana.devices AS
SELECT id, institution_id, code, kind FROM public.devices;

-- devices watching beds; devices worn by a person (wristbands, wearables) are left out
CREATE VIEW grafana.device_bindings AS
SELECT device_id, bed_id, during FROM public.device_bindings WHERE bed_id IS NOT NULL;

CREATE VIEW grafana.bed_readings AS
SELECT time, device_id, presence, heart_rate, resp_rate FROM public.bed_readings;

CREATE VIEW grafana.bed_hourly AS
SELECT bucket, device_id, observed_minutes, occupied_minutes, hr_count, hr_sum, hr_min, hr_max
FROM public.bed_hourly;

CREATE VIEW grafana.alarms AS
SELECT institution_id, kind, priority, state, bed_id, raised_at, published_at, held_by FROM public.alarms;

CREATE VIEW grafana.alarm_response AS
SELECT institution_id, priority, raised_at, seconds_to_acknowledge, seconds_to_attend FROM public.alarm_response;

CREATE VIEW grafana.uplink_frames AS
SELECT sent_at, received_at, lane, n_msgs FROM public.uplink_frames;

CREATE VIEW grafana.uplink_gaps AS
SELECT missing, filled_at FROM public.uplink_gaps;

CREATE VIEW grafana.device_hourly AS
SELECT bucket, messages FROM public.device_hourly;

CREATE VIEW grafana.ingest_jobs AS
SELECT job, watermark FROM public.ingest_jobs;

-- how many, of which kind and when; not the messages (topic, payload, context)
CREATE VIEW grafana.parked_messages AS
SELECT kind, received_at, replayed_at FROM public.parked_messages;

-- the queue figures of the last heartbeat, not the heartbeat; not the broker credential
CREATE VIEW grafana.gateways AS
SELECT institution_id, gateway_id, revoked_at, last_seen_at, last_status,
       (last_heartbeat -> 'queue' ->> 'alarm')::bigint AS alarm_queue,
       (last_heartbeat -> 'queue' ->> 'telemetry')::bigint AS telemetry_queue,
       (last_heartbeat ->> 'dropped')::bigint AS dropped
FROM public.gateways;

CREATE VIEW grafana.credit_scores_latest AS
SELECT institution_id, period_start, period_end, score, blacklisted FROM public.credit_scores_latest;

CREATE VIEW grafana.inspection_draws AS
SELECT id, region_code, drawn_at FROM public.inspection_draws;

CREATE VIEW grafana.inspections AS
SELECT draw_id, position, institution_id, inspected_at, outcome, summary FROM public.inspections;

-- The figures the regulator dashboard shows, from the function the API serves. It reads tables the reader may
-- not (residents' emergency contacts among them), so it runs with its owner's rights and returns only these
-- columns: counts and ratios per home and for the homes pooled. search_path is fixed for the figures'
-- unqualified names; nobody but the owner may create in public (PostgreSQL 15).
CREATE FUNCTION grafana.supervision_figures(p_institutions bigint[], p_from date, p_to date)
RETURNS TABLE (
    institution_id                      bigint,
    institution_code                    text,
    institution_name                    text,
    device_online_rate                  double precision,
    alarms                              integer,
    median_s_to_attend                  double precision,
    p90_s_to_acknowledge                double precision,
    p90_s_to_attend                     double precision,
    unacknowledged_over_5_min           integer,
    beds                                integer,
    nursing_share                       double precision,
    occupancy                           double precision,
    residents                           integer,
    residents_without_emergency_contact integer,
    night_round_coverage                double precision
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
BEGIN ATOMIC
    SELECT f.institution_id, f.institution_code, f.institution_name, f.device_online_rate, f.alarms,
           f.median_s_to_attend, f.p90_s_to_acknowledge, f.p90_s_to_attend, f.unacknowledged_over_5_min, f.beds,
           f.nursing_share, f.occupancy, f.residents, f.residents_without_emergency_contact, f.night_round_coverage
    FROM public.supervision_figures(p_institutions, p_from, p_to) f;
END;
REVOKE ALL ON FUNCTION grafana.supervision_figures(bigint[], date, date) FROM PUBLIC;

CREATE PROCEDURE grafana_grant() LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'eldercare_grafana') THEN
        GRANT USAGE ON SCHEMA grafana TO eldercare_grafana;
        GRANT SELECT ON ALL TABLES IN SCHEMA grafana TO eldercare_grafana;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA grafana TO eldercare_grafana;
    END IF;
END $$;
REVOKE ALL ON PROCEDURE grafana_grant() FROM PUBLIC;

CALL grafana_grant();
