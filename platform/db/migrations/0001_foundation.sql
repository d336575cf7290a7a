-- Foundation schema: regions, the registry (institutions, places, beds, residents, devices, gateways,
-- users), telemetry hypertables, the parking lot for bad messages, alarms.
-- Forward-only: a later change is a new file, never an edit of this one.

CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Administrative divisions (GB/T 2260 and the township extension). A region contains every code that
-- starts with its own: a regulator of 4205 sees 420502 and 420502001.
CREATE TABLE regions (
    code        text PRIMARY KEY CHECK (code ~ '^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})$'),
    name        text NOT NULL,
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    parent_code text REFERENCES regions (code),
    CHECK ((level = 1) = (parent_code IS NULL))
);
CREATE INDEX regions_parent ON regions (parent_code);

CREATE TYPE institution_kind AS ENUM ('residential_home', 'community_centre', 'home_care_provider');

CREATE TABLE institutions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL UNIQUE CHECK (code ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'),  -- unified social credit code
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind          institution_kind NOT NULL,
    region_code   text NOT NULL REFERENCES regions (code),
    address       text NOT NULL DEFAULT '',
    lon           double precision CHECK (lon BETWEEN -180 AND 180),  -- WGS-84
    lat           double precision CHECK (lat BETWEEN -90 AND 90),
    star_grade    smallint CHECK (star_grade BETWEEN 0 AND 5),
    capacity      integer CHECK (capacity >= 0),
    price_min     numeric(10, 2) CHECK (price_min >= 0),
    price_max     numeric(10, 2) CHECK (price_max >= price_min),
    services      text[] NOT NULL DEFAULT '{}',
    contact_phone text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((lon IS NULL) = (lat IS NULL))
);
CREATE INDEX institutions_region ON institutions (region_code text_pattern_ops);

CREATE TABLE buildings (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    name           text NOT NULL,
    UNIQUE (institution_id, name)
);

CREATE TABLE floors (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    building_id bigint NOT NULL REFERENCES buildings (id),
    name        text NOT NULL,
    level       smallint NOT NULL DEFAULT 1,
    UNIQUE (building_id, name)
);

CREATE TABLE rooms (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    floor_id bigint NOT NULL REFERENCES floors (id),
    name     text NOT NULL,
    UNIQUE (floor_id, name)
);

CREATE TYPE bed_kind AS ENUM ('nursing', 'ordinary');

-- A bed in a room of a home, or a home-care bed (家庭养老床位) in an elder's own home (room_id NULL),
-- served by the institution (a home-care provider).
CREATE TABLE beds (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    room_id        bigint REFERENCES rooms (id),
    code           text NOT NULL UNIQUE CHECK (code ~ '^B[0-9A-Z]{10}$'),  -- 一床一码, see devices/codes.py
    label          text NOT NULL DEFAULT '',
    kind           bed_kind NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz
);
CREATE INDEX beds_institution ON beds (institution_id);
CREATE INDEX beds_room ON beds (room_id);

CREATE TYPE capability_level AS ENUM ('self_care', 'partly_disabled', 'disabled');
CREATE TYPE risk_level AS ENUM ('low', 'medium', 'high');
CREATE TYPE resident_status AS ENUM ('registered', 'admitted', 'discharged', 'deceased');

-- Personal data is encrypted at rest (AES-256-GCM, key from settings, see platform/crypto.py); the ID
-- number is found by a keyed hash. The person code (一人一码) is opaque.
CREATE TABLE residents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id   bigint NOT NULL REFERENCES institutions (id),
    person_code      text NOT NULL UNIQUE CHECK (person_code ~ '^P[0-9A-Z]{10}$'),
    name_enc         bytea NOT NULL,
    id_number_enc    bytea NOT NULL,
    id_number_hash   bytea NOT NULL CHECK (length(id_number_hash) = 32),
    id_number_masked text NOT NULL CHECK (id_number_masked ~ '^[0-9]{6}\*{8}[0-9]{3}[0-9X]$'),
    birth_date       date NOT NULL,
    sex              text NOT NULL CHECK (sex IN ('male', 'female')),
    capability       capability_level NOT NULL DEFAULT 'self_care',
    fall_risk        risk_level NOT NULL DEFAULT 'low',
    wander_risk      boolean NOT NULL DEFAULT false,
    heart_rate_min   real NOT NULL DEFAULT 50,
    heart_rate_max   real NOT NULL DEFAULT 110,
    resp_rate_min    real NOT NULL DEFAULT 10,
    resp_rate_max    real NOT NULL DEFAULT 25,
    status           resident_status NOT NULL DEFAULT 'registered',
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (institution_id, id_number_hash),
    CHECK (heart_rate_min < heart_rate_max AND resp_rate_min < resp_rate_max)
);
CREATE INDEX residents_institution ON residents (institution_id);
CREATE INDEX residents_id_hash ON residents (id_number_hash);

