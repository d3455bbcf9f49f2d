"""Streaming sources: Kafka and tailed files, behind one interface (:mod:`.base`)."""

from __future__ import annotations

from ...config import Config
from ...definitions import FileSourceConfig, KafkaSourceConfig
from .base import Source


def build_sources(config: Config, *, until_caught_up: bool) -> list[Source]:
    sources: list[Source] = []
    for name, cfg in config.defs.sources.items():
        if isinstance(cfg, KafkaSourceConfig):
            from .kafka import KafkaSource

            sources.append(KafkaSource(name, cfg, max_poll_records=config.defs.ingest.batch_size))
        elif isinstance(cfg, FileSourceConfig):
            from .file import FileSource

            sources.append(FileSource(name, cfg, config.root))
    return sources
