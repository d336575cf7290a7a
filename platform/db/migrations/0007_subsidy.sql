-- Subsidy verification (issue 9): programmes and their amounts as data (per region, versioned by the month
-- they take effect from), homes' monthly claims, the civil-affairs registers matched by keyed hash (deaths
-- and funerals, hardship), a capability-assessment history, enrolments, verification runs, the verdict of
-- every claim line with its reasons and evidence, the liveness list (无感认证) and the anomaly ranking.
-- Verdicts fill supervision's subsidy_findings (0006); supervision's institution_flags
-- ('subsidy_manual_check') sends every line of a flagged home to a person.
-- Forward-only: a later change is a new file, never an edit of this one.

-- ---------------------------------------------------------------------------------------------------
-- Programmes. unit 'bed_day': a monthly amount per occupied bed, paid pro rata for the verified days;
-- 'person_month': a monthly amount per eligible person.
CREATE TABLE subsidy_programmes (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,40}$'),
    name        text NOT NULL,
    kind        text NOT NULL UNIQUE
                CHECK (kind IN ('operating', 'old_age_allowance', 'hardship_disability', 'home_care_bed')),
    unit        text NOT NULL CHECK (unit IN ('bed_day', 'person_month')),
    description text NOT NULL DEFAULT ''
);

INSERT INTO subsidy_programmes (code, name, kind, unit, description) VALUES
    ('operating_subsidy', '养老机构运营补贴', 'operating', 'bed_day',
        'paid to a home per occupied bed and month; amount by bed type and the resident''s capability level'),
    ('old_age_allowance', '高龄津贴', 'old_age_allowance', 'person_month',
        'monthly allowance by age band; the age comes from the birth date in the ID number'),
    ('hardship_disability_subsidy', '经济困难及失能老人补贴', 'hardship_disability', 'person_month',
        'monthly subsidy for elders on the hardship register or assessed partly disabled or disabled'),
    ('home_care_bed_subsidy', '家庭养老床位补贴', 'home_care_bed', 'bed_day',
        'paid to a home-care provider per home-care bed (家庭养老床位) in use and month');

-- One version of a programme's amounts in a region, in force from the first day of a month until a later
-- version of the same region replaces it. The version for a home and a month is the one of the most
-- specific region containing the home with the latest effective_from on or before the month. A version is
-- never changed once stored (new amounts are a new version), so a past month always finds the amounts it
-- was verified with.
CREATE TABLE subsidy_schedules (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    programme      text NOT NULL REFERENCES subsidy_programmes (code),
    region_code    text NOT NULL REFERENCES regions (code),
    effective_from date NOT NULL CHECK (extract(day FROM effective_from) = 1),
    note           text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     bigint REFERENCES users (id),
    UNIQUE (programme, region_code, effective_from)
);

-- The amounts of a version: the first row (by position) whose conditions all hold gives the monthly amount.
-- A NULL condition holds for anyone. Ages are completed years on the last day of the month.
CREATE TABLE subsidy_rates (
    schedule_id  bigint NOT NULL REFERENCES subsidy_schedules (id),
    position     smallint NOT NULL CHECK (position BETWEEN 1 AND 100),
    bed_kind     bed_kind,
    capability   capability_level,
    min_age      smallint CHECK (min_age BETWEEN 0 AND 150),
    max_age      smallint CHECK (max_age BETWEEN 0 AND 150),
    hardship     boolean,              -- TRUE: only people on the hardship register that month
    monthly_yuan numeric(10, 2) NOT NULL CHECK (monthly_yuan >= 0),
    PRIMARY KEY (schedule_id, position),
    CHECK (min_age IS NULL OR max_age IS NULL OR min_age <= max_age)
);

