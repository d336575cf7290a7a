-- The note given at a discharge ("back home with the family", "moved to a hospital's rehabilitation ward") is health
-- free text, like a hospital stay's note (0012): it is kept on the bed stay it ended, encrypted in the application
-- (AES-256-GCM, bound to the column `bed_assignments.end_note`; platform/registry/health_text.py). NULL: no note.
--
-- Before this migration the note was kept only in the audit log's detail, in clear. Those entries stay as they are:
-- the log is a hash chain, and rewriting an entry would break it. The column is new and has never held text in clear,
-- so `eldercare db migrate` has nothing to seal in it.

ALTER TABLE bed_assignments ADD COLUMN end_note_enc bytea
    CONSTRAINT bed_assignments_end_note_ended CHECK (end_note_enc IS NULL OR end_reason IS NOT NULL);
