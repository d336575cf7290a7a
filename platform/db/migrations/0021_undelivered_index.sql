-- The notifications that reached nobody (GET /api/v1/me/notifications/undelivered), which every open staff board
-- reads every 30 s: those given up, or still being retried, of the last days. The index holds only those rows, so
-- the read no longer scans every notification ever sent; sent and suppressed rows, the great majority, are not in it.
-- Forward-only: a later change is a new file, never an edit of this one.

CREATE INDEX notifications_undelivered ON notifications (created_at) WHERE state IN ('failed', 'pending', 'sending');
