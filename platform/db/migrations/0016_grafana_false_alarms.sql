-- What the regulator dashboard needs to show false alarms (migration 0015): the per home-day counts of alarms, of
-- those closed with an outcome code and of the false alarms among those, by priority (technical alarms are left
-- out of the figures, as the API's are). Counts per home and day only: no alarm, bed, device or person, and not the
-- kind of alarm. grafana.supervision_figures keeps its columns (a new column would change its return type, which
-- CREATE OR REPLACE cannot): the panels read this view beside it, as the API reads supervision_false_alarms beside
-- supervision_figures. The view runs with its owner's rights, like the others of schema grafana (0011), so the
-- reader needs none on the table. tests/supervision/test_grafana_reader.py checks that a panel reads every column.
-- Forward-only: a later change is a new file, never an edit of this one.

CREATE VIEW grafana.supervision_alarm_daily AS
SELECT institution_id, day, priority, alarms, coded, false_alarms FROM public.supervision_alarm_daily;

CALL grafana_grant();
