-- Ingest hears at once when what it caches of the registry changes.
--
-- Ingest caches gateways and devices by their wire codes (ingest/registry.py). A gateway revoked, or a device
-- retired, while cached used to be stored until the ingest process restarted. Now a change that can take back what
-- ingest cached sends `NOTIFY ingest_registry` with the cache key it changed; every ingest process LISTENs
-- (ingest/watch.py) and drops that key before its next batch. PostgreSQL delivers a notification when the changing
-- transaction commits, and only then, so ingest never reads the registry again before the change is visible. The
-- payload names the key both before and after the change (a device moved or re-coded drops its old key, and the
-- new one from the negative cache):
--
--   g <institution code> <gateway id>    a gateway revoked or re-admitted, its credentials changed, renamed or moved
--   d <institution id> <device code>     a device retired or brought back, re-coded or moved
--   *                                    an institution's code changed (the API never does it): everything
--
-- The triggers fire on those columns only: ingest's own updates of a gateway's liveness (last_seen_at, status)
-- set none of them and pay nothing. No row is locked for the notification (a generation counter row would be
-- held by each revoking transaction until it commits, for as long as the broker takes to confirm, and would
-- queue every other change behind it); the same key notified twice in one transaction is delivered once.
-- Registering a gateway or a device notifies nothing: an unknown code is asked again after ingest's
-- UNKNOWN_RETRY_S.
--
-- Forward-only: a later change is a new file, never an edit of this one.

CREATE FUNCTION ingest_registry_gateway_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingest_registry', 'g ' || i.code || ' ' || OLD.gateway_id)
    FROM institutions i WHERE i.id = OLD.institution_id;
    IF TG_OP = 'UPDATE' AND (NEW.institution_id, NEW.gateway_id) IS DISTINCT FROM (OLD.institution_id, OLD.gateway_id)
    THEN
        PERFORM pg_notify('ingest_registry', 'g ' || i.code || ' ' || NEW.gateway_id)
        FROM institutions i WHERE i.id = NEW.institution_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER gateways_ingest_registry AFTER UPDATE OF revoked_at, password_hash, institution_id, gateway_id
    ON gateways FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.password_hash IS DISTINCT FROM NEW.password_hash
          OR OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.gateway_id IS DISTINCT FROM NEW.gateway_id)
    EXECUTE FUNCTION ingest_registry_gateway_changed();
CREATE TRIGGER gateways_ingest_registry_delete AFTER DELETE ON gateways
    FOR EACH ROW EXECUTE FUNCTION ingest_registry_gateway_changed();

CREATE FUNCTION ingest_registry_device_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingest_registry', 'd ' || OLD.institution_id || ' ' || OLD.code);
    IF TG_OP = 'UPDATE' AND (NEW.institution_id, NEW.code) IS DISTINCT FROM (OLD.institution_id, OLD.code) THEN
        PERFORM pg_notify('ingest_registry', 'd ' || NEW.institution_id || ' ' || NEW.code);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER devices_ingest_registry AFTER UPDATE OF retired_at, code, institution_id ON devices FOR EACH ROW
    WHEN (OLD.retired_at IS DISTINCT FROM NEW.retired_at OR OLD.code IS DISTINCT FROM NEW.code
          OR OLD.institution_id IS DISTINCT FROM NEW.institution_id)
    EXECUTE FUNCTION ingest_registry_device_changed();
CREATE TRIGGER devices_ingest_registry_delete AFTER DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION ingest_registry_device_changed();

CREATE FUNCTION ingest_registry_institution_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingest_registry', '*');
    RETURN NULL;
END $$;

CREATE TRIGGER institutions_ingest_registry AFTER UPDATE OF code ON institutions FOR EACH ROW
    WHEN (OLD.code IS DISTINCT FROM NEW.code)
    EXECUTE FUNCTION ingest_registry_institution_changed();
