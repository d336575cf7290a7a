-- Regular visits to elders living alone (独居老人巡访, 定期探访制度; seeds 002 lines 368 and 378): general subjects are
-- visited at least once a calendar year, key subjects at least once a calendar month (targets: 100%).
-- docs/supervision.md, "Visits to elders living alone", explains each rule; they are defined here once.

-- Who lives alone, and since which local day (Asia/Shanghai): the day the flag was set, unless given. A resident is
-- owed visits from that day on, so a period's figures do not count months before it.
ALTER TABLE residents
    ADD COLUMN lives_alone boolean NOT NULL DEFAULT false,
    ADD COLUMN lives_alone_since date,
    ADD CONSTRAINT residents_lives_alone_since CHECK (lives_alone = (lives_alone_since IS NOT NULL));

CREATE FUNCTION residents_lives_alone_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.lives_alone THEN
        NEW.lives_alone_since := NULL;
    ELSIF NEW.lives_alone_since IS NULL THEN
        NEW.lives_alone_since := (now() AT TIME ZONE 'Asia/Shanghai')::date;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER residents_lives_alone_since BEFORE INSERT OR UPDATE OF lives_alone, lives_alone_since ON residents
    FOR EACH ROW EXECUTE FUNCTION residents_lives_alone_since();

CREATE TYPE visit_mode AS ENUM ('in_person', 'phone', 'video');
CREATE TYPE visit_outcome AS ENUM ('well', 'needs_follow_up', 'not_found_home');

-- One visit (or call) by a member of the resident's home's staff. The note is health free text, encrypted in the
-- application (AES-256-GCM, bound to the column `resident_visits.note`; platform/registry/health_text.py); NULL: none.
-- It has never been stored in clear, so `eldercare db migrate` has nothing to seal in it.
CREATE TABLE resident_visits (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id bigint NOT NULL REFERENCES residents (id),
    visited_at  timestamptz NOT NULL,
    visited_by  bigint NOT NULL REFERENCES users (id),
    mode        visit_mode NOT NULL,
    outcome     visit_outcome NOT NULL,
    note_enc    bytea,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resident_visits_resident ON resident_visits (resident_id, visited_at DESC);

-- On the visit list on a day: lives alone since that day or before, and neither discharged nor deceased.
CREATE FUNCTION on_visit_list(lives_alone boolean, since date, status resident_status, on_day date)
    RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lives_alone AND since <= on_day AND status IN ('registered', 'admitted');

-- 'key' (重点对象, visited monthly) from the 80th birthday on (as registry/residents.py's age_on counts: someone born
-- on 29 February turns 80 on 1 March in a common year) or when not self-caring; otherwise 'general' (一般对象, yearly).
CREATE FUNCTION visit_kind(birth date, capability capability_level, on_day date)
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN date_part('year', age(on_day::timestamp, birth::timestamp)) >= 80
                  OR capability <> 'self_care' THEN 'key' ELSE 'general' END;

-- A visit counts towards the rates (and moves the next one's due day) when someone was met: not when nobody was home.
CREATE FUNCTION visit_counts(outcome visit_outcome)
    RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN outcome <> 'not_found_home';

-- The last local day by which the next visit is due: the end of the calendar month (key) or year (general) after the
-- last counted visit's, or the end of the month or year the resident was put on the list in, if later.
CREATE FUNCTION visit_due(kind text, since date, last_visit date)
    RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE kind
        WHEN 'key' THEN (date_trunc('month', greatest(last_visit + interval '1 month', since::timestamp))
                         + interval '1 month - 1 day')::date
        ELSE (date_trunc('year', greatest(last_visit + interval '1 year', since::timestamp))
              + interval '1 year - 1 day')::date
    END;
