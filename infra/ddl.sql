-- Flyball history: tables in database {db}. Applied by HistoryStore.apply_ddl() at every start;
-- every statement is idempotent (IF NOT EXISTS). Placeholders: {db} (database), {ttl_days}.
-- Time columns are DateTime64(3, 'UTC') (epoch milliseconds, the unit every Flyball record uses).
-- Documented column by column, with example queries, in docs/history.md.

CREATE DATABASE IF NOT EXISTS {db};

-- One row per request attempt. Dedupe: ReplacingMergeTree collapses rows with equal sorting key.
-- A replayed or redelivered event carries the same event_id, endpoint and ts (ts is part of the
-- event, and derived ids hash it), so ORDER BY (endpoint, ts, event_id) collapses replays while
-- keeping ts in the primary index for the common "endpoint X, last N minutes" query. An id reused
-- with a different ts or endpoint is kept twice (count() vs uniqExact(event_id) shows it).
-- Collapsing happens at merge time: exact counts use FINAL or uniqExact(event_id).
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id     String,
    gateway_id   LowCardinality(String),
    ts           DateTime64(3, 'UTC'),
    latency_ms   UInt32,
    tenant       LowCardinality(String),
    agent_id     String,
    endpoint     LowCardinality(String),
    status       Enum8('ok' = 0, 'error' = 1, 'timeout' = 2, 'rejected' = 3),
    attempt      UInt16,
    request_id   String,
    root_id      String,
    parent_id    String,
    depth        UInt16,
    priority     UInt8,
    tokens_in    UInt64,
    tokens_out   UInt64,
    directive_id String,
    applied      Enum8('' = 0, 'throttle' = 1, 'defer' = 2, 'shed' = 3, 'reroute' = 4),
    inserted     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted)
PARTITION BY toDate(ts)
ORDER BY (endpoint, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY;

-- Window features: one row per key (endpoint, tenant; tenant '' = endpoint as a whole), horizon and
-- window end. Workers derive the same record on replay, so the key dedupes redeliveries.
CREATE TABLE IF NOT EXISTS {db}.features
(
    ts         DateTime64(3, 'UTC'),
    horizon_ms UInt32,
    endpoint   LowCardinality(String),
    tenant     LowCardinality(String),
    values     Map(LowCardinality(String), Float64),
    inserted   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted)
PARTITION BY toDate(ts)
ORDER BY (endpoint, tenant, horizon_ms, ts)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY;

-- Detector scores in [0, 1] with their evidence (a JSON object as text).
CREATE TABLE IF NOT EXISTS {db}.scores
(
    ts       DateTime64(3, 'UTC'),
    detector LowCardinality(String),
    endpoint LowCardinality(String),
    tenant   LowCardinality(String),
    score    Float64,
    evidence String,
    inserted DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted)
PARTITION BY toDate(ts)
ORDER BY (detector, endpoint, tenant, ts)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY;

-- Every directive message (first issue, refreshes, release): the audit trail of interventions.
-- A refresh has the same id and a later `issued`, so it is a new row; a redelivered message has
-- the same (id, issued) and collapses. Scope fields: '' / NULL mean "any". No TTL: the audit
-- trail is kept until an operator drops partitions (PARTITION BY month).
CREATE TABLE IF NOT EXISTS {db}.directives
(
    id              String,
    issued          DateTime64(3, 'UTC'),
    expires         DateTime64(3, 'UTC'),
    scope_endpoint  LowCardinality(String),
    scope_tenant    LowCardinality(String),
    scope_agent_id  String,
    min_priority    Nullable(UInt8),
    min_attempt     Nullable(UInt16),
    min_depth       Nullable(UInt16),
    action          Enum8('throttle' = 1, 'defer' = 2, 'shed' = 3, 'reroute' = 4, 'release' = 5,
                          'limit' = 6),
    rate_per_s      Float64,
    burst           Float64,
    shares          Map(String, Float64),
    default_share   Float64,
    hold_ms         UInt32,
    jitter_ms       UInt32,
    retry_after_ms  UInt32,
    fraction        Float64,
    target          String,
    detector        LowCardinality(String),
    score           Float64,
    evidence        String,
    signed          Bool,
    max_inflight    UInt32 DEFAULT 0,
    inserted        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted)
PARTITION BY toYYYYMM(issued)
ORDER BY (id, issued);

-- Upgrades a directives table created before the `limit` action (both are no-ops on a new one:
-- adding an enum value and a defaulted column change metadata only).
ALTER TABLE {db}.directives ADD COLUMN IF NOT EXISTS max_inflight UInt32 DEFAULT 0 AFTER signed;
ALTER TABLE {db}.directives MODIFY COLUMN action
    Enum8('throttle' = 1, 'defer' = 2, 'shed' = 3, 'reroute' = 4, 'release' = 5, 'limit' = 6);

-- Per-minute rollup by endpoint and tenant, maintained on insert by a materialized view.
-- It counts every delivered copy: after a redelivery it may over-count slightly (events FINAL is
-- exact). Read it with sum(...) and quantilesMerge(0.5, 0.99)(latency_q) GROUP BY.
CREATE TABLE IF NOT EXISTS {db}.events_minute
(
    minute     DateTime('UTC'),
    endpoint   LowCardinality(String),
    tenant     LowCardinality(String),
    attempts   SimpleAggregateFunction(sum, UInt64),
    retries    SimpleAggregateFunction(sum, UInt64),
    errors     SimpleAggregateFunction(sum, UInt64),
    timeouts   SimpleAggregateFunction(sum, UInt64),
    rejected   SimpleAggregateFunction(sum, UInt64),
    tokens     SimpleAggregateFunction(sum, UInt64),
    latency_q  AggregateFunction(quantiles(0.5, 0.99), UInt32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (endpoint, tenant, minute)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_minute_mv TO {db}.events_minute AS
SELECT
    toStartOfMinute(ts)                   AS minute,
    endpoint,
    tenant,
    count()                               AS attempts,
    countIf(attempt > 0)                  AS retries,
    countIf(status = 'error')             AS errors,
    countIf(status = 'timeout')           AS timeouts,
    countIf(status = 'rejected')          AS rejected,
    sum(tokens_in + tokens_out)           AS tokens,
    quantilesState(0.5, 0.99)(latency_ms) AS latency_q
FROM {db}.events
GROUP BY minute, endpoint, tenant;

-- Exact per-second view over deduplicated events (computed at query time: filter on `second`).
CREATE VIEW IF NOT EXISTS {db}.events_per_second AS
SELECT
    toStartOfSecond(ts)                                AS second,
    endpoint,
    count()                                            AS attempts,
    countIf(attempt > 0)                               AS retries,
    countIf(status IN ('error', 'timeout'))            AS failures,
    uniqExact(root_id)                                 AS intents,
    quantile(0.5)(latency_ms)                          AS p50_latency_ms,
    quantile(0.99)(latency_ms)                         AS p99_latency_ms
FROM {db}.events FINAL
GROUP BY second, endpoint;
