-- Ingest (issue 4): exactly once per (gateway, epoch, seq), sequence gaps, ingest members for session
-- adoption, and the hourly and daily roll-ups with their bookkeeping.
-- Forward-only: a later change is a new file, never an edit of this one.

-- ---------------------------------------------------------------------------------------------------
-- Frame keys. 0001 made uplink_frames a hypertable on sent_at, so its unique key had to include sent_at:
-- a frame resent with another `sent` (a gateway that stamps the time of the last send, or that reuses an
-- (epoch, seq)) was stored twice. The contract promises one frame per (gateway, epoch, seq), first copy
-- wins, so the key is now exactly that, in an ordinary table. Old rows are pruned by the retention job
-- (`eldercare ingest maintain`) after the dedupe window, by received_at.
ALTER TABLE uplink_frames RENAME TO uplink_frames_0001;

CREATE TABLE uplink_frames (
    sent_at     timestamptz NOT NULL,
    gateway_pk  bigint NOT NULL,
    epoch       bigint NOT NULL,
    seq         bigint NOT NULL,
    lane        text NOT NULL CHECK (lane IN ('alarm', 'telemetry')),
    n_msgs      integer NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_pk, epoch, seq)
);
CREATE INDEX uplink_frames_received ON uplink_frames (received_at);

INSERT INTO uplink_frames (sent_at, gateway_pk, epoch, seq, lane, n_msgs, received_at)
SELECT DISTINCT ON (gateway_pk, epoch, seq) sent_at, gateway_pk, epoch, seq, lane, n_msgs, received_at
FROM uplink_frames_0001 ORDER BY gateway_pk, epoch, seq, received_at;
DROP TABLE uplink_frames_0001;

-- ---------------------------------------------------------------------------------------------------
-- Sequence gaps. `seq` is one counter per gateway and epoch shared by both lanes, and frames arrive out of
-- order (the alarm lane overtakes telemetry, replays follow live traffic), so gaps are found by a periodic
-- scan of uplink_frames, not per message: a seq is missing once a higher one of the same stream has been
-- stored for longer than the grace period. A late frame fills its gap; a gap with nothing missing any
-- more is closed (filled_at), not deleted.
CREATE TABLE uplink_streams (
    gateway_pk  bigint NOT NULL,
    epoch       bigint NOT NULL,
    checked_seq bigint NOT NULL,          -- every seq up to here has been checked
    checked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_pk, epoch)
);

CREATE TABLE uplink_gaps (
    gateway_pk  bigint NOT NULL,
    epoch       bigint NOT NULL,
    first_seq   bigint NOT NULL,
    last_seq    bigint NOT NULL CHECK (last_seq >= first_seq),
    missing     bigint NOT NULL CHECK (missing >= 0),   -- frames of the range still not stored
    detected_at timestamptz NOT NULL DEFAULT now(),
    filled_at   timestamptz,                            -- when the last missing frame arrived
    PRIMARY KEY (gateway_pk, epoch, first_seq)
);
CREATE INDEX uplink_gaps_open ON uplink_gaps (gateway_pk, epoch) WHERE filled_at IS NULL;

CREATE VIEW uplink_gaps_view AS
SELECT i.code AS institution_code, g.gateway_id, u.epoch, u.first_seq, u.last_seq,
       u.last_seq - u.first_seq + 1 AS frames, u.missing, u.detected_at, u.filled_at
FROM uplink_gaps u JOIN gateways g ON g.id = u.gateway_pk JOIN institutions i ON i.id = g.institution_id;

