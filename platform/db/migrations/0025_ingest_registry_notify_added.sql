-- Ingest hears at once when a gateway or a device is registered, not only when one is taken back (0022).
--
-- Ingest caches a code it asked for and did not find (an unknown gateway or device) for UNKNOWN_RETRY_S (5 s), so
-- that messages from an unknown code cost no query each. A code registered a moment after it was asked for stayed
-- unknown for that long: a button pressed right after the device was registered had its press quarantined, not
-- raised, until an operator replayed it. Now registering notifies the key, as 0022's changes do, and every ingest
-- process drops it from its negative cache before its next batch:
--
--   g <institution code> <gateway id>    a gateway registered
--   d <institution id> <device code>     a device registered
--
-- Statement-level triggers: an import that registers many devices in one statement runs the trigger once (the
-- notifications are still one per row; the same key twice in a transaction is delivered once). Re-admitting a
-- gateway (new credentials) and bringing a retired device back are UPDATEs that 0022 notifies already.
--
-- Forward-only: a later change is a new file, never an edit of this one.

CREATE FUNCTION ingest_registry_gateways_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingest_registry', 'g ' || i.code || ' ' || a.gateway_id)
    FROM added a JOIN institutions i ON i.id = a.institution_id;
    RETURN NULL;
END $$;

CREATE TRIGGER gateways_ingest_registry_insert AFTER INSERT ON gateways REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_registry_gateways_added();

CREATE FUNCTION ingest_registry_devices_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingest_registry', 'd ' || a.institution_id || ' ' || a.code) FROM added a;
    RETURN NULL;
END $$;

CREATE TRIGGER devices_ingest_registry_insert AFTER INSERT ON devices REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_registry_devices_added();
