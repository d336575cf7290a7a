-- A person's position is personal data: a wristband's fixes (locations) and an SOS press's place (the sos
-- events' detail) are stored sealed by ingest (AES-256-GCM with the data key, as names are) in position_enc,
-- no longer as lat / lon in clear. Rows an older version wrote in clear are sealed by `eldercare db migrate`
-- (platform/db/positions.py), which walks the partial indexes below; once it has, they are empty.
ALTER TABLE locations ADD COLUMN position_enc bytea;
ALTER TABLE locations ALTER COLUMN lat DROP NOT NULL;
ALTER TABLE locations ALTER COLUMN lon DROP NOT NULL;
ALTER TABLE locations ADD CONSTRAINT locations_position
    CHECK ((lat IS NULL) = (lon IS NULL) AND (lat IS NOT NULL OR position_enc IS NOT NULL));
CREATE INDEX locations_in_clear ON locations (time) WHERE lat IS NOT NULL;

ALTER TABLE device_events ADD COLUMN position_enc bytea;
CREATE INDEX device_events_position_in_clear ON device_events (time) WHERE detail ? 'lat';

-- The inbox is a queue: an sos event waiting in it from before is read as it was (the engine reads both).
ALTER TABLE alarm_inbox ADD COLUMN position_enc bytea;