-- The version of a programme in force for a region (a home's code) and a month, and the row of a version that
-- pays a person: the first whose conditions all hold. Verification and the eligibility lists both use these.
CREATE FUNCTION subsidy_schedule(p_programme text, p_region text, p_month date)
RETURNS TABLE (schedule_id bigint, region_code text, effective_from date)
LANGUAGE sql STABLE AS $$
    SELECT s.id, s.region_code, s.effective_from FROM subsidy_schedules s
    WHERE s.programme = p_programme AND starts_with(p_region, s.region_code) AND s.effective_from <= p_month
    ORDER BY length(s.region_code) DESC, s.effective_from DESC
    LIMIT 1
$$;

CREATE FUNCTION subsidy_rate(p_schedule bigint, p_bed_kind bed_kind, p_capability capability_level,
                             p_age integer, p_hardship boolean)
RETURNS TABLE (rate_position smallint, monthly_yuan numeric)
LANGUAGE sql STABLE AS $$
    SELECT r.position, r.monthly_yuan FROM subsidy_rates r
    WHERE r.schedule_id = p_schedule
      AND (r.bed_kind IS NULL OR r.bed_kind = p_bed_kind)
      AND (r.capability IS NULL OR r.capability = p_capability)
      AND (r.min_age IS NULL OR r.min_age <= p_age) AND (r.max_age IS NULL OR r.max_age >= p_age)
      AND (r.hardship IS NULL OR r.hardship = p_hardship)
    ORDER BY r.position
    LIMIT 1
$$;

CREATE FUNCTION subsidy_schedules_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: new amounts are a new schedule version', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER subsidy_schedules_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON subsidy_schedules
    FOR EACH STATEMENT EXECUTE FUNCTION subsidy_schedules_immutable();
CREATE TRIGGER subsidy_rates_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON subsidy_rates
    FOR EACH STATEMENT EXECUTE FUNCTION subsidy_schedules_immutable();

-- ---------------------------------------------------------------------------------------------------
-- Claims: a home's claim for a month, by API or file. A new submission for the same month replaces the
-- previous one (replaced_at), which is kept with its verdicts.
CREATE TABLE subsidy_claims (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    month          date NOT NULL CHECK (extract(day FROM month) = 1),
    source         text NOT NULL CHECK (source IN ('api', 'csv', 'xlsx')),
    filename       text NOT NULL DEFAULT '' CHECK (length(filename) <= 255),
    lines          integer NOT NULL CHECK (lines >= 0),
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    submitted_by   bigint REFERENCES users (id),
    replaced_at    timestamptz
);
CREATE UNIQUE INDEX subsidy_claims_current ON subsidy_claims (institution_id, month) WHERE replaced_at IS NULL;
CREATE INDEX subsidy_claims_month ON subsidy_claims (month) WHERE replaced_at IS NULL;

-- A line names the person and the bed by their codes (一人一码, 一床一码) as the home wrote them; they are
-- resolved against the registry when the claim is verified, so an unknown code is a finding, not a typo
-- (a typo fails the check character and the file is refused). A line for a bed may name no person: it claims
-- the bed's occupancy, and the registry says who held it. ``ref`` is the home's own reference (claim_id).
CREATE TABLE subsidy_claim_lines (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claim_id    bigint NOT NULL REFERENCES subsidy_claims (id),
    line_no     integer NOT NULL CHECK (line_no >= 1),   -- the file's row number, or position in the body
    ref         text CHECK (length(ref) BETWEEN 1 AND 64),
    person_code text CHECK (person_code ~ '^P[0-9A-Z]{10}$'),
    bed_code    text CHECK (bed_code ~ '^B[0-9A-Z]{10}$'),
    programme   text NOT NULL REFERENCES subsidy_programmes (code),
    days        smallint CHECK (days BETWEEN 1 AND 31),
    amount      numeric(10, 2) CHECK (amount > 0),
    CHECK (days IS NOT NULL OR amount IS NOT NULL),
    CHECK (person_code IS NOT NULL OR bed_code IS NOT NULL),
    UNIQUE (claim_id, line_no),
    UNIQUE NULLS NOT DISTINCT (claim_id, person_code, programme, bed_code)
);

-- ---------------------------------------------------------------------------------------------------
-- Civil-affairs registers, imported as files of ID numbers. The ID number is kept only as its keyed hash
-- (Vault.lookup_hash), the same hash residents.id_number_hash holds, so matching needs no clear text.
CREATE TABLE subsidy_register_imports (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    register    text NOT NULL CHECK (register IN ('deaths', 'hardship')),
    region_code text NOT NULL REFERENCES regions (code),
    filename    text NOT NULL DEFAULT '' CHECK (length(filename) <= 255),
    rows        integer NOT NULL,
    added       integer NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    imported_by bigint REFERENCES users (id)
);

-- Deaths from the civil-affairs and funeral (殡葬) data. Kept apart from the registry's deaths table (which a
-- home records for its own resident): the register names people, not residents, and may name one the home
-- still shows as admitted - which is exactly what verification looks for.
CREATE TABLE death_register (
    id_number_hash bytea NOT NULL CHECK (length(id_number_hash) = 32),
    died_on        date NOT NULL,
    source         text NOT NULL CHECK (source IN ('funeral', 'civil_affairs', 'hospital', 'public_security')),
    import_id      bigint NOT NULL REFERENCES subsidy_register_imports (id),
    PRIMARY KEY (id_number_hash, source)
);