-- Who was in which bed when. The database refuses a bed with two residents or a resident in two beds.
CREATE TABLE bed_assignments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bed_id      bigint NOT NULL REFERENCES beds (id),
    resident_id bigint NOT NULL REFERENCES residents (id),
    during      tstzrange NOT NULL CHECK (NOT isempty(during) AND lower(during) IS NOT NULL),
    EXCLUDE USING gist (bed_id WITH =, during WITH &&),
    EXCLUDE USING gist (resident_id WITH =, during WITH &&)
);

CREATE TYPE device_kind AS ENUM (
    'bed_sensor', 'button', 'fall_radar', 'wearable', 'wristband', 'smoke', 'gas', 'water'
);

CREATE TABLE devices (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    code           text NOT NULL CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$'),  -- "dev" on the wire
    kind           device_kind NOT NULL,
    vendor         text NOT NULL DEFAULT '',
    model          text NOT NULL DEFAULT '',
    heartbeat_s    integer NOT NULL DEFAULT 60 CHECK (heartbeat_s > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    UNIQUE (institution_id, code)
);

-- A device watches a bed (bed sensor, radar, button) or is worn by a resident (wristband, wearable).
CREATE TABLE device_bindings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   bigint NOT NULL REFERENCES devices (id),
    bed_id      bigint REFERENCES beds (id),
    resident_id bigint REFERENCES residents (id),
    during      tstzrange NOT NULL CHECK (NOT isempty(during) AND lower(during) IS NOT NULL),
    CHECK (bed_id IS NOT NULL OR resident_id IS NOT NULL),
    EXCLUDE USING gist (device_id WITH =, during WITH &&)
);

CREATE TABLE gateways (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id  bigint NOT NULL REFERENCES institutions (id),
    gateway_id      text NOT NULL UNIQUE CHECK (gateway_id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    name            text NOT NULL DEFAULT '',
    password_hash   text,            -- broker credential (mosquitto PBKDF2 form); NULL when none issued
    issued_at       timestamptz,
    revoked_at      timestamptz,
    last_seen_at    timestamptz,
    last_status     text,            -- birth, heartbeat, death
    last_heartbeat  jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE user_role AS ENUM ('staff', 'head', 'family', 'regulator', 'admin');

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9._@-]{3,64}$'),
    password_hash  text NOT NULL,    -- argon2id
    role           user_role NOT NULL,
    institution_id bigint REFERENCES institutions (id),
    region_code    text REFERENCES regions (code),
    display_name   text NOT NULL DEFAULT '',
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((role IN ('staff', 'head')) = (institution_id IS NOT NULL)),
    CHECK ((role = 'regulator') = (region_code IS NOT NULL))
);

-- A family user sees only the residents linked here.
CREATE TABLE family_links (
    user_id     bigint NOT NULL REFERENCES users (id),
    resident_id bigint NOT NULL REFERENCES residents (id),
    relation    text NOT NULL DEFAULT '',
    consent_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, resident_id)
);

-- Opaque bearer tokens; only their SHA-256 is stored.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- ---------------------------------------------------------------------------------------------------
-- Telemetry. Every uplink frame is recorded once per (gateway, epoch, seq): a redelivered frame finds
-- its key taken and its rows are not written again (the same transaction writes both).
CREATE TABLE uplink_frames (
    sent_at     timestamptz NOT NULL,
    gateway_pk  bigint NOT NULL,
    epoch       bigint NOT NULL,
    seq         bigint NOT NULL,
    lane        text NOT NULL CHECK (lane IN ('alarm', 'telemetry')),
    n_msgs      integer NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway_pk, epoch, seq, sent_at)
);
SELECT create_hypertable('uplink_frames', by_range('sent_at', INTERVAL '1 day'));

CREATE TABLE bed_readings (
    time       timestamptz NOT NULL,
    device_id  bigint NOT NULL,
    presence   boolean NOT NULL,
    heart_rate real,
    resp_rate  real,
    movement   real
);
SELECT create_hypertable('bed_readings', by_range('time', INTERVAL '1 day'));
CREATE INDEX bed_readings_device_time ON bed_readings (device_id, time DESC);

-- Scalar readings of other devices: battery %, smoke %, gas %LEL, water 0/1.
CREATE TABLE device_readings (
    time      timestamptz NOT NULL,
    device_id bigint NOT NULL,
    metric    text NOT NULL,
    value     real NOT NULL
);
SELECT create_hypertable('device_readings', by_range('time', INTERVAL '1 day'));
CREATE INDEX device_readings_device_time ON device_readings (device_id, metric, time DESC);

