-- A call for help (button, SOS), a fall and danger in the room (smoke, gas, water) always raise an alarm: their
-- rules can no longer be switched off, for a home or for a resident. Before, a head could disable them, and the
-- engine then deleted such events from its inbox without an alarm. Their priority and repeat window may still be
-- changed (a resident's presses as urgent rather than emergency). The rules API refuses it with a 422 on
-- `body.enabled` (platform/alarms/rules_router.py, ALWAYS_ON); this check holds the line for any other writer.
-- Rows that had switched them off are switched on again, keeping their parameters.
-- Forward-only: a later change is a new file, never an edit of this one.

UPDATE alarm_rules SET enabled = true, updated_at = now()
WHERE rule IN ('button', 'sos', 'fall', 'environment') AND NOT enabled;

ALTER TABLE alarm_rules ADD CONSTRAINT alarm_rules_calls_always_on
    CHECK (enabled OR rule NOT IN ('button', 'sos', 'fall', 'environment'));
