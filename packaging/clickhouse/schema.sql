-- spip: the tables `spip ship` inserts into, on one ClickHouse server.
-- Generated from spip's field table by `spip ship --schema`; columns are named as the JSON
-- keys. Runs on ClickHouse 18.16 (Debian 12) and later:
--     clickhouse-client --multiquery < FILE

CREATE DATABASE IF NOT EXISTS spip;

-- One row per connection. Count each session once: uniqExact(session_id), or SELECT … FINAL.
CREATE TABLE IF NOT EXISTS spip.connections
(
    `timestamp` UInt32,
    `payload` String,
    `payload_hex` String,
    `source_ip` String,
    `source_port` UInt16,
    `destination_ip` String,
    `destination_port` UInt16,
    `session_id` String,
    `time` String,
    `transport` String,
    `datagrams` UInt64,
    `bytes_received` UInt64,
    `payload_truncated` UInt8,
    `duration_ms` UInt64,
    `close_reason` String,
    `destination_error` String,
    `sensor` String,
    `event` String,
    `community_id` String,
    `protocol` String,
    `tls_sni` String,
    `tls_alpn` Array(String),
    `tls_version` String,
    `ja4` String,
    `http_method` String,
    `http_path` String,
    `http_version` String,
    `http_host` String,
    `http_user_agent` String,
    `ssh_banner` String,
    `hassh` String,
    `dns_query_name` String,
    `dns_query_type` String,
    `ntp_version` UInt8,
    `ntp_mode` UInt8,
    `ssdp_target` String,
    `fields_truncated` Array(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(timestamp))
ORDER BY session_id;

-- spip's own records: started, stopping, summary (drops), warning.
CREATE TABLE IF NOT EXISTS spip.events
(
    `timestamp` UInt32,
    `time` String,
    `sensor` String,
    `event` String,
    `message` String,
    `sink` String,
    `reason` String,
    `dropped` UInt64,
    `dropped_total` UInt64,
    `overload_total` UInt64,
    `ratelimited` UInt64,
    `ratelimited_total` UInt64,
    `top_sources` String,
    `recorded_total` UInt64,
    `listen` String,
    `mode` String,
    `version` String,
    `error` String,
    `interval_s` UInt32,
    `udp_dropped` UInt64,
    `udp_dropped_total` UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(timestamp))
ORDER BY (sensor, time, event);
