-- A rule's parameters in force for every institution, and for every resident who has a row of their own, in one
-- pass: what rule_params (0004) gives for each (institution, resident) pair, for the alarm ticker's queries to join
-- instead of calling rule_params once a bed or an alarm. On a region of 20,000 beds the no-presence rule called it
-- several times a bed a tick (the planner repeats the call in each place the parameters are used) and took 0.95 s
-- of the database's CPU a tick, 0.17 s without those calls; the whole tick 1.4 s, 0.4 s with this and JIT off in the ticker
-- (bench/ticker_tick.py, docs/alerting.md).
--
-- One row (institution_id, NULL, params) per institution: the platform default's params merged with the
-- institution's row's; and one row (institution_id, resident_id, params) per resident row of the rule, merged
-- further with the resident's. params is NULL where the most specific row there disables the rule (or there is
-- no row at all). The merge is rule_params's, step for step: '{}' || the default's || the institution's || the
-- resident's, each only where its row exists, the last existing row deciding enabled. A row for a pair is the
-- resident's if it exists, else the institution's:
--     CASE WHEN own.resident_id IS NULL THEN home.params ELSE own.params END
-- with home joined on (institution_id, resident_id IS NULL) and own left-joined on (institution_id, resident_id).
CREATE FUNCTION rule_params_all(p_rule text)
RETURNS TABLE (institution_id bigint, resident_id bigint, params jsonb)
LANGUAGE sql STABLE AS $$
    WITH platform AS (
        SELECT '{}'::jsonb || r.params AS merged, r.enabled
        FROM alarm_rules r WHERE r.rule = p_rule AND r.institution_id IS NULL
    ), home AS (
        SELECT i.id AS institution_id,
               CASE WHEN own.id IS NULL THEN coalesce(p.merged, '{}') ELSE coalesce(p.merged, '{}') || own.params END
                   AS merged,
               CASE WHEN own.id IS NULL THEN coalesce(p.enabled, false) ELSE own.enabled END AS enabled
        FROM institutions i
        LEFT JOIN platform p ON true
        LEFT JOIN alarm_rules own ON own.rule = p_rule AND own.institution_id = i.id AND own.resident_id IS NULL
    )
    SELECT h.institution_id, NULL::bigint, CASE WHEN h.enabled THEN h.merged END FROM home h
    UNION ALL
    SELECT own.institution_id, own.resident_id, CASE WHEN own.enabled THEN h.merged || own.params END
    FROM alarm_rules own JOIN home h ON h.institution_id = own.institution_id
    WHERE own.rule = p_rule AND own.resident_id IS NOT NULL
$$;
