-- The alarms held back under a gateway's outage are looked up by the alarm that holds them: when the gateway
-- returns, and when staff close the gateway's alarm themselves (both release them). Without an index each of
-- those scanned every alarm ever raised. Few rows are held at any time, so the index is small.
-- Forward-only: a later change is a new file, never an edit of this one.

CREATE INDEX alarms_held ON alarms (held_by) WHERE held_by IS NOT NULL;
