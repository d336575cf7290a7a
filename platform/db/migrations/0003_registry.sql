-- The registry and access (issue 7): contacts, hospital stays and deaths, login throttling, rate limits,
-- the tamper-evident audit log, and one-press service applications (服务一键申请).
-- Forward-only: a later change is a new file, never an edit of this one.

ALTER TABLE institutions
    ADD COLUMN contact_name text NOT NULL DEFAULT '',
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now();

-- A bed label is unique in its room (and among the home-care beds of an institution, room NULL): the
-- natural key that makes a bulk import of beds idempotent.
CREATE UNIQUE INDEX beds_room_label ON beds (institution_id, room_id, label) NULLS NOT DISTINCT;

-- Who created a user: a head sees the family users created in the home before they are linked.
ALTER TABLE users ADD COLUMN created_by bigint REFERENCES users (id);

-- Why a stay in a bed ended: discharge, transfer (to another bed), death.
ALTER TABLE bed_assignments ADD COLUMN end_reason text
    CHECK (end_reason IN ('discharge', 'transfer', 'death'));

-- Emergency contacts and family members of a resident. Names and phones are personal data: encrypted
-- (AES-256-GCM, bound to their column); consent to be contacted and to hold their data is recorded.
CREATE TABLE resident_contacts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id  bigint NOT NULL REFERENCES residents (id),
    kind         text NOT NULL CHECK (kind IN ('emergency', 'family')),
    name_enc     bytea NOT NULL,
    phone_enc    bytea NOT NULL,
    phone_masked text NOT NULL,
    relation     text NOT NULL DEFAULT '',
    priority     smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 1 AND 9),
    consent_at   timestamptz NOT NULL,
    consent_note text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz
);
CREATE INDEX resident_contacts_resident ON resident_contacts (resident_id) WHERE removed_at IS NULL;

-- A resident in hospital keeps the bed; the stay is recorded (occupancy and subsidy checks use it).
CREATE TABLE hospital_stays (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id bigint NOT NULL REFERENCES residents (id),
    hospital    text NOT NULL CHECK (length(hospital) BETWEEN 1 AND 200),
    during      tstzrange NOT NULL CHECK (NOT isempty(during) AND lower(during) IS NOT NULL),
    note        text NOT NULL DEFAULT '',
    EXCLUDE USING gist (resident_id WITH =, during WITH &&)
);

CREATE TABLE deaths (
    resident_id bigint PRIMARY KEY REFERENCES residents (id),
    died_at     timestamptz NOT NULL,
    place       text NOT NULL DEFAULT '',
    source      text NOT NULL CHECK (source IN ('institution', 'hospital', 'funeral_data', 'family')),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by bigint REFERENCES users (id)
);

-- Failed logins per (username, client address); after a few, the pair is locked out for a time that
-- doubles with each further failure. A successful login deletes the row.
CREATE TABLE login_failures (
    username      text NOT NULL,
    client        text NOT NULL,
    failures      integer NOT NULL DEFAULT 0,
    last_failed   timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz,
    PRIMARY KEY (username, client)
);

-- Fixed-window request counters for the public endpoints.
CREATE TABLE rate_limits (
    bucket       text NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, window_start)
);

-- ---------------------------------------------------------------------------------------------------
-- Audit: who did what, when; every read of a resident's personal data and every change. Each entry
-- carries the SHA-256 of the previous entry's hash and its own content (see platform/audit/log.py), so
-- an edited or deleted row breaks the chain. Entries are appended under an advisory lock, one at a time.
CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq            bigint NOT NULL UNIQUE CHECK (seq >= 1),
    at             timestamptz NOT NULL,
    actor_user_id  bigint,
    actor          text NOT NULL,
    action         text NOT NULL,
    object_type    text NOT NULL,
    object_id      bigint,
    institution_id bigint,
    detail         jsonb NOT NULL DEFAULT '{}',
    prev_hash      bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash           bytea NOT NULL UNIQUE CHECK (length(hash) = 32)
);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);
CREATE INDEX audit_log_institution ON audit_log (institution_id, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- ---------------------------------------------------------------------------------------------------
-- One-press service application. The catalogue of what an elder may apply for, with its rules.
CREATE TABLE service_catalog (
    code         text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,40}$'),
    name         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('allowance', 'service')),
    min_age      smallint NOT NULL CHECK (min_age BETWEEN 0 AND 150),
    capabilities capability_level[],          -- NULL: any capability level
    monthly_yuan numeric(10, 2),              -- allowances: the monthly amount
    description  text NOT NULL DEFAULT ''
);

INSERT INTO service_catalog (code, name, kind, min_age, capabilities, monthly_yuan, description) VALUES
    ('old_age_allowance_80', '高龄津贴（80-89岁）', 'allowance', 80, NULL, 100, 'monthly old-age allowance from 80'),
    ('old_age_allowance_90', '高龄津贴（90-99岁）', 'allowance', 90, NULL, 200, 'monthly old-age allowance from 90'),
    ('old_age_allowance_100', '百岁老人长寿补贴', 'allowance', 100, NULL, 500, 'monthly allowance from 100'),
    ('disability_care_subsidy', '失能老人护理补贴', 'allowance', 60, '{partly_disabled,disabled}', 300,
        'care subsidy for partly disabled and disabled elders'),
    ('home_care_visit', '居家上门服务', 'service', 60, NULL, NULL, 'a provider comes to the door (cleaning, care)'),
    ('meal_assistance', '老年助餐', 'service', 60, NULL, NULL, 'meals delivered or at a community canteen');

CREATE TYPE application_status AS ENUM ('submitted', 'routed', 'accepted', 'in_service', 'completed', 'rejected');

CREATE TABLE service_applications (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tracking_code           text NOT NULL UNIQUE,
    resident_id             bigint NOT NULL REFERENCES residents (id),
    service_code            text NOT NULL REFERENCES service_catalog (code),
    region_code             text NOT NULL REFERENCES regions (code),
    provider_institution_id bigint REFERENCES institutions (id),
    status                  application_status NOT NULL DEFAULT 'submitted',
    note                    text NOT NULL DEFAULT '',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_applications_provider ON service_applications (provider_institution_id, status);
-- One open application per person and service: pressing the button twice does not apply twice.
CREATE UNIQUE INDEX service_applications_open ON service_applications (resident_id, service_code)
    WHERE status NOT IN ('completed', 'rejected');

CREATE TABLE service_application_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id bigint NOT NULL REFERENCES service_applications (id),
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    status         application_status NOT NULL,
    note           text NOT NULL DEFAULT '',
    user_id        bigint REFERENCES users (id)
);
CREATE INDEX service_application_events_app ON service_application_events (application_id, at);
