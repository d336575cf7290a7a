-- Which data key the personal data here is sealed with, as a check value that reveals nothing about the key
-- (an HMAC under a sub-key of its own: platform/crypto.py, Vault.key_check). The first process that uses a key
-- records it; every process that uses one after compares it first and refuses to start on another key, which
-- would seal new data that nobody could open beside old data it cannot open (platform/db/keycheck.py).
CREATE TABLE data_key_check (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    check_value bytea NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