-- Elders on the hardship register (低保, 特困, 低收入) over a span of months.
CREATE TABLE hardship_register (
    id_number_hash bytea NOT NULL CHECK (length(id_number_hash) = 32),
    category       text NOT NULL CHECK (category IN ('dibao', 'tekun', 'low_income')),
    valid          daterange NOT NULL CHECK (NOT isempty(valid) AND lower(valid) IS NOT NULL),
    import_id      bigint NOT NULL REFERENCES subsidy_register_imports (id),
    EXCLUDE USING gist (id_number_hash WITH =, category WITH =, valid WITH &&)
);
CREATE INDEX hardship_register_hash ON hardship_register (id_number_hash);

-- ---------------------------------------------------------------------------------------------------
-- Capability assessments (能力评估) over time. The registry keeps the current level in residents.capability;
-- every level a resident is registered with or changed to is recorded here by a trigger, so "the level in
-- force on a day" and "changed in a month" can be asked. Existing residents get their current level from
-- their registration time.
CREATE TABLE capability_assessments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id bigint NOT NULL REFERENCES residents (id),
    capability  capability_level NOT NULL,
    assessed_at timestamptz NOT NULL,
    source      text NOT NULL CHECK (source IN ('registry', 'backfill'))
);
CREATE INDEX capability_assessments_resident ON capability_assessments (resident_id, assessed_at);
CREATE INDEX capability_assessments_time ON capability_assessments (assessed_at);

INSERT INTO capability_assessments (resident_id, capability, assessed_at, source)
SELECT id, capability, created_at, 'backfill' FROM residents;

CREATE FUNCTION capability_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO capability_assessments (resident_id, capability, assessed_at, source)
        VALUES (NEW.id, NEW.capability, NEW.created_at, 'registry');
    ELSIF NEW.capability IS DISTINCT FROM OLD.capability THEN
        INSERT INTO capability_assessments (resident_id, capability, assessed_at, source)
        VALUES (NEW.id, NEW.capability, clock_timestamp(), 'registry');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER residents_capability_history AFTER INSERT OR UPDATE OF capability ON residents
    FOR EACH ROW EXECUTE FUNCTION capability_history();

-- Enrolment of a resident in a programme without an application (免申即享): the allowance receivers whose
-- liveness is checked each month, besides those claimed for.
CREATE TABLE subsidy_enrolments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id bigint NOT NULL REFERENCES residents (id),
    programme   text NOT NULL REFERENCES subsidy_programmes (code),
    from_month  date NOT NULL CHECK (extract(day FROM from_month) = 1),
    until_month date CHECK (until_month IS NULL OR (extract(day FROM until_month) = 1 AND until_month >= from_month)),
    reason      text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    enrolled_by bigint REFERENCES users (id),
    UNIQUE (resident_id, programme, from_month)
);
CREATE INDEX subsidy_enrolments_programme ON subsidy_enrolments (programme, from_month);

