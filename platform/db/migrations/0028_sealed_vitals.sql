-- Heart and breathing rates are health data: ingest stores a bed reading's rates sealed (vitals_enc: one AES block
-- bound to the row's time and device, platform/crypto.py VitalsSealer), no longer in heart_rate / resp_rate; the
-- roll-ups keep their counts in clear (how many readings had a rate says nothing of the rate) and their minimum,
-- maximum and sum sealed (vitals_enc, AES-256-GCM bound to the row). Rows an older version wrote in clear are sealed
-- by `eldercare db migrate` (platform/db/vitals.py), which walks the partial indexes below; once it has, they are
-- empty. What reads the rates (the web's vitals chart, the ticker's vital-range rule, the roll-up job) opens them in
-- Python, and the web's reads are audited. Grafana reads the database directly and cannot open them, nor audit a
-- read: its views lose the rates (its home dashboard keeps presence and occupancy).
-- Forward-only: a later change is a new file, never an edit of this one.
ALTER TABLE bed_readings ADD COLUMN vitals_enc bytea;
CREATE INDEX bed_readings_vitals_in_clear ON bed_readings (time) WHERE heart_rate IS NOT NULL OR resp_rate IS NOT NULL;

ALTER TABLE bed_hourly DROP COLUMN hr_avg, DROP COLUMN rr_avg, ADD COLUMN vitals_enc bytea;
CREATE INDEX bed_hourly_vitals_in_clear ON bed_hourly (bucket) WHERE hr_sum IS NOT NULL OR rr_sum IS NOT NULL;
ALTER TABLE bed_daily DROP COLUMN hr_avg, DROP COLUMN rr_avg, ADD COLUMN vitals_enc bytea;
CREATE INDEX bed_daily_vitals_in_clear ON bed_daily (day) WHERE hr_sum IS NOT NULL OR rr_sum IS NOT NULL;

DROP VIEW grafana.bed_readings;
CREATE VIEW grafana.bed_readings AS
SELECT time, device_id, presence FROM public.bed_readings;

DROP VIEW grafana.bed_hourly;
CREATE VIEW grafana.bed_hourly AS
SELECT bucket, device_id, observed_minutes, occupied_minutes FROM public.bed_hourly;

CALL grafana_grant();
