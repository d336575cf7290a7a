-- How far `eldercare db migrate` has looked for the outcome codes of alarms closed without one (0015 left every
-- alarm closed before it at NULL: its outcome text is sealed and SQL cannot read it). The migrate reads the outcome
-- each was closed with, in the application, and gives it the code that text reliably tells
-- (platform/db/outcomes.py); the rest stay NULL, not known. Every closed alarm without a code and with an id up to
-- through_id has been looked at: a later migrate starts after it, so it does not decrypt the same texts again.
-- One row. Forward-only: a later change is a new file, never an edit of this one.

CREATE TABLE alarm_outcome_backfill (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    through_id bigint NOT NULL
);

INSERT INTO alarm_outcome_backfill (through_id) VALUES (0);
