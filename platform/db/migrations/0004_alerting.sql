-- Alerting: rules as data, escalation over shift rosters, and delivery to people through an outbox.

-- Alarm rules per institution and per resident, over platform defaults (institution and resident NULL).
-- The most specific enabled row wins; its params are merged over the default's.
CREATE TABLE alarm_rules (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint REFERENCES institutions (id),
    resident_id    bigint REFERENCES residents (id),
    rule           text NOT NULL CHECK (rule IN (
        'button', 'fall', 'sos', 'environment', 'device_fault', 'bed_exit_night', 'vitals', 'wander',
        'no_presence', 'gateway_offline', 'escalation')),
    enabled        boolean NOT NULL DEFAULT true,
    params         jsonb NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (resident_id IS NULL OR institution_id IS NOT NULL),
    UNIQUE NULLS NOT DISTINCT (institution_id, resident_id, rule)
);

INSERT INTO alarm_rules (rule, params) VALUES
    ('button',          '{"priority": "emergency", "repeat_window_s": 60}'),
    ('fall',            '{"priority": "emergency", "repeat_window_s": 60}'),
    ('sos',             '{"priority": "emergency", "repeat_window_s": 60}'),
    ('environment',     '{"priority": "emergency"}'),
    ('device_fault',    '{"priority": "technical"}'),
    ('bed_exit_night',  '{"from": "21:00", "to": "06:00", "delay_s": 60, "emergency_after_s": 600, "min_fall_risk": "high", "timezone": "Asia/Shanghai"}'),
    ('vitals',          '{"sustain_s": 120, "min_readings": 3}'),
    ('wander',          '{"radius_m": 150, "fresh_s": 300}'),
    ('no_presence',     '{"hours": 12}'),
    ('gateway_offline', '{"silence_s": 60}'),
    ('escalation',      '{"ack_timeout_s": 60, "tiers": 3}');

-- The rule in force for an institution and resident: params merged from the default up to the most
-- specific row; NULL when the most specific row disables the rule.
CREATE FUNCTION rule_params(p_rule text, p_institution bigint, p_resident bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r record;
    merged jsonb := '{}';
    active boolean := false;
BEGIN
    FOR r IN
        SELECT enabled, params FROM alarm_rules
        WHERE rule = p_rule
          AND (institution_id IS NULL OR institution_id = p_institution)
          AND (resident_id IS NULL OR resident_id = p_resident)
        ORDER BY (institution_id IS NOT NULL)::int + (resident_id IS NOT NULL)::int
    LOOP
        merged := merged || r.params;
        active := r.enabled;
    END LOOP;
    RETURN CASE WHEN active THEN merged END;
END
$$;

-- A bed exit being watched: raised as an alarm only if the resident is not back within the rule's delay.
CREATE TABLE bed_exit_watches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   bigint NOT NULL REFERENCES devices (id),
    resident_id bigint NOT NULL REFERENCES residents (id),
    exited_at   timestamptz NOT NULL,
    returned_at timestamptz,
    alarm_id    bigint REFERENCES alarms (id)
);
CREATE INDEX bed_exit_watches_open ON bed_exit_watches (device_id) WHERE returned_at IS NULL;

-- Gateway-level alarms have no device; events from a gateway may carry none either.
ALTER TABLE alarm_inbox ALTER COLUMN device_id DROP NOT NULL;
ALTER TABLE alarms
    ADD COLUMN escalation_level smallint NOT NULL DEFAULT 0,
    ADD COLUMN escalated_at     timestamptz,
    ADD COLUMN held_by          bigint REFERENCES alarms (id);  -- a device alarm held back by its gateway's
CREATE INDEX alarms_unacknowledged ON alarms (raised_at) WHERE state = 'raised';
CREATE INDEX alarms_gateway_open ON alarms (gateway_pk, kind) WHERE state IN ('raised', 'acknowledged', 'attending');

