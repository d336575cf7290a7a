-- A rotation of the data key (platform/db/keycheck.py, platform/db/rekey.py): while one is under way, the key being
-- replaced is recorded beside the new one, as its check value, until `eldercare db rekey` has re-sealed everything
-- it sealed. A process that starts with the new key must then hold the old one as its previous key
-- (ELDERCARE_DATA_KEY_PREVIOUS); one still on the old key is refused. NULL: no rotation under way.
ALTER TABLE data_key_check
    ADD COLUMN retiring_check bytea CHECK (retiring_check IS DISTINCT FROM check_value),
    ADD COLUMN rotation_started_at timestamptz,
    ADD CONSTRAINT data_key_check_rotation CHECK ((retiring_check IS NULL) = (rotation_started_at IS NULL));