-- ---------------------------------------------------------------------------------------------------
-- Ingest members: one per lane of each `eldercare ingest` process (its MQTT client id). A living
-- process holds the advisory lock (0x696E67, id) on its rows; when it dies, another adopts and drains its
-- MQTT session (see ingest/adopt.py).
CREATE TABLE ingest_members (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id       text NOT NULL UNIQUE,
    grp             text NOT NULL,
    lane            text NOT NULL CHECK (lane IN ('alarm', 'telemetry')),
    name            text NOT NULL,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    last_started_at timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------------
-- Roll-ups, in ordinary tables (the Apache edition of TimescaleDB has no continuous aggregates). Hours
-- are UTC hours; days are calendar days in the roll-up time zone (Asia/Shanghai by default), built from
-- the hours, so the zone must be a whole number of hours from UTC. A "minute" is a calendar minute of
-- the device's time; decomposable, so a day is the sum of its hours exactly.
CREATE TABLE bed_hourly (
    bucket           timestamptz NOT NULL,
    device_id        bigint NOT NULL,
    samples          integer NOT NULL,
    observed_minutes smallint NOT NULL,   -- minutes with at least one sample
    occupied_minutes smallint NOT NULL,   -- minutes with at least one sample showing presence
    hr_count         integer NOT NULL,
    hr_min           real,
    hr_max           real,
    hr_sum           double precision,
    rr_count         integer NOT NULL,
    rr_min           real,
    rr_max           real,
    rr_sum           double precision,
    hr_avg           double precision GENERATED ALWAYS AS (hr_sum / NULLIF(hr_count, 0)) STORED,
    rr_avg           double precision GENERATED ALWAYS AS (rr_sum / NULLIF(rr_count, 0)) STORED,
    PRIMARY KEY (device_id, bucket)
);
CREATE INDEX bed_hourly_bucket ON bed_hourly (bucket);

CREATE TABLE bed_daily (
    day              date NOT NULL,
    device_id        bigint NOT NULL,
    samples          bigint NOT NULL,
    observed_minutes integer NOT NULL,
    occupied_minutes integer NOT NULL,
    hr_count         bigint NOT NULL,
    hr_min           real,
    hr_max           real,
    hr_sum           double precision,
    rr_count         bigint NOT NULL,
    rr_min           real,
    rr_max           real,
    rr_sum           double precision,
    hr_avg           double precision GENERATED ALWAYS AS (hr_sum / NULLIF(hr_count, 0)) STORED,
    rr_avg           double precision GENERATED ALWAYS AS (rr_sum / NULLIF(rr_count, 0)) STORED,
    PRIMARY KEY (device_id, day)
);
CREATE INDEX bed_daily_day ON bed_daily (day);

-- Every device message stored (readings of all kinds and alarm-class events), per device.
CREATE TABLE device_hourly (
    bucket         timestamptz NOT NULL,
    device_id      bigint NOT NULL,
    messages       integer NOT NULL,
    active_minutes smallint NOT NULL,     -- minutes with at least one message: the device's uptime
    PRIMARY KEY (device_id, bucket)
);
CREATE INDEX device_hourly_bucket ON device_hourly (bucket);

CREATE TABLE device_daily (
    day            date NOT NULL,
    device_id      bigint NOT NULL,
    messages       bigint NOT NULL,
    active_minutes integer NOT NULL,
    PRIMARY KEY (device_id, day)
);
CREATE INDEX device_daily_day ON device_daily (day);

-- What each ingest batch touched: (hour since 1970, device id) pairs, device 0 meaning the whole hour.
-- The roll-up job takes the rows it can see (DELETE ... RETURNING) and recomputes those of hours already
-- rolled up: that is how late data reaches the roll-ups.
CREATE TABLE rollup_pending (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hours   bigint[] NOT NULL,
    devices bigint[] NOT NULL,
    CHECK (cardinality(hours) = cardinality(devices))
);

-- Watermarks and last results of the maintenance jobs (gaps, rollups, retention).
CREATE TABLE ingest_jobs (
    job         text PRIMARY KEY,
    watermark   timestamptz,          -- rollups: every hour before it has been rolled up
    last_run_at timestamptz,
    last_result jsonb NOT NULL DEFAULT '{}'
);
