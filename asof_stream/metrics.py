"""Prometheus metrics shared by the daemon, the commit path and the feature server.

One registry per process; ``GET /metrics`` renders it in the Prometheus text format.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter("asof_events_in_total", "Records read from a source.", ["source"],
                    registry=REGISTRY)
EVENTS_STORED = Counter("asof_events_stored_total", "Events appended to the offline log.",
                        ["source"], registry=REGISTRY)
DUPLICATES = Counter("asof_duplicates_skipped_total", "Events skipped as repeated event_ids.",
                     ["source"], registry=REGISTRY)
DEAD_LETTERS = Counter("asof_dead_letters_total", "Records sent to the dead-letter table.",
                       ["source"], registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "asof_batch_commit_seconds", "Time to decode and commit one batch.", ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY)
KAFKA_LAG = Gauge("asof_kafka_lag", "High watermark minus the committed position.",
                  ["source", "topic", "partition"], registry=REGISTRY)
FRESHNESS = Gauge("asof_view_freshness_seconds", "Now minus the latest event_timestamp.",
                  ["view"], registry=REGISTRY)
INGEST_FRESHNESS = Gauge("asof_view_ingest_age_seconds", "Now minus the latest ingest_ts.",
                         ["view"], registry=REGISTRY)
ONLINE_LAG = Gauge("asof_online_lag_seqs",
                   "Log seqs the online store has not applied yet (log max seq - applied seq).",
                   registry=REGISTRY)
ONLINE_APPLIED_SEQ = Gauge("asof_online_applied_seq",
                           "The log seq up to which the online store has applied every row.",
                           registry=REGISTRY)
REQUEST_SECONDS = Histogram(
    "asof_http_request_seconds", "Feature server request latency.", ["endpoint", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    registry=REGISTRY)


def record_batch(source: str, read: int, stored: int, duplicates: int, rejected: int,
                 seconds: float) -> None:
    """Count one committed batch."""
    EVENTS_IN.labels(source).inc(read)
    EVENTS_STORED.labels(source).inc(stored)
    DUPLICATES.labels(source).inc(duplicates)
    DEAD_LETTERS.labels(source).inc(rejected)
    BATCH_SECONDS.labels(source).observe(seconds)