-- Shift rosters: who answers first (tier 1), second (tier 2); the head and the platform's duty desk come
-- after. A shift runs daily from starts to ends (it may cross midnight) on the listed ISO weekdays.
CREATE TABLE shift_roster (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    user_id        bigint NOT NULL REFERENCES users (id),
    tier           smallint NOT NULL CHECK (tier BETWEEN 1 AND 2),
    name           text NOT NULL DEFAULT '',
    starts         time NOT NULL,
    ends           time NOT NULL,
    weekdays       smallint[] NOT NULL DEFAULT '{1,2,3,4,5,6,7}',
    timezone       text NOT NULL DEFAULT 'Asia/Shanghai'
);
CREATE INDEX shift_roster_institution ON shift_roster (institution_id);

ALTER TABLE users ADD COLUMN duty_desk boolean NOT NULL DEFAULT false;  -- platform duty desk (admins)

-- Is local time t within [a, b)? A window may cross midnight (a > b); a = b is the whole day.
CREATE FUNCTION time_in_window(t time, a time, b time) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a = b THEN true WHEN a < b THEN t >= a AND t < b ELSE t >= a OR t < b END
$$;

-- Is a roster entry on shift at a moment? (The weekday is that of the local moment.)
CREATE FUNCTION on_shift(starts time, ends time, weekdays smallint[], tz text, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT time_in_window((at AT TIME ZONE tz)::time, starts, ends)
       AND extract(isodow FROM at AT TIME ZONE tz)::smallint = ANY (weekdays)
$$;

-- Where a user is told: channels in fallback order. Addresses are personal data: encrypted.
CREATE TABLE notification_channels (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    kind        text NOT NULL CHECK (kind IN ('email', 'sms', 'webhook_wecom', 'webhook_dingtalk', 'webhook_json')),
    address_enc bytea NOT NULL,
    secret_enc  bytea,            -- HMAC secret of a signed webhook
    position    smallint NOT NULL DEFAULT 1,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_channels_user ON notification_channels (user_id, position);

CREATE FUNCTION has_channel(p_user bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM notification_channels WHERE user_id = p_user AND active)
$$;

CREATE TABLE notification_prefs (
    user_id         bigint PRIMARY KEY REFERENCES users (id),
    kinds           text[],        -- alarm kinds to be told of; NULL means all
    quiet_from      time,          -- quiet hours, ignored for emergencies
    quiet_to        time,
    timezone        text NOT NULL DEFAULT 'Asia/Shanghai',
    language        text NOT NULL DEFAULT 'zh-CN' CHECK (language IN ('zh-CN', 'en')),
    notify_resolved boolean NOT NULL DEFAULT true
);

-- The outbox: one row per alarm, recipient and event, so each recipient is told once per event even if
-- the platform restarts between raising and delivering. Sent at least once; the row's id travels with
-- every message (Message-ID, X-Eldercare-Delivery) so a receiver can drop a repeat.
CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id        bigint NOT NULL REFERENCES alarms (id),
    user_id         bigint NOT NULL REFERENCES users (id),
    event           text NOT NULL CHECK (event IN ('raised', 'escalated', 'resolved')),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'suppressed')),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    not_before      timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_until     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    channel_id      bigint REFERENCES notification_channels (id),
    delivered_at    timestamptz,
    last_error      text,
    UNIQUE (alarm_id, user_id, event)
);
CREATE INDEX notifications_due ON notifications (not_before) WHERE state IN ('pending', 'sending');

-- Receipts: every attempt on every channel, successful or not.
CREATE TABLE notification_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES notifications (id),
    channel_id      bigint REFERENCES notification_channels (id),
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    ok              boolean NOT NULL,
    detail          text NOT NULL DEFAULT ''
);
CREATE INDEX notification_attempts_notification ON notification_attempts (notification_id);

-- Response times per alarm, for reports and the supervision view.
CREATE VIEW alarm_response AS
SELECT a.id AS alarm_id, a.institution_id, a.kind, a.priority, a.state, a.raised_at,
       extract(epoch FROM a.acknowledged_at - a.raised_at) AS seconds_to_acknowledge,
       extract(epoch FROM a.attending_at - a.raised_at) AS seconds_to_attend,
       extract(epoch FROM a.closed_at - a.raised_at) AS seconds_to_close,
       a.escalation_level
FROM alarms a
WHERE a.held_by IS NULL;