-- ---------------------------------------------------------------------------------------------------
-- Verification runs: one per (region, month) request; the verdicts of the lines it covered.
CREATE TABLE subsidy_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region_code text NOT NULL REFERENCES regions (code),
    month       date NOT NULL CHECK (extract(day FROM month) = 1),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    run_by      bigint REFERENCES users (id),
    rules       jsonb NOT NULL,        -- the thresholds the run used
    summary     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX subsidy_runs_month ON subsidy_runs (month, region_code text_pattern_ops);

-- The verdict of a claim line in force: the latest run that covered it. Amounts: claimed_yuan as claimed
-- (or computed from the schedule for the days claimed); payable_yuan what is paid now (0 for a line waiting
-- for a manual check); supported_yuan what the evidence supports (for a manual check, the proposal).
CREATE TABLE subsidy_verdicts (
    line_id        bigint PRIMARY KEY REFERENCES subsidy_claim_lines (id),
    run_id         bigint NOT NULL REFERENCES subsidy_runs (id),
    institution_id bigint NOT NULL REFERENCES institutions (id),
    month          date NOT NULL,
    verdict        text NOT NULL CHECK (verdict IN ('verified', 'partly_verified', 'rejected', 'manual_check')),
    claimed_days   smallint,
    verified_days  smallint,
    claimed_yuan   numeric(12, 2) NOT NULL,
    supported_yuan numeric(12, 2) NOT NULL,
    payable_yuan   numeric(12, 2) NOT NULL,
    reasons        jsonb NOT NULL,     -- [{code, text}], the grounds of the verdict
    evidence       jsonb NOT NULL      -- which nights, which records
);
CREATE INDEX subsidy_verdicts_home ON subsidy_verdicts (institution_id, month);

-- A person's decision on a line sent to a manual check (or on any line, overriding the verdict).
CREATE TABLE subsidy_decisions (
    line_id      bigint PRIMARY KEY REFERENCES subsidy_claim_lines (id),
    outcome      text NOT NULL CHECK (outcome IN ('verified', 'partly_verified', 'rejected')),
    payable_yuan numeric(12, 2) NOT NULL CHECK (payable_yuan >= 0),
    note         text NOT NULL CHECK (length(note) BETWEEN 4 AND 2000),
    decided_at   timestamptz NOT NULL DEFAULT now(),
    decided_by   bigint REFERENCES users (id)
);

-- Liveness without a visit (无感认证): each allowance receiver of a month, with the evidence found.
CREATE TABLE subsidy_liveness (
    month          date NOT NULL,
    resident_id    bigint NOT NULL REFERENCES residents (id),
    institution_id bigint NOT NULL REFERENCES institutions (id),
    run_id         bigint NOT NULL REFERENCES subsidy_runs (id),
    programmes     text[] NOT NULL,
    vital_nights   integer NOT NULL,   -- nights with heart or respiration readings in the person's bed
    worn_days      integer NOT NULL,   -- days a wristband or wearable bound to the person sent anything
    last_evidence  date,
    follow_up      boolean NOT NULL,   -- no evidence: someone must check on the person
    PRIMARY KEY (month, resident_id)
);
CREATE INDEX subsidy_liveness_home ON subsidy_liveness (institution_id, month);

-- The anomaly ranking of homes for a month (the latest run that covered the home).
CREATE TABLE subsidy_anomalies (
    month          date NOT NULL,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    run_id         bigint NOT NULL REFERENCES subsidy_runs (id),
    score          double precision,   -- higher: more unusual among the homes ranked together
    rank           integer,
    ranked         integer NOT NULL,   -- how many homes were ranked together
    features       jsonb NOT NULL,
    drivers        jsonb NOT NULL,     -- [{feature, value, typical, contribution}], largest first
    PRIMARY KEY (month, institution_id)
);

-- Indexes verification needs on tables of other parts.
CREATE INDEX IF NOT EXISTS bed_assignments_resident ON bed_assignments (resident_id);
CREATE INDEX IF NOT EXISTS hospital_stays_resident ON hospital_stays (resident_id);
CREATE INDEX IF NOT EXISTS device_bindings_resident ON device_bindings (resident_id) WHERE resident_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS subsidy_findings_month ON subsidy_findings (institution_id, claim_month);
