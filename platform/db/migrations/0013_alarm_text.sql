-- Alarm text encrypted at rest: an alarm's detail (a fall's source, a heart rate out of range, a wanderer's position),
-- its outcome (what staff found: "fell, bruised knee, doctor called") and the note of each change are health data
-- like the hospital of a stay (AES-256-GCM in the application, bound to their column; platform/alarms/text.py).
--
-- As in 0012, this file cannot encrypt the rows written in clear before it: it adds the encrypted columns (NULL: no
-- text) and `eldercare db migrate` encrypts what is in clear and empties the old columns (detail '{}', outcome NULL,
-- note ''), in the same run, right after the SQL migrations. The old columns stay, always empty, until every writer
-- has moved to the new ones; the partial indexes let each migrate find what is left in clear without reading the
-- tables. Nothing in SQL reads the text (the figures, the roll-ups and the Grafana views use kinds, states and
-- times), so nothing here needs it in clear.

ALTER TABLE alarms
    ADD COLUMN detail_enc bytea,    -- the detail as JSON text
    ADD COLUMN outcome_enc bytea;

ALTER TABLE alarm_changes ADD COLUMN note_enc bytea;

CREATE INDEX alarms_in_clear ON alarms (id) WHERE detail <> '{}' OR outcome IS NOT NULL;
CREATE INDEX alarm_changes_in_clear ON alarm_changes (id) WHERE note <> '';
