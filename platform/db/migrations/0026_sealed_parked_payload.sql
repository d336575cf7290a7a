-- A parked message is whatever a gateway or device sent: bed samples with heart rates, a wristband's position,
-- an SOS press's place. Ingest seals its bytes with the data key (payload_enc) and leaves payload empty; the
-- operators' `eldercare ingest parked show|replay` open it. Rows an older version parked in clear are sealed by
-- `eldercare db migrate`, walking the partial index below (ingest/parked.py declares the column).
ALTER TABLE parked_messages ADD COLUMN payload_enc bytea;
ALTER TABLE parked_messages ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE parked_messages ADD CONSTRAINT parked_messages_payload CHECK (payload IS NOT NULL OR payload_enc IS NOT NULL);
CREATE INDEX parked_messages_in_clear ON parked_messages (id) WHERE payload IS NOT NULL;
