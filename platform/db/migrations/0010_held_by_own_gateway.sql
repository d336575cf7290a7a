-- A device's fault is held back only while the gateway that delivered it is offline, not while any gateway
-- of the same home is: the inbox row and the alarm now carry that gateway. Rows written before this
-- migration have none, and are never held back.
ALTER TABLE alarm_inbox ADD COLUMN gateway_pk bigint;

-- The escalation rule learns how long an acknowledged alarm may wait for someone to be at the bedside before
-- it escalates again (acknowledging is "I have seen it", not "I am there").
UPDATE alarm_rules SET params = params || '{"attend_timeout_s": 300}'
WHERE rule = 'escalation' AND NOT params ? 'attend_timeout_s' AND institution_id IS NULL AND resident_id IS NULL;