CREATE TABLE locations (
    time      timestamptz NOT NULL,
    device_id bigint NOT NULL,
    lat       double precision NOT NULL,
    lon       double precision NOT NULL,
    accuracy  real
);
SELECT create_hypertable('locations', by_range('time', INTERVAL '1 day'));
CREATE INDEX locations_device_time ON locations (device_id, time DESC);

CREATE TABLE accel_chunks (
    time      timestamptz NOT NULL,
    device_id bigint NOT NULL,
    hz        smallint NOT NULL,
    samples   smallint[] NOT NULL  -- x, y, z interleaved, 1/256 g
);
SELECT create_hypertable('accel_chunks', by_range('time', INTERVAL '1 day'));
CREATE INDEX accel_chunks_device_time ON accel_chunks (device_id, time DESC);

-- Alarm-class device messages: button, fall, sos, bed_exit, env_alarm, fault.
CREATE TABLE device_events (
    time        timestamptz NOT NULL,
    device_id   bigint NOT NULL,
    gateway_pk  bigint NOT NULL,
    kind        text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('device_events', by_range('time', INTERVAL '7 days'));
CREATE INDEX device_events_device_time ON device_events (device_id, time DESC);
CREATE INDEX device_events_kind_time ON device_events (kind, time DESC);

-- Events handed from ingest to alerting, written in the same transaction as device_events. Alerting
-- takes them with FOR UPDATE SKIP LOCKED and deletes them in the transaction that raises the alarm.
CREATE TABLE alarm_inbox (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_time     timestamptz NOT NULL,
    device_id      bigint NOT NULL,
    institution_id bigint NOT NULL,
    kind           text NOT NULL,
    detail         jsonb NOT NULL DEFAULT '{}',
    published_at   timestamptz,   -- when the gateway sent the frame, for latency figures
    enqueued_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Messages that could not be stored: dead letters (malformed) and quarantine (well-formed but naming an
-- unknown gateway, device or bed). Raw bytes kept so an operator can inspect and replay them.
CREATE TYPE parked_kind AS ENUM ('dead_letter', 'quarantine');

CREATE TABLE parked_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        parked_kind NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    institution text,
    gateway     text,
    context     jsonb NOT NULL DEFAULT '{}',  -- for one message of a frame: the frame's epoch, seq, sent, index
    replayed_at timestamptz
);
CREATE INDEX parked_messages_open ON parked_messages (received_at) WHERE replayed_at IS NULL;

-- ---------------------------------------------------------------------------------------------------
-- Alarms: one per happening; repeats within a window are counted into the open alarm.
CREATE TYPE alarm_priority AS ENUM ('emergency', 'urgent', 'routine', 'technical');
CREATE TYPE alarm_state AS ENUM ('raised', 'acknowledged', 'attending', 'resolved', 'cancelled');

CREATE TABLE alarms (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id  bigint NOT NULL REFERENCES institutions (id),
    kind            text NOT NULL,
    priority        alarm_priority NOT NULL,
    state           alarm_state NOT NULL DEFAULT 'raised',
    device_id       bigint REFERENCES devices (id),
    bed_id          bigint REFERENCES beds (id),
    resident_id     bigint REFERENCES residents (id),
    gateway_pk      bigint REFERENCES gateways (id),
    occurred_at     timestamptz NOT NULL,            -- the device's time of the happening
    raised_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at    timestamptz,                     -- when the gateway sent it
    acknowledged_at timestamptz,
    attending_at    timestamptz,
    closed_at       timestamptz,
    outcome         text,
    repeat_count    integer NOT NULL DEFAULT 1,
    last_event_at   timestamptz NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarms_institution_open ON alarms (institution_id, raised_at DESC)
    WHERE state IN ('raised', 'acknowledged', 'attending');
CREATE INDEX alarms_institution_time ON alarms (institution_id, raised_at DESC);
CREATE INDEX alarms_device_open ON alarms (device_id, kind) WHERE state IN ('raised', 'acknowledged', 'attending');

CREATE TABLE alarm_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id   bigint NOT NULL REFERENCES alarms (id),
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_id    bigint REFERENCES users (id),
    actor      text NOT NULL,                        -- 'system', 'device', or the user's name
    from_state alarm_state,
    to_state   alarm_state NOT NULL,
    note       text NOT NULL DEFAULT ''
);
CREATE INDEX alarm_changes_alarm ON alarm_changes (alarm_id, at);
