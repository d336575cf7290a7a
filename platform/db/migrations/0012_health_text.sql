-- Health free text encrypted at rest: the hospital of a stay, its note and the place of a death are personal data
-- like the ID number (AES-256-GCM in the application, bound to their column; platform/registry/health_text.py).
--
-- The data key lives only in the application, so this file cannot encrypt the rows written in clear before it. It
-- adds the encrypted columns (NULL: no text) and lets the old ones be empty; `eldercare db migrate` then encrypts
-- what is in clear and empties the old columns, in the same run, right after the SQL migrations. The old columns
-- stay (always empty) until every writer has moved to the new ones; the partial indexes let each migrate find
-- what is left in clear without reading the tables.

ALTER TABLE hospital_stays
    ADD COLUMN hospital_enc bytea,
    ADD COLUMN note_enc bytea,
    ALTER COLUMN hospital SET DEFAULT '',
    DROP CONSTRAINT hospital_stays_hospital_check;

ALTER TABLE deaths ADD COLUMN place_enc bytea;

CREATE INDEX hospital_stays_in_clear ON hospital_stays (id) WHERE hospital <> '' OR note <> '';
CREATE INDEX deaths_in_clear ON deaths (resident_id) WHERE place <> '';
