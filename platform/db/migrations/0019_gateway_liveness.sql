-- A gateway's liveness is when the platform heard from it, not what its clock says.
--
-- `last_seen_at` is now the database's time when ingest stored the gateway's latest sign of life (a birth, a
-- heartbeat, a clean goodbye), so the alarm ticker, which compares it with now(), no longer takes a gateway
-- whose clock runs slow for offline, nor misses the silence of one whose clock runs fast. The gateway's own
-- times still order its statuses, and are kept for that here (see ingest/store.py, `BatchStore._status`):
--
--   status_sent_at       the gateway's time (`ts`) of the status `last_status` holds
--   birth_sent_at        the gateway's time of its latest birth (the greatest seen)
--   prior_birth_sent_at  the greatest birth time below it: a last will registered no later than this belongs to
--                        a connection the gateway has since replaced, and is ignored
--
-- Forward-only: a later change is a new file, never an edit of this one.

ALTER TABLE gateways
    ADD COLUMN status_sent_at      timestamptz,
    ADD COLUMN birth_sent_at       timestamptz,
    ADD COLUMN prior_birth_sent_at timestamptz;

-- What the gateway's own clock put in the future (a fast clock, one bad `ts`) is brought back to now, so that
-- the gateway's silence is noticed from now on rather than when real time catches up.
UPDATE gateways SET last_seen_at = now() WHERE last_seen_at > now();
