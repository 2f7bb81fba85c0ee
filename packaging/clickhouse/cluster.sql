-- spip: a cluster: run this file on every shard. The cluster `spip` must be
-- defined in each server's remote_servers (see the README). `spip ship` inserts into the
-- Distributed tables; OPTIMIZE … FINAL runs on each shard's _local table.
-- Generated from spip's field table by `spip ship --schema`; columns are named as the JSON
-- keys. Runs on ClickHouse 18.16 (Debian 12) and later:
--     clickhouse-client --multiquery < FILE

CREATE DATABASE IF NOT EXISTS spip;

CREATE TABLE IF NOT EXISTS spip.connections_local
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

CREATE TABLE IF NOT EXISTS spip.connections AS spip.connections_local
ENGINE = Distributed(spip, spip, connections_local, cityHash64(session_id));

CREATE TABLE IF NOT EXISTS spip.events_local
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

CREATE TABLE IF NOT EXISTS spip.events AS spip.events_local
ENGINE = Distributed(spip, spip, events_local, cityHash64(sensor, time));
