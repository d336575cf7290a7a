-- Only an elder who lives in their own home can live alone. A resident of a residential home (养老机构) lives in the
-- home, among its staff: the flag `lives_alone` (0031) is refused for them, so that they are neither on a home's due
-- list nor counted in the regulators' visit coverage. Residents of community centres and home-care providers live
-- at home and may be flagged. The API (registry/residents.py) and the residents' file import (registry/imports/)
-- refuse it first, naming `body.lives_alone` or the row and column; this is the last line, and its error (SQLSTATE
-- check_violation, constraint `residents_lives_alone_at_home`) is translated to the same 422 (registry/db.py).

-- Rows that break the rule when this runs: the flag is cleared, so that the figures are right from today on; the
-- migration does not fail on them. A flag set in a residential home is most likely a mistake, but it may also be an
-- elder who does live alone at home and was registered with the wrong institution: taking them off the visit list
-- without a trace would leave them unvisited and nobody would know. So every cleared flag is kept, with its home and
-- the day it was set, in `lives_alone_cleared` (docs/supervision.md says how to go through it); their visits stay.
CREATE TABLE lives_alone_cleared (
    resident_id       bigint PRIMARY KEY REFERENCES residents (id),
    institution_id    bigint NOT NULL REFERENCES institutions (id),
    lives_alone_since date NOT NULL,
    cleared_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE lives_alone_cleared IS
    'residents of residential homes whose lives_alone flag migration 0032 cleared: check whether one lives at home';

INSERT INTO lives_alone_cleared (resident_id, institution_id, lives_alone_since)
SELECT r.id, r.institution_id, r.lives_alone_since
FROM residents r JOIN institutions i ON i.id = r.institution_id
WHERE r.lives_alone AND i.kind = 'residential_home';

UPDATE residents r SET lives_alone = false FROM lives_alone_cleared c WHERE c.resident_id = r.id AND r.lives_alone;

-- A resident flagged, or flagged and moved: the platform has no move between institutions (a transfer is to another
-- bed of the same home, and an institution's kind is fixed at registration), so a change of institution_id or of
-- kind comes only from SQL by hand. It is refused too, not cleared: whoever moves an elder living alone into a
-- residential home takes them off the visit list knowingly, by clearing the flag first.
CREATE FUNCTION residents_lives_alone_at_home() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lives_alone AND (SELECT kind FROM institutions WHERE id = NEW.institution_id) = 'residential_home' THEN
        RAISE EXCEPTION 'a resident of a residential home does not live alone (resident %)', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'residents_lives_alone_at_home',
                  TABLE = 'residents', COLUMN = 'lives_alone';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER residents_lives_alone_at_home BEFORE INSERT OR UPDATE OF lives_alone, institution_id ON residents
    FOR EACH ROW EXECUTE FUNCTION residents_lives_alone_at_home();

CREATE FUNCTION institutions_kind_lives_alone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'residential_home' AND OLD.kind <> 'residential_home'
       AND EXISTS (SELECT 1 FROM residents WHERE institution_id = NEW.id AND lives_alone) THEN
        RAISE EXCEPTION 'institution % has residents living alone: clear their flag before it becomes a residential home',
            NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'residents_lives_alone_at_home',
                  TABLE = 'institutions', COLUMN = 'kind';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER institutions_kind_lives_alone BEFORE UPDATE OF kind ON institutions
    FOR EACH ROW EXECUTE FUNCTION institutions_kind_lives_alone();
